"""Convolutions at matrix-multiply speed on the CPU; the specification is :mod:`mrcnn_np.nn.conv`.

The specification unfolds the *whole* input into one matrix ``cols (C_in*kh*kw, N*Ho*Wo)`` and
multiplies once. For a 3x3 conv of 256 channels on a 200x200 map that matrix is 368 MB: it is
written once (into fresh pages, which the OS zeroes first), read once by the product, and thrown
away, so about as much time goes into moving it as into the arithmetic. These versions compute
the same product **one tile of output positions at a time**::

    for each tile of output positions (a band of rows of one image, or a group of whole images):
        cols_tile = im2col(x)[:, tile]                 _gather, into one reused buffer  (K, T)
        out[:, tile] = weight (C_out, K) @ cols_tile   np.matmul(out=), straight into the output
        epilogue: + bias, + residual, ReLU             while the tile is still in cache

``K = C_in*kh*kw``. A tile holds about :data:`TILE_VALUES` values of ``cols`` (16 MB), so it stays in
the L3 cache between being written and being multiplied, but at least :data:`MIN_COLUMNS`
output positions, below which the product itself slows down. ``_gather`` is one NumPy copy of
the receptive-field view (the specification's strided windows) into the tile's buffer: its
inner runs are rows of the input, so a stride-1 copy moves contiguous memory. A strided conv's
runs are read ``stride`` apart, which NumPy copies one value at a time: ``_gather_rows``, a numba
loop over the same runs straight from the unpadded input, gathers them in vectors (half the time
of the copy for the backbone's stride-2 3x3s: 20-25% of such a conv went to the gather). A 1x1 stride-1
conv gathers nothing: an image's (C_in, H*W) *is* its ``cols``, a view, one product per image
(images smaller than a tile, a head's RoIs, grouped into one product per tile instead, unless each
image's product is large enough on its own: :data:`MIN_IMAGE_MACS`).
The epilogue is what :mod:`mrcnn_np.nn.fused` uses at inference (a norm folded into the bias,
the bottleneck's residual sum and ReLU) to save whole passes over the output. At inference
(``winograd=True``) a 3x3 stride-1 conv of enough channels and positions runs as Winograd's
F(2x2, 3x3) instead (:mod:`.winograd`): 16 products over channels with 4/9 of the arithmetic.

The backward runs the same tiles. A stride-1 conv's input gradient is itself a stride-1 conv (of
the output gradient, by the weight flipped in space with C_in and C_out swapped, padded by
``dilation*(k-1) - padding``), so it runs as the tiled forward above; otherwise
``d_cols = weight.T @ grad_tile`` is folded back onto the input by ``_fold``. And
``d_weight += cols_tile @ grad_tile.T``, with ``cols_tile`` gathered again rather than kept from
the forward pass (a gather costs less than keeping K x N*Ho*Wo values alive).
``_fold`` is a numba kernel that adds a tile's columns to the input positions they came from in
one pass (the specification makes kh*kw strided passes over the whole gradient), per channel,
tap and row, in the specification's order of taps. A transposed convolution is that backward
used as a forward (``_fold`` of ``weight.T @ x``), and its backward is a convolution and a weight
gradient.

**Threads** (:mod:`.threads`): the tiles are independent, so a conv shares them out over the cores,
each thread gathering and multiplying its own run of tiles, with BLAS on one thread; a conv with
fewer than :data:`MIN_PARALLEL` columns per thread runs on the caller's alone. (A numba parallel
region was tried before and cost more than it saved: its OpenMP threads and OpenBLAS's each
spin-wait for the cores.) Measured on the 2-core machine, same run, two threads against the
serial tiles with BLAS's two threads: the demo's training iteration (``bench_train.py``) went from
1.01x-1.17x torchvision's to 0.92x-0.95x. Folds into a band of one image share input rows, so a
strided conv's input gradient is shared out only over tiles of whole images.

Every product has the specification's shape of reduction (the same ``K`` per output value, by
the same BLAS routine), so with one tile (one thread) the forward equals the specification bit for
bit, as measured; across tiles the weight gradient is summed tile by tile (then thread by thread,
in the order of their tiles), a pixel's input gradient receives its taps tile by tile, and BLAS
may round a narrower product's edge columns differently, which changes the last bits only
(``tests/kernels/test_conv_kernels.py``). The tiles depend on the shapes and the thread count
alone, so a run repeats bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from . import winograd as winograd_kernels
from .threads import (
    bands,
    copy_parts,
    cpu_threads,
    groups,
    in_parallel,
    ranges,
    rows_product,
    share_out,
    shared_copy,
    split,
)

TILE_VALUES = 1 << 22  # values of cols per tile (16 MB in float32: inside the 32 MB L3 cache) ...
MIN_COLUMNS = 1024  # ... but at least this many output positions: a narrower product runs slower
# multiply-adds of one image's product above which a 1x1 conv of small maps multiplies image by image rather
# than grouping images (measured: 100 RoIs of 28x28, 256 -> 91 channels, in about half the time)
MIN_IMAGE_MACS = 1 << 23
MIN_PARALLEL = 512  # columns per thread below which a conv's tiles are not shared out (a hand-off: ~50 us)


def _chunks(tiles: list, Wo: int, threads: int) -> list:
    """``tiles`` as at most ``threads`` runs of consecutive tiles with about equal numbers of columns."""
    return split(tiles, [(n1 - n0) * (r1 - r0) * Wo for n0, n1, r0, r1 in tiles], threads)


def _gatherer(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, threads: int = 1):
    """The im2col gather of one conv, ``gather(n0, n1, r0, r1, cols, threads)``: ``cols (K, T)`` of a tile
    (images ``n0..n1-1``, output rows ``r0..r1-1``) in the order (C, kh, kw, n, rows, Wo). Stride 1:
    :func:`_gather`, a NumPy copy of the windows of a padded copy of ``x`` made here once (their inner runs
    are contiguous rows of the input). Strided: :func:`_gather_strided`, from ``x`` itself (NumPy would copy
    a run read ``sw`` apart one value at a time)."""
    if sw == 1:
        windows = _windows(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, threads)
        return lambda n0, n1, r0, r1, cols, parts=1: _gather(windows, n0, n1, r0, r1, cols, parts)
    return lambda n0, n1, r0, r1, cols, parts=1: _gather_strided(x, kh, kw, sh, sw, ph, pw, dh, dw, Wo,
                                                                  n0, n1, r0, r1, cols, parts)


def _windows(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, threads: int = 1):
    """The receptive fields of (N, C, H, W) as a strided view (N, C, kh, kw, Ho, Wo) of the zero-padded input
    (the specification's ``_windows``); a large input's padded copy is shared out over ``threads``."""
    if ph or pw:  # zeros around a copy (np.pad's general machinery costs more than the copy on small maps)
        N, C, H, W = x.shape
        padded = np.zeros((N * C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
        # (N, C, H, W) -> (N*C, H, W): the planes shared out
        shared_copy(padded[:, ph : ph + H, pw : pw + W], x.reshape(N * C, H, W), threads)
        x = padded.reshape(N, C, H + 2 * ph, W + 2 * pw)  # (N*C, Hp, Wp) -> (N, C, Hp, Wp)
    sN, sC, sH, sW = x.strides
    return np.lib.stride_tricks.as_strided(
        x, shape=(x.shape[0], x.shape[1], kh, kw, Ho, Wo), strides=(sN, sC, sH * dh, sW * dw, sH * sh, sW * sw),
        writeable=False)


def _gather(windows, n0, n1, r0, r1, cols, threads: int = 1):
    """``cols (K, T) = im2col`` of one tile: the windows of images ``n0..n1-1``, output rows ``r0..r1-1``,
    copied in the order (C, kh, kw, n, rows, Wo), the channels shared out over ``threads`` when it is large (a
    conv of one tile, whose product's rows are shared out too). The copy's inner runs are rows of the input."""
    N, C, kh, kw, Ho, Wo = windows.shape
    # (K, T) -> (C, kh, kw, n, rows, Wo): the tile's buffer laid out as the windows it receives
    target = cols.reshape(C, kh, kw, n1 - n0, r1 - r0, Wo)
    shared_copy(target, windows[n0:n1, :, :, :, r0:r1].transpose(1, 2, 3, 0, 4, 5), threads)


def _gather_strided(x, kh, kw, sh, sw, ph, pw, dh, dw, Wo, n0, n1, r0, r1, cols, threads: int = 1):
    """:func:`_gather` of a strided conv, by :func:`_gather_rows` on (N, C, H, W) ``x`` itself (zeros where a tap
    falls in the padding), the channels shared out over ``threads`` when the tile is large."""
    N, C, H, W = x.shape
    flat_x, flat_cols = x.reshape(-1), cols.reshape(-1)  # both contiguous: views

    def channels(bounds):
        _gather_rows(flat_x, C, H, W, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, *bounds, flat_cols)

    in_parallel(channels, ranges(C, min(copy_parts(cols.size, threads), C)))


@njit(cache=True, nogil=True, inline="always")
def _taps_inside(j, sw, dw, pw, Wo, W):
    """The output columns ``q_lo..q_hi-1`` whose tap column j (``q*sw + j*dw - pw``) is inside ``0..W-1``."""
    q_lo = 0
    while q_lo < Wo and q_lo * sw + j * dw - pw < 0:
        q_lo += 1
    q_hi = Wo
    while q_hi > q_lo and (q_hi - 1) * sw + j * dw - pw >= W:
        q_hi -= 1
    return q_lo, q_hi


@njit(cache=True, nogil=True, inline="always")
def _run(t, q_lo, q_hi, n, c, y, C, H, W, j, sw, dw, pw):
    """A row's run of one tap as unsigned ``(start, first, count)``: ``count`` values from ``cols`` (flat)
    at ``start`` and from the (N, C, H, W) input (flat) at ``first``, ``sw`` apart. Unsigned, because numba
    checks a signed index for wraparound on every access, which stops LLVM from vectorising the loop."""
    first = ((n * C + c) * H + y) * W + q_lo * sw + j * dw - pw
    return uint64(t + q_lo), uint64(first), uint64(q_hi - q_lo)


@njit(cache=True, nogil=True)
def _gather_rows(x, C, H, W, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, c0, c1, cols):
    """The loop of the specification's im2col for one tile and channels ``c0..c1-1``, on flat arrays ``x``
    (N*C*H*W) and ``cols`` (K*T): ``cols[k, t] = x[n, c, y, q*sw + j*dw - pw]`` for tap ``k = (c, i, j)``
    and output position ``t = (n, r, q)``, ``y = r*sh + i*dh - ph``; 0 outside the input. One output row
    at a time, a run of Wo values read ``sw`` apart. Fast because the run's indices are unsigned (:func:`_run`)
    and a stride of 2 is a constant of its own loop (LLVM reads the run as whole vectors and shuffles them): about 2x
    NumPy's copy of the same strided view for the backbone's stride-2 3x3s, whose runs are 25-100 values.
    (For stride 1 NumPy's copy of contiguous runs is as fast, and faster on the short rows of a head's RoIs.)"""
    T = (n1 - n0) * (r1 - r0) * Wo
    for c in range(c0, c1):
        for i in range(kh):
            for j in range(kw):
                q_lo, q_hi = _taps_inside(j, sw, dw, pw, Wo, W)
                t = ((c * kh + i) * kw + j) * T
                for n in range(n0, n1):
                    for r in range(r0, r1):
                        y = r * sh + i * dh - ph
                        if y < 0 or y >= H:
                            for q in range(t, t + Wo):
                                cols[q] = 0
                        else:
                            for q in range(t, t + q_lo):
                                cols[q] = 0
                            for q in range(t + q_hi, t + Wo):
                                cols[q] = 0
                            start, first, count = _run(t, q_lo, q_hi, n, c, y, C, H, W, j, sw, dw, pw)
                            if sw == 2:
                                for q in range(count):
                                    cols[start + q] = x[first + uint64(2) * q]
                            else:
                                step = uint64(sw)
                                for q in range(count):
                                    cols[start + q] = x[first + step * q]
                        t += Wo


@njit(cache=True, nogil=True)
def _fold(cols, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, out):
    """The adjoint of :func:`_gather_rows`: ``out[n, c, y, x] += cols[k, t]`` for every tap that read
    input pixel (y, x), in the order channel, tap (i, j), image, row; taps in the padding are dropped.
    ``cols`` (K, T) and ``out`` (N, C, H, W) are contiguous; a row's run is indexed unsigned (:func:`_run`)."""
    N, C, H, W = out.shape
    T = cols.shape[1]
    flat_cols, flat_out = cols.reshape(cols.size), out.reshape(out.size)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                q_lo, q_hi = _taps_inside(j, sw, dw, pw, Wo, W)
                t = ((c * kh + i) * kw + j) * T
                for n in range(n0, n1):
                    for r in range(r0, r1):
                        y = r * sh + i * dh - ph
                        if 0 <= y < H:
                            start, first, count = _run(t, q_lo, q_hi, n, c, y, C, H, W, j, sw, dw, pw)
                            if sw == 1:
                                for q in range(count):
                                    flat_out[first + q] += flat_cols[start + q]
                            else:
                                step = uint64(sw)
                                for q in range(count):
                                    flat_out[first + step * q] += flat_cols[start + q]
                        t += Wo


def _tiles(N: int, Ho: int, Wo: int, K: int, parts: int = 1):
    """The tiles of output positions: ``(n0, n1, r0, r1)``, a band of rows of one image or, when an
    image is smaller than a tile, a group of whole images; each about :data:`TILE_VALUES` / K columns,
    and at least ``parts`` tiles (one per worker) when each would still hold :data:`MIN_PARALLEL` columns;
    few bands or groups as many for every worker as the rows or images allow (:func:`.threads.cuts`)."""
    per_image = Ho * Wo
    if K == 0:  # a pointwise conv gathers nothing: one product per image
        if per_image >= MIN_COLUMNS or N == 1:
            rows = Ho if N >= parts or per_image < parts * MIN_PARALLEL else -(-Ho // parts)
            return [(n, n + 1, r, min(Ho, r + rows)) for n in range(N) for r in range(0, Ho, rows)]
        K = 1
    columns = max(Wo, MIN_COLUMNS, TILE_VALUES // K)
    total = N * per_image
    if parts > 1 and total >= parts * MIN_PARALLEL:
        columns = max(Wo, min(columns, -(-total // parts)))
    if per_image <= columns:
        count = max(1, -(-total // columns))  # tiles of whole images
        return groups(N, -(-N // count), Ho, parts)
    return bands(N, Ho, max(1, columns // Wo), parts)


def _grad_tile(g, n0, n1, r0, r1):
    """Columns of an (N, C, Ho, Wo) array (a gradient, an input of a 1x1 conv, a residual) for one tile
    -> (C, T) (a view for a band of one image)."""
    if n1 - n0 == 1:
        C, Wo = g.shape[1], g.shape[3]
        return g[n0, :, r0:r1].reshape(C, (r1 - r0) * Wo)  # (C, rows, Wo) -> (C, rows*Wo), a view
    # (n, C, Ho, Wo) -> (C, n, Ho, Wo) -> (C, n*Ho*Wo)
    return g[n0:n1].transpose(1, 0, 2, 3).reshape(g.shape[1], -1)


def _put(out, tile, n0, n1, r0, r1):
    """Write ``tile`` (C, T) into ``out`` (N, C, Ho*Wo) at the tile's positions (rows of Wo columns)."""
    C, L = out.shape[1], out.shape[2]
    if n1 - n0 == 1:
        Wo = tile.shape[1] // (r1 - r0)
        out[n0, :, r0 * Wo : r1 * Wo] = tile
    else:
        out[n0:n1] = tile.reshape(C, n1 - n0, L).transpose(1, 0, 2)  # (C, n*L) -> (C, n, L) -> (n, C, L)


def _pointwise(w2, x, out, bias=None, residual=None, relu: bool = False) -> None:
    """``out (N, C_out, L) = w2 (C_out, C_in) @ x (N, C_in, L)`` (then the epilogue), tile by tile: a
    1x1 stride-1 conv, whose every image is its own ``cols``. Maps of at least :data:`MIN_COLUMNS`
    positions: a product per image (or per band of it) straight into ``out``; so too smaller maps whose
    product per image still holds :data:`MIN_IMAGE_MACS` multiply-adds (the mask predictor at inference:
    256 -> 91 channels on 28x28 RoIs). Smaller ones (the RoIs of a narrow head in training) would make
    as many tiny products, far below BLAS speed, so the images are grouped into tiles of about
    :data:`TILE_VALUES` / C_in columns, each one product on its (C_in, n*L) layout, which costs a
    transposed copy of the input and of the output."""
    N, C, L = x.shape

    def run(tiles, row_threads=1):
        for n0, n1, r0, r1 in tiles:
            if n1 - n0 == 1:
                cols, tile = x[n0, :, r0:r1], out[n0, :, r0:r1]  # views
            else:  # (n, C, L) -> (C, n, L) -> (C, n*L)
                cols = x[n0:n1].transpose(1, 0, 2).reshape(C, (n1 - n0) * L)
                tile = np.empty((w2.shape[0], cols.shape[1]), dtype=out.dtype)
            res = None if residual is None else _grad_tile(residual[..., None], n0, n1, r0, r1)
            rows_product(w2, cols, tile, row_threads, _rows_epilogue(tile, bias, res, relu))
            if n1 - n0 > 1:
                _put(out, tile, n0, n1, r0, r1)

    # each image as L rows of one column: (n0, n1, r0, r1) tiles of columns of (C, L)
    threads = cpu_threads()
    if L < MIN_COLUMNS and w2.shape[0] * C * L >= MIN_IMAGE_MACS:  # a product per image, each large enough
        tiles = [(n, n + 1, 0, L) for n in range(N)]
    else:
        tiles = _tiles(N, L, 1, 0 if L >= MIN_COLUMNS else C, threads)
    share_out(run, tiles, _chunks(tiles, 1, threads), threads)


def _rows_epilogue(tile, bias, residual, relu: bool):
    """``epilogue(m0, m1)``: :func:`_epilogue` on rows m0..m1-1 of ``tile`` (C, T), for :func:`.rows_product`."""
    if bias is None and residual is None and not relu:
        return None
    return lambda m0, m1: _epilogue(tile[m0:m1], None if bias is None else bias[m0:m1],
                                    None if residual is None else residual[m0:m1], relu)


def _epilogue(out, bias, residual, relu: bool) -> None:
    """In place on ``out`` (..., C, T): ``+ bias`` (C,), ``+ residual`` (out's shape), then ReLU; each optional."""
    if bias is not None:
        out += bias[:, None]
    if residual is not None:
        out += residual
    if relu:
        np.maximum(out, 0, out=out)


def conv2d_forward_tiled(x, weight, bias, stride, padding, dilation, relu: bool = False, residual=None,
                         winograd: bool = False, transformed=None):
    """``conv2d`` of (N, C_in, H, W) by (C_out, C_in, kh, kw) -> (N, C_out, Ho, Wo), tile by tile (module
    doc), with an epilogue on each tile: ``+ bias`` (C_out,), ``+ residual`` (N, C_out, Ho, Wo), then ReLU
    when ``relu`` -- each optional. Stride, padding and dilation are (h, w) pairs. ``winograd``: a 3x3
    stride-1 conv wide and large enough (:func:`.winograd.applies`) runs as Winograd's F(2x2, 3x3) instead
    (:mod:`.winograd`: 4/9 of the arithmetic; other last bits), which inference asks for; ``transformed``:
    the weight's :func:`.winograd.weight_transform` when the caller keeps it (else computed per call)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if winograd and winograd_kernels.applies(weight.shape, stride, dilation, N * Ho * Wo):
        return winograd_kernels.conv3x3_winograd(x, weight, bias, padding, relu, residual,
                                                 transformed)
    K = C * kh * kw
    w2 = weight.reshape(C_out, K)  # (C_out, C_in, kh, kw) -> (C_out, K)
    x = np.ascontiguousarray(x)
    out = np.empty((N, C_out, Ho * Wo), dtype=x.dtype)
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
        # pointwise: each image's (C_in, H*W) is its own cols, a view; one product per image (or per
        # group of small images) into the output: (C_out, C_in) @ (N, C_in, H*W) -> (N, C_out, H*W)
        _pointwise(w2, x.reshape(N, C, H * W), out, bias,
                   None if residual is None else residual.reshape(N, C_out, Ho * Wo), relu)
        return out.reshape(N, C_out, Ho, Wo)  # (N, C_out, Ho*Wo) -> (N, C_out, Ho, Wo)
    threads = cpu_threads()
    gather = _gatherer(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, threads)

    def run(tiles, row_threads=1):
        largest = max(((n1 - n0) * (r1 - r0) * Wo for n0, n1, r0, r1 in tiles), default=0)
        buffer = np.empty(K * largest, dtype=x.dtype)  # one tile's cols, reused
        for n0, n1, r0, r1 in tiles:
            T = (n1 - n0) * (r1 - r0) * Wo
            cols = buffer[: K * T].reshape(K, T)
            gather(n0, n1, r0, r1, cols, row_threads)
            # a band of one image is written straight into the output (a (C_out, T) view), whole images
            # into a tile that _put lays out
            tile = out[n0, :, r0 * Wo : r1 * Wo] if n1 - n0 == 1 else np.empty((C_out, T), dtype=x.dtype)
            res = None if residual is None else _grad_tile(residual, n0, n1, r0, r1)
            # (C_out, K) @ (K, T), then + bias, + residual, ReLU
            rows_product(w2, cols, tile, row_threads, _rows_epilogue(tile, bias, res, relu))
            if n1 - n0 > 1:
                _put(out, tile, n0, n1, r0, r1)

    tiles = _tiles(N, Ho, Wo, K, threads)
    share_out(run, tiles, _chunks(tiles, Wo, threads), threads)
    return out.reshape(N, C_out, Ho, Wo)  # (N, C_out, Ho*Wo) -> (N, C_out, Ho, Wo)


def conv2d_backward_tiled(grad_out, x, x_shape, weight, stride, padding, dilation, need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)`` of :func:`conv2d_forward_tiled` (without ReLU) for an
    input of shape ``x_shape``; entries not in ``need`` are None. ``x`` is needed for ``d_weight`` only."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x_shape
    C_out, _, kh, kw = weight.shape
    Ho, Wo = grad_out.shape[2:]
    K = C * kh * kw
    w2 = weight.reshape(C_out, K)  # (C_out, C_in, kh, kw) -> (C_out, K)
    x = np.ascontiguousarray(x) if need[1] else None
    g = np.ascontiguousarray(grad_out)
    pointwise = kh == kw == 1 and sh == sw == 1 and ph == pw == 0
    threads = cpu_threads()
    gather = None if pointwise or not need[1] else _gatherer(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, threads)
    dtype = g.dtype
    d_input = None
    full_pad = (dh * (kh - 1) - ph, dw * (kw - 1) - pw)
    if need[0] and pointwise:  # d_cols are the input's own columns: (C_in, C_out) @ (N, C_out, L) -> (N, C_in, L)
        d_input = np.empty((N, C, H * W), dtype=dtype)
        _pointwise(w2.T, g.reshape(N, C_out, Ho * Wo), d_input)
        d_input = d_input.reshape(x_shape)  # (N, C_in, H*W) -> (N, C_in, H, W)
    elif need[0] and sh == sw == 1 and min(full_pad) >= 0:
        # a stride-1 conv's input gradient is itself a stride-1 conv: of grad_out, by the weight flipped
        # in space with C_in and C_out swapped, padded by d*(k-1) - p -- tiled as a forward pass, with no
        # (K, N*Ho*Wo) column gradient to fold back
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C_in, C_out, kh, kw)
        d_input = conv2d_forward_tiled(g, flipped, None, (1, 1), full_pad, dilation)
    elif need[0]:
        d_input = np.zeros(x_shape, dtype=dtype)  # the folds add into it
    fold = need[0] and not pointwise and not (sh == sw == 1 and min(full_pad) >= 0)
    tiles = _tiles(N, Ho, Wo, 0 if pointwise else K, threads) if fold or need[1] else []
    # threads fold into disjoint parts of d_input only when every tile is whole images (bands of one
    # image share input rows)
    chunks = [tiles] if fold and any(r1 - r0 < Ho for _, _, r0, r1 in tiles) else _chunks(tiles, Wo, threads)

    def run(tiles, row_threads=1):
        """These tiles: folds d_cols into d_input, returns their part of d_weight as (K, C_out)."""
        # accumulated as (K, C_out): the first tile's product is written, the others added
        d_weight_t = (np.empty if tiles else np.zeros)((K, C_out), dtype=dtype) if need[1] else None
        largest = max(((n1 - n0) * (r1 - r0) * Wo for n0, n1, r0, r1 in tiles), default=0)
        buffer = np.empty(K * largest, dtype=dtype)
        for index, (n0, n1, r0, r1) in enumerate(tiles):
            T = (n1 - n0) * (r1 - r0) * Wo
            g_tile = _grad_tile(g, n0, n1, r0, r1)  # (C_out, T)
            if fold:
                d_cols = buffer[: K * T].reshape(K, T)
                rows_product(w2.T, g_tile, d_cols, row_threads)  # (K, C_out) @ (C_out, T)
                _fold(d_cols, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, d_input)
            if need[1]:
                if pointwise:
                    cols = _grad_tile(x, n0, n1, r0, r1)
                else:
                    cols = buffer[: K * T].reshape(K, T)
                    gather(n0, n1, r0, r1, cols, row_threads)
                # (K, T) @ (T, C_out): the long axis outside (OpenBLAS is much slower on g @ cols.T)
                rows_product(cols, g_tile.T, d_weight_t, row_threads, accumulate=index > 0)
        return d_weight_t

    parts = share_out(run, tiles, chunks, threads)
    if need[1]:
        d_weight_t = parts[0] if parts else np.zeros((K, C_out), dtype=dtype)
        for part in parts[1:]:  # the threads' sums, in the order of their tiles
            d_weight_t += part
    d_weight = d_weight_t.T.reshape(weight.shape) if need[1] else None
    d_bias = grad_out.sum(axis=(0, 2, 3)) if need[2] else None
    return d_input, d_weight, d_bias


def conv_transpose2d_forward_tiled(x, weight, bias, stride, padding, output_size, dilation):
    """``conv_transpose2d`` of (N, C_in, H, W) by (C_in, C_out, kh, kw) (+ bias) -> (N, C_out, Ho, Wo)
    (``output_size``): the input gradient of the convolution by ``weight`` read as (C_out', C_in', kh, kw)
    = (C_in, C_out, kh, kw), for ``grad_out = x``."""
    N, C_out = x.shape[0], weight.shape[1]
    out_shape = (N, C_out, *output_size)
    out = conv2d_backward_tiled(x, None, out_shape, weight, stride, padding, dilation, (True, False, False))[0]
    if bias is not None:
        out += bias.reshape(1, C_out, 1, 1)
    return out


def conv_transpose2d_backward_tiled(grad_out, x, weight, stride, padding, dilation, need=(True, True, True)):
    """Gradients ``(d_input, d_weight, d_bias)`` of :func:`conv_transpose2d_forward_tiled`: the
    convolution of ``grad_out`` by ``weight`` (d_input), and that convolution's weight gradient
    with ``x`` as its output gradient (d_weight, already laid out (C_in, C_out, kh, kw))."""
    d_input = conv2d_forward_tiled(grad_out, weight, None, stride, padding, dilation) if need[0] else None
    d_weight = None
    if need[1]:
        d_weight = conv2d_backward_tiled(x, grad_out, grad_out.shape, weight, stride, padding, dilation,
                                         (False, True, False))[1]
    d_bias = grad_out.sum(axis=(0, 2, 3)) if need[2] else None
    return d_input, d_weight, d_bias


def _conv2d_numba(x, weight, bias, stride, padding, dilation, keep: bool, winograd: bool = False):
    """Table entry of ``conv2d``: ``(out, saved)``; the backward gathers again, so nothing is saved.
    ``winograd`` (``F.conv2d`` outside the tape: inference): a 3x3 stride-1 conv may run as :mod:`.winograd`."""
    return conv2d_forward_tiled(x, weight, bias, stride, padding, dilation, winograd=winograd), None


def _conv2d_backward_numba(grad_out, x, saved, weight, stride, padding, dilation, need):
    return conv2d_backward_tiled(grad_out, x, x.shape, weight, stride, padding, dilation, need)


def _conv_transpose2d_numba(x, weight, bias, stride, padding, output_padding, dilation, output_size):
    """Table entry of ``conv_transpose2d``: the caller's ``output_size`` already holds ``output_padding``."""
    return conv_transpose2d_forward_tiled(x, weight, bias, stride, padding, output_size, dilation)


CONV2D_IMPL = (_conv2d_numba, _conv2d_backward_numba)
CONV_TRANSPOSE2D_IMPL = (_conv_transpose2d_numba, conv_transpose2d_backward_tiled)
