"""Winograd's F(2x2, 3x3): a 3x3 stride-1 convolution in 16 matrix products of 4/9 the arithmetic.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). The convolution's output
is cut into 2x2 blocks (*Winograd tiles*); the 4x4 input patch ``d`` under a tile and a filter
``g`` (3x3) give the tile's four outputs as ::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise on 4x4)

with fixed matrices of 0, +-1 and +-1/2 (below). Summed over the input channels, the elementwise
product becomes, for each of the 16 positions xi of the 4x4, one matrix product over channels::

    U[xi] (C_out, C_in) = (G g G^T)[xi]           the weight transform, once per call
    V[xi] (C_in, P)     = (B^T d B)[xi]           the input transform, per channel and tile
    M[xi] (C_out, P)    = U[xi] @ V[xi]           16 products (BLAS)
    out                 = A^T M A                 the output transform: 4 outputs per tile

P is the number of tiles. Per 2x2 outputs this is 16 * C_out * C_in multiply-adds against the direct
convolution's 36 * C_out * C_in: 4/9 of the arithmetic, and no 9x im2col copy of the input (V holds
4x the input). It pays when the products dominate: channels wide enough (:data:`MIN_CHANNELS`) that
the two transforms, a few additions per value, are small beside them.

As :mod:`.conv`, the work goes **one tile of output positions at a time** (a band of tile rows of
one image, or a group of whole images, about :data:`TILE_VALUES` values of V and M), so V and M
stay in cache between their transform and their product; the tiles are shared out over the kernel
threads (:mod:`.threads`), each with its own buffers, BLAS on one thread. A call with fewer tiles
than threads shares out its 16 products instead. The output transform applies the epilogue
(``+ bias``, ``+ residual``, ReLU, in :func:`.conv._epilogue`'s order) while writing.

**Rounding.** The sum over channels runs in the products as the direct convolution's does, but on
transformed values, so results differ from the specification's in the last bits (the transforms
add and halve, then ``A^T`` adds four products): measured against the specification (float64)
the error is of the direct float32 convolution's order, and the tests hold it to the tiled conv's
tolerance. The tiles depend on the shapes and the thread count alone, so a run repeats bit for
bit. It is used at inference only
(:func:`.conv.conv2d_forward_tiled` with ``winograd=True``, which ``F.conv2d`` and the folded
inference convs pass outside the tape), so training is unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .threads import bands, cpu_threads, groups, in_parallel, ranges, share_out, shared_copy, split

# B^T, G, A^T of F(2x2, 3x3) (Lavin & Gray, section 4.1); the kernels below spell B^T and A^T out
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

MIN_CHANNELS = 32  # C_in and C_out at least this: narrower convs spend more in the transforms than they save
# output positions (N * Ho * Wo) at least this. A small map shares out only its products, which still pays: a
# 3x3 of 256 channels on 13x13 took 0.56x the direct conv's time, on 25x25 0.44x (the weight transform kept)
MIN_POSITIONS = 128
TILE_VALUES = 1 << 21  # values of V and of M per tile of output positions (8 MB each in float32)
MIN_TILES = 256  # ... but at least this many Winograd tiles per product
MIN_PARALLEL = 256  # Winograd tiles per thread below which the tiles are not shared out


def applies(weight_shape, stride, dilation, positions: int) -> bool:
    """Whether :func:`conv3x3_winograd` computes this conv: 3x3, stride 1, dilation 1, at least
    :data:`MIN_CHANNELS` input and output channels and :data:`MIN_POSITIONS` output ``positions``."""
    C_out, C_in, kh, kw = weight_shape
    return (kh == kw == 3 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and min(C_in, C_out) >= MIN_CHANNELS and positions >= MIN_POSITIONS)


def weight_transform(weight):
    """``U (16, C_out, C_in) = G g G^T`` of weight (C_out, C_in, 3, 3), computed in float64, in weight's dtype."""
    C_out, C_in = weight.shape[:2]
    U = _planes(C_out * C_in, weight.dtype)[:, : C_out * C_in].reshape(16, C_out, C_in)  # (16, C_out*C_in) -> ...
    _weight_transform(np.ascontiguousarray(weight), U)
    return U


@njit(cache=True, nogil=True, inline="always")
def _g(a0, a1, a2):
    """``G a`` of a 3-vector (G's rows: a0, (a0 + a1 + a2) / 2, (a0 - a1 + a2) / 2, a2)."""
    return a0, 0.5 * (a0 + a1 + a2), 0.5 * (a0 - a1 + a2), a2


@njit(cache=True, nogil=True)
def _weight_transform(weight, U):
    """``U[4 a + b, o, c] = (G g G^T)[a, b]`` for g = weight[o, c] (3x3), in float64 before the one rounding."""
    for o in range(weight.shape[0]):
        for c in range(weight.shape[1]):
            g = weight[o, c]
            # g G^T, row by row: r_i[b] = (G g_i)[b] for row i of g
            r0 = _g(np.float64(g[0, 0]), np.float64(g[0, 1]), np.float64(g[0, 2]))
            r1 = _g(np.float64(g[1, 0]), np.float64(g[1, 1]), np.float64(g[1, 2]))
            r2 = _g(np.float64(g[2, 0]), np.float64(g[2, 1]), np.float64(g[2, 2]))
            for b in range(4):  # G (g G^T), column b
                u = _g(r0[b], r1[b], r2[b])
                for a in range(4):
                    U[4 * a + b, o, c] = u[a]


@njit(cache=True, nogil=True, inline="always")
def _bt(a0, a1, a2, a3):
    """``B^T a`` of a 4-vector (B^T's rows: a0 - a2, a1 + a2, a2 - a1, a1 - a3)."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@njit(cache=True, nogil=True)
def _input_transform(xp, n0, n1, t0, t1, tw, V):
    """``V[xi, c, p] = (B^T d B)[xi]`` for the 4x4 patch ``d`` of padded input ``xp`` (N, C, Hp, Wp) under each
    Winograd tile p of images n0..n1-1, tile rows t0..t1-1 (tw tiles a row), in the order image, row, column.
    The 16 values of a patch are computed in registers and stored once each."""
    C = xp.shape[1]
    for c in range(C):
        p = 0
        for n in range(n0, n1):
            for ti in range(t0, t1):
                y = 2 * ti
                for tj in range(tw):
                    x = 2 * tj
                    # B^T d, column by column: k0[i] is row i of B^T d in column 0
                    k0 = _bt(xp[n, c, y, x], xp[n, c, y + 1, x], xp[n, c, y + 2, x], xp[n, c, y + 3, x])
                    k1 = _bt(xp[n, c, y, x + 1], xp[n, c, y + 1, x + 1], xp[n, c, y + 2, x + 1], xp[n, c, y + 3, x + 1])
                    k2 = _bt(xp[n, c, y, x + 2], xp[n, c, y + 1, x + 2], xp[n, c, y + 2, x + 2], xp[n, c, y + 3, x + 2])
                    k3 = _bt(xp[n, c, y, x + 3], xp[n, c, y + 1, x + 3], xp[n, c, y + 2, x + 3], xp[n, c, y + 3, x + 3])
                    # (B^T d) B: row i of the result is B^T applied to row i of B^T d
                    v = _bt(k0[0], k1[0], k2[0], k3[0])
                    V[0, c, p], V[1, c, p], V[2, c, p], V[3, c, p] = v
                    v = _bt(k0[1], k1[1], k2[1], k3[1])
                    V[4, c, p], V[5, c, p], V[6, c, p], V[7, c, p] = v
                    v = _bt(k0[2], k1[2], k2[2], k3[2])
                    V[8, c, p], V[9, c, p], V[10, c, p], V[11, c, p] = v
                    v = _bt(k0[3], k1[3], k2[3], k3[3])
                    V[12, c, p], V[13, c, p], V[14, c, p], V[15, c, p] = v
                    p += 1


@njit(cache=True, nogil=True)
def _output_transform(M, n0, n1, t0, t1, tw, bias, has_bias, residual, has_residual, relu, out):
    """``out[n, o, 2ti:2ti+2, 2tj:2tj+2] = (A^T M[:, o, p] A)`` for each Winograd tile p (as
    :func:`_input_transform`'s), cut at out's (N, C_out, Ho, Wo) edges, then ``+ bias[o]`` (when ``has_bias``),
    ``+ residual`` (when ``has_residual``; out's shape) and ReLU (when ``relu``), all in out's dtype."""
    C_out, Ho, Wo = out.shape[1], out.shape[2], out.shape[3]
    for o in range(C_out):
        b = bias[o]
        p = 0
        for n in range(n0, n1):
            for ti in range(t0, t1):
                y = 2 * ti
                for tj in range(tw):
                    x = 2 * tj
                    # A^T m: rows m0 + m1 + m2 and m1 - m2 - m3 of the 4x4, then the same of their columns
                    s00 = M[0, o, p] + M[4, o, p] + M[8, o, p]
                    s01 = M[1, o, p] + M[5, o, p] + M[9, o, p]
                    s02 = M[2, o, p] + M[6, o, p] + M[10, o, p]
                    s03 = M[3, o, p] + M[7, o, p] + M[11, o, p]
                    s10 = M[4, o, p] - M[8, o, p] - M[12, o, p]
                    s11 = M[5, o, p] - M[9, o, p] - M[13, o, p]
                    s12 = M[6, o, p] - M[10, o, p] - M[14, o, p]
                    s13 = M[7, o, p] - M[11, o, p] - M[15, o, p]
                    for a in range(2):
                        if y + a >= Ho:
                            break
                        if a == 0:
                            v0, v1 = s00 + s01 + s02, s01 - s02 - s03
                        else:
                            v0, v1 = s10 + s11 + s12, s11 - s12 - s13
                        for e in range(2):
                            if x + e >= Wo:
                                break
                            v = v0 if e == 0 else v1
                            if has_bias:
                                v += b
                            if has_residual:
                                v += residual[n, o, y + a, x + e]
                            if relu and v < 0:
                                v = v - v  # 0 in out's dtype (NaN is not < 0: it stays, as np.maximum keeps it)
                            out[n, o, y + a, x + e] = v
                    p += 1


def _tiles(N: int, th: int, tw: int, per_tile: int, parts: int) -> list:
    """Tiles of Winograd tiles ``(n0, n1, t0, t1)``: a band of tile rows of one image or a group of whole
    images, each about :data:`TILE_VALUES` / ``per_tile`` Winograd tiles (at least :data:`MIN_TILES`), and
    at least ``parts`` of them when each would still hold :data:`MIN_PARALLEL`; few bands or groups as many
    for every worker as the rows or images allow (:func:`.threads.cuts`)."""
    size = max(tw, MIN_TILES, TILE_VALUES // per_tile)
    total = N * th * tw
    if parts > 1 and total >= parts * MIN_PARALLEL:
        size = max(tw, min(size, -(-total // parts)))
    if th * tw <= size:
        return groups(N, size // (th * tw), th, parts)  # tiles of whole images
    return bands(N, th, max(1, size // tw), parts)


def _planes(values: int, dtype):
    """A (16, >= values) buffer for V or M whose 16 planes start 272 bytes apart modulo 4 KiB: planes a
    multiple of 4 KiB apart make the transforms' 16 streams collide in the cache (4K aliasing; measured
    4x slower input transform at C * P = 128 * 1000)."""
    itemsize = np.dtype(dtype).itemsize
    pad = ((272 - values * itemsize) % 4096) // itemsize
    return np.empty((16, values + pad), dtype=dtype)


def conv3x3_winograd(x, weight, bias, padding, relu: bool = False, residual=None, U=None):
    """``conv2d`` of x (N, C_in, H, W) by weight (C_out, C_in, 3, 3), stride 1, ``padding`` (ph, pw) -> (N, C_out,
    Ho, Wo), by F(2x2, 3x3) (module doc), then ``+ bias`` (C_out,), ``+ residual`` (N, C_out, Ho, Wo) and ReLU,
    each optional. ``U``: :func:`weight_transform` of ``weight`` when the caller keeps it."""
    N, C, H, W = x.shape
    C_out = weight.shape[0]
    ph, pw = padding
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = -(-Ho // 2), -(-Wo // 2)  # Winograd tiles down and across
    dtype = x.dtype
    out = np.empty((N, C_out, Ho, Wo), dtype=dtype)
    if N == 0:
        return out
    U = weight_transform(weight) if U is None else U
    # the input zero-padded to whole 4x4 patches: (2 th + 2) x (2 tw + 2), the conv's padding at its top left
    threads = cpu_threads()
    xp = np.zeros((N * C, 2 * th + 2, 2 * tw + 2), dtype=dtype)
    # (N, C, H, W) -> (N*C, H, W): the planes copied in, shared out over the threads when large
    shared_copy(xp[:, ph : ph + H, pw : pw + W], x.reshape(N * C, H, W), threads)
    xp = xp.reshape(N, C, 2 * th + 2, 2 * tw + 2)  # (N*C, Hp, Wp) -> (N, C, Hp, Wp)
    b = np.zeros(C_out, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    res = np.empty((1, 1, 1, 1), dtype=dtype) if residual is None else np.ascontiguousarray(residual, dtype=dtype)

    def run(tiles, product_threads=1):
        largest = max((n1 - n0) * (t1 - t0) * tw for n0, n1, t0, t1 in tiles)
        v_buffer, m_buffer = _planes(C * largest, dtype), _planes(C_out * largest, dtype)
        for n0, n1, t0, t1 in tiles:
            P = (n1 - n0) * (t1 - t0) * tw
            V = v_buffer[:, : C * P].reshape(16, C, P)  # (16, C*P) -> (16, C, P), a view
            M = m_buffer[:, : C_out * P].reshape(16, C_out, P)  # (16, C_out*P) -> (16, C_out, P), a view
            _input_transform(xp, n0, n1, t0, t1, tw, V)
            # (16, C_out, C_in) @ (16, C_in, P) -> (16, C_out, P): the 16 products, shared out when asked
            in_parallel(lambda r, V=V, M=M: np.matmul(U[r[0]:r[1]], V[r[0]:r[1]], out=M[r[0]:r[1]]),
                        ranges(16, product_threads))
            _output_transform(M, n0, n1, t0, t1, tw, b, bias is not None, res, residual is not None, relu, out)

    tiles = _tiles(N, th, tw, 16 * max(C, C_out), threads)
    chunks = [tiles]  # too few tiles to share out: the caller's thread transforms, every tile's products shared out
    if N * th * tw >= threads * MIN_PARALLEL:  # runs of tiles, one per thread
        chunks = split(tiles, [(n1 - n0) * (t1 - t0) for n0, n1, t0, t1 in tiles], threads)
    share_out(run, tiles, chunks, threads)
    return out
