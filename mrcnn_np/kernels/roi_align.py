"""RoIAlign kernels; the specification is :func:`mrcnn_np.ops.roi_align.roi_align_numpy`.

All kernels take the :class:`~mrcnn_np.ops.roi_align.SamplingPlan` (per-axis bilinear taps of
every sample point) and the output size as a checked ``(ph, pw)`` pair.

Numba, CPU (``roi_align_numba``, ``roi_align_backward_numba``) works **channels-last**:
features (N, H, W, C), copied into that layout once per call. The four pixels a point reads
are then four contiguous runs of C values, which the compiler vectorises, and the
interpolation weights are computed once per point and shared by all channels. That layout,
plus parallel boxes, is what makes the CPU kernel fast; the copy is one pass over the map,
small next to R x ph x pw x (points) x 4 x C reads.

Forward: boxes in parallel (``prange`` where numba's parallel CPU kernels are on:
:data:`mrcnn_np.kernels.PARALLEL`, otherwise runs of boxes on the threads of :mod:`.threads`; boxes
never interact, so any split gives the same bits); per bin, per sample point,
``acc += w1 * f[y0, x0] + w2 * f[y0, x1] + w3 * f[y1, x0] + w4 * f[y1, x1]`` over channels
(torchvision's expression, term for term), then ``acc / count``. Each box runs over **whole rows of
channels**: the same loop over a slice ``c0..c1`` of them (the channels shared out instead, as before)
measured 4x slower per value, on one thread as on two (the compiler vectorises the loop over a whole
contiguous row, not over a slice whose bounds come in as arguments).

Backward: the same loop scattering ``grad * w / count`` to the four pixels (torchvision's
expression). Where ``count`` is a power of two (``sampling_ratio=2``: 4 points, the models'
setting) ``1 / count`` is exact and the kernel multiplies by ``w * (1 / count)`` instead: the same
value bit for bit (scaling by a power of two commutes with rounding, subnormals aside), with one
multiply per channel and no division, which made the loop twice as fast. Boxes overlap, so
boxes cannot be shared out: numba's threads (:data:`mrcnn_np.kernels.PARALLEL`) split the
*channels* (no two threads ever write the same element); otherwise it runs on one thread over whole
rows of channels, which measured 4.5x faster than the channels split in two over two threads
(the demo's box RoIs: 1.5 ms against 7.5 ms), for the reason above.

numba.cuda (``roi_align_cuda``, ``roi_align_backward_cuda``) reads the features and writes
the gradient **in place, (N, C, H, W)**, with no per-call copy: one thread per output element
``(r, c, p, q)`` in NCHW order, the bin column ``q`` fastest (torchvision's CUDA mapping).
The output is written contiguous (coalesced stores, no transposed result). A warp covers the
bins of one box in one channel, whose taps lie in a small window of one channel plane: the
FPN level mapper sends each box to the level where it spans about 7-28 feature pixels, so the
window is a few cache lines, reused by every tap and neighbouring bin from L1/L2. The other
layout -- channels-last with the channel fastest -- makes every tap one coalesced 128-byte
load, but costs a transposed copy of the whole feature map per call (both directions in the
backward: the gradient map too), and returns strided arrays that the next op copies again.
Not measured here (no GPU); benchmarks/gpu_check.py is where to time the two.
The backward adds with ``cuda.atomic.add`` (boxes overlap, and neighbouring bins share
pixels); float32 and float64 both have native atomic adds on sm_60 and later.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda, int64, njit, prange

from . import parallel_cpu
from .device import THREADS, Launcher, blocks_for
from .threads import cpu_threads, in_parallel, ranges


def _channels_last(x):
    """The CPU kernels' layout: (N, C, H, W) -> (N, H, W, C), contiguous (module doc)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@njit(cache=True, nogil=True)
def _forward_box(f, b, r, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, n, out):
    """Box ``r`` (of image ``b``, ``n`` points per bin), every channel: whole rows (module doc)."""
    C = f.shape[3]
    PH, GY = ylo.shape[1], ylo.shape[2]
    PW, GX = xlo.shape[1], xlo.shape[2]
    for p in range(PH):
        for q in range(PW):
            acc = out[r, p, q]  # (C,) view, zero-initialised
            for iy in range(GY):
                y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
                for ix in range(GX):
                    x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
                    w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
                    f1, f2, f3, f4 = f[b, y0, x0], f[b, y0, x1], f[b, y1, x0], f[b, y1, x1]  # (C,) runs
                    for c in range(C):
                        acc[c] += w1 * f1[c] + w2 * f2[c] + w3 * f3[c] + w4 * f4[c]
            for c in range(C):
                acc[c] /= n


@njit(parallel=True, cache=True)
def _forward_cpu(f, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, out):
    """Every box, all channels; boxes in parallel on numba's threads (``prange``)."""
    for r in prange(ylo.shape[0]):
        _forward_box(f, batch[r], r, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count[r], out)


@njit(cache=True, nogil=True)
def _forward_boxes(f, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, out, r0, r1):
    """Boxes ``r0..r1-1``, every channel (one thread's share: boxes never interact in the forward)."""
    for r in range(r0, r1):
        _forward_box(f, batch[r], r, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count[r], out)


@njit(cache=True, nogil=True)
def _backward_channels(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad, c0, c1):
    """Every box's gradient scattered onto channels ``c0..c1-1`` of ``grad`` (no other channel is touched)."""
    R, PH, GY = ylo.shape
    PW, GX = xlo.shape[1], xlo.shape[2]
    for r in range(R):
        b, n = batch[r], count[r]
        k = int(n)  # count is a whole number of points
        exact = k == n and k > 0 and (k & (k - 1)) == 0  # a power of two (sampling_ratio=2: 4 points)
        inv = g.dtype.type(1.0 / n)
        for p in range(PH):
            for q in range(PW):
                for iy in range(GY):
                    y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
                    for ix in range(GX):
                        x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
                        w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
                        g1 = g[r, p, q]
                        d1, d2, d3, d4 = grad[b, y0, x0], grad[b, y0, x1], grad[b, y1, x0], grad[b, y1, x1]
                        if exact:  # (g * w) / n == g * (w * inv): scaling by a power of two is exact
                            v1, v2, v3, v4 = w1 * inv, w2 * inv, w3 * inv, w4 * inv
                            for c in range(c0, c1):
                                d1[c] += g1[c] * v1
                                d2[c] += g1[c] * v2
                                d3[c] += g1[c] * v3
                                d4[c] += g1[c] * v4
                        else:
                            for c in range(c0, c1):
                                d1[c] += g1[c] * w1 / n
                                d2[c] += g1[c] * w2 / n
                                d3[c] += g1[c] * w3 / n
                                d4[c] += g1[c] * w4 / n


@njit(parallel=True, cache=True)
def _backward_cpu(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad, blocks):
    """:func:`_backward_channels` on ``blocks`` slices of the channels, in parallel on numba's threads."""
    C = g.shape[3]
    width = (C + blocks - 1) // blocks
    for block in prange(blocks):
        _backward_channels(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad, block * width,
                           min(C, (block + 1) * width))


@njit(cache=True, nogil=True)
def _backward_rows(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad):
    """:func:`_backward_channels` over every channel: whole rows, the loop the compiler vectorises."""
    _backward_channels(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad, 0, g.shape[3])


def _plan_arrays(plan):
    """The plan as the kernels' ten arguments: batch, y taps, x taps, count."""
    y, x = plan.y, plan.x
    return (plan.batch, y.low, y.high, y.w_low, y.w_high, x.low, x.high, x.w_low, x.w_high, plan.count)


def _box_runs(R: int, C: int, bins: int) -> list:
    """The boxes as one ``(r0, r1)`` run per thread of :mod:`.threads` (one run when the call is
    small: under :data:`MIN_PARALLEL` channel-bins of work per thread)."""
    threads = cpu_threads()
    return ranges(R, threads if R * bins * C >= threads * MIN_PARALLEL else 1)


MIN_PARALLEL = 1 << 15  # channel-bins per thread below which a call runs on one thread


def roi_align_numba(features, plan, output_size):
    """(R, C, ph, pw), a transposed view of the channels-last result. Boxes in parallel on numba's threads
    where :data:`mrcnn_np.kernels.PARALLEL`; otherwise runs of boxes on the threads of :mod:`.threads`."""
    ph, pw = output_size
    R, C = len(plan.batch), features.shape[1]
    out = np.zeros((R, ph, pw, C), dtype=features.dtype)
    f, arrays = _channels_last(features), [np.ascontiguousarray(a) for a in _plan_arrays(plan)]
    if parallel_cpu():
        _forward_cpu(f, *arrays, out)
    else:
        in_parallel(lambda rs: _forward_boxes(f, *arrays, out, *rs), _box_runs(R, C, ph * pw))
    return out.transpose(0, 3, 1, 2)  # (R, ph, pw, C) -> (R, C, ph, pw)


def roi_align_backward_numba(grad_out, plan, input_shape):
    """(N, C, H, W), a transposed view of the channels-last gradient. The channels split over numba's threads
    where :data:`mrcnn_np.kernels.PARALLEL`; otherwise on this thread, whole rows of channels (module doc)."""
    N, C, H, W = input_shape
    grad = np.zeros((N, H, W, C), dtype=grad_out.dtype)
    g, arrays = _channels_last(grad_out), [np.ascontiguousarray(a) for a in _plan_arrays(plan)]
    if parallel_cpu():
        _backward_cpu(g, *arrays, grad, min(C, numba.get_num_threads()))  # one channel slice per thread
    else:
        _backward_rows(g, *arrays, grad)
    return grad.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


# --- numba.cuda ----------------------------------------------------------------------------------
@cuda.jit(cache=True)
def _forward_gpu(f, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, zero, out):
    """out[r, c, p, q] = mean over the bin's points of the bilinear read of f[batch[r], c]."""
    i = cuda.grid(1)
    R, C, PH, PW = out.shape
    if i >= R * C * PH * PW:
        return
    q, p, c, r = i % PW, (i // PW) % PH, (i // (PW * PH)) % C, i // (PW * PH * C)
    b = batch[r]
    acc = zero
    for iy in range(ylo.shape[2]):
        y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
        for ix in range(xlo.shape[2]):
            x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
            acc += hy * hx * f[b, c, y0, x0] + hy * lx * f[b, c, y0, x1] + ly * hx * f[b, c, y1, x0] \
                + ly * lx * f[b, c, y1, x1]
    out[r, c, p, q] = acc / count[r]


@cuda.jit(cache=True)
def _backward_gpu(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad):
    """grad[batch[r], c] += the bilinear taps of g[r, c, p, q] / count (the forward's adjoint)."""
    i = cuda.grid(1)
    R, C, PH, PW = g.shape
    if i >= R * C * PH * PW:
        return
    q, p, c, r = i % PW, (i // PW) % PH, (i // (PW * PH)) % C, i // (PW * PH * C)
    b = batch[r]
    gc = g[r, c, p, q]
    for iy in range(ylo.shape[2]):
        y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
        for ix in range(xlo.shape[2]):
            x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
            cuda.atomic.add(grad, (b, c, y0, x0), gc * (hy * hx) / count[r])
            cuda.atomic.add(grad, (b, c, y0, x1), gc * (hy * lx) / count[r])
            cuda.atomic.add(grad, (b, c, y1, x0), gc * (ly * hx) / count[r])
            cuda.atomic.add(grad, (b, c, y1, x1), gc * (ly * lx) / count[r])


def roi_align_cuda(features, plan, output_size):
    """(R, C, ph, pw), contiguous, an array of the features' kind (CuPy or NumPy)."""
    run = Launcher(features)
    ph, pw = output_size
    out = run.empty((len(plan.batch), features.shape[1], ph, pw), features.dtype)  # every element written
    run.launch(_forward_gpu, blocks_for(out.size), THREADS, run.input(features), *map(run.input, _plan_arrays(plan)),
               features.dtype.type(0), out)
    return run.result(out)


def roi_align_backward_cuda(grad_out, plan, input_shape):
    """(N, C, H, W) gradient of the features, an array of ``grad_out``'s kind."""
    run = Launcher(grad_out)
    grad = run.zeros(tuple(input_shape), grad_out.dtype)  # zeroed on the device, then accumulated into
    run.launch(_backward_gpu, blocks_for(grad_out.size), THREADS, run.input(grad_out),
               *map(run.input, _plan_arrays(plan)), grad)
    return run.result(grad)


# numba.cuda kernels of this module -> their argument types for a float type f (float32 or
# float64); tests/kernels/test_ptx.py compiles each to PTX for sm_90 in both.
def _plan_types(f):
    taps = (int64[:, :, ::1], int64[:, :, ::1], f[:, :, ::1], f[:, :, ::1])
    return (int64[::1], *taps, *taps, f[::1])


CUDA_KERNELS = {
    "_forward_gpu": lambda f: (f[:, :, :, ::1], *_plan_types(f), f, f[:, :, :, ::1]),
    "_backward_gpu": lambda f: (f[:, :, :, ::1], *_plan_types(f), f[:, :, :, ::1]),
}


# (forward, backward) of each compiled implementation; ops.roi_align's KernelTable loads these
IMPLS = {
    "numba": (roi_align_numba, roi_align_backward_numba),
    "cuda": (roi_align_cuda, roi_align_backward_cuda),
}
