"""RoIAlign kernels; the specification is :func:`mrcnn_np.ops.roi_align.roi_align_numpy`.

All kernels take the :class:`~mrcnn_np.ops.roi_align.SamplingPlan` (per-axis bilinear taps of
every sample point) and the output size as a checked ``(ph, pw)`` pair, and work
**channels-last**: features (N, H, W, C). The four pixels a point reads are then four
contiguous runs of C values, which the compiler vectorises, and the interpolation weights are
computed once per point and shared by all channels. That layout, plus parallel boxes, is what
makes the CPU kernel fast.

Forward (``roi_align_numba``): boxes in parallel (``prange``); per bin, per sample point,
``acc += w1 * f[y0, x0] + w2 * f[y0, x1] + w3 * f[y1, x0] + w4 * f[y1, x1]`` over channels
(torchvision's expression, term for term), then ``acc / count``.

Backward (``roi_align_backward_numba``): the same loop scattering ``grad * w / count`` to the
four pixels. Boxes overlap, so threads split the *channels* instead of the boxes (one slice
per thread): no two threads ever write the same element.

numba.cuda (``roi_align_cuda``, ``roi_align_backward_cuda``): one thread per output element
(box, bin, channel) with the channel fastest, so neighbouring threads read neighbouring
memory; the backward adds with ``cuda.atomic.add``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda, njit, prange

from ..backend import get_array_module
from .device import from_cuda, to_cuda


def _channels_last(x):
    xp = get_array_module(x)
    return xp.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)


@njit(parallel=True, cache=True)
def _forward_cpu(f, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, out):
    R, PH, GY = ylo.shape
    PW, GX = xlo.shape[1], xlo.shape[2]
    C = f.shape[3]
    for r in prange(R):
        b = batch[r]
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
                    acc[c] /= count[r]


@njit(parallel=True, cache=True)
def _backward_cpu(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad, blocks):
    R, PH, GY = ylo.shape
    PW, GX = xlo.shape[1], xlo.shape[2]
    C = g.shape[3]
    width = (C + blocks - 1) // blocks
    for block in prange(blocks):
        c0, c1 = block * width, min(C, (block + 1) * width)
        for r in range(R):
            b = batch[r]
            for p in range(PH):
                for q in range(PW):
                    for iy in range(GY):
                        y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
                        for ix in range(GX):
                            x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
                            w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
                            g1, n = g[r, p, q], count[r]
                            d1, d2, d3, d4 = grad[b, y0, x0], grad[b, y0, x1], grad[b, y1, x0], grad[b, y1, x1]
                            for c in range(c0, c1):
                                d1[c] += g1[c] * w1 / n
                                d2[c] += g1[c] * w2 / n
                                d3[c] += g1[c] * w3 / n
                                d4[c] += g1[c] * w4 / n


def _plan_arrays(plan, xp=np):
    y, x = plan.y, plan.x
    arrays = (plan.batch, y.low, y.high, y.w_low, y.w_high, x.low, x.high, x.w_low, x.w_high, plan.count)
    return tuple(xp.ascontiguousarray(a) for a in arrays)


def roi_align_numba(features, plan, output_size):
    ph, pw = output_size
    R, C = len(plan.batch), features.shape[1]
    out = np.zeros((R, ph, pw, C), dtype=features.dtype)
    _forward_cpu(_channels_last(features), *_plan_arrays(plan), out)
    return out.transpose(0, 3, 1, 2)  # (R, ph, pw, C) -> (R, C, ph, pw)


def roi_align_backward_numba(grad_out, plan, input_shape):
    N, C, H, W = input_shape
    grad = np.zeros((N, H, W, C), dtype=grad_out.dtype)
    blocks = min(C, numba.get_num_threads())  # one channel slice per thread: the per-point work is shared
    _backward_cpu(np.ascontiguousarray(grad_out.transpose(0, 2, 3, 1)), *_plan_arrays(plan), grad, blocks)
    return grad.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


# --- numba.cuda ----------------------------------------------------------------------------------
@cuda.jit(cache=True)
def _forward_gpu(f, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, out):
    i = cuda.grid(1)
    R, PH, PW, C = out.shape
    if i >= R * PH * PW * C:
        return
    c, q, p, r = i % C, (i // C) % PW, (i // (C * PW)) % PH, i // (C * PW * PH)
    b = batch[r]
    acc = out[r, p, q, c]  # 0
    for iy in range(ylo.shape[2]):
        y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
        for ix in range(xlo.shape[2]):
            x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
            acc += hy * hx * f[b, y0, x0, c] + hy * lx * f[b, y0, x1, c] + ly * hx * f[b, y1, x0, c] \
                + ly * lx * f[b, y1, x1, c]
    out[r, p, q, c] = acc / count[r]


@cuda.jit(cache=True)
def _backward_gpu(g, batch, ylo, yhi, wylo, wyhi, xlo, xhi, wxlo, wxhi, count, grad):
    i = cuda.grid(1)
    R, PH, PW, C = g.shape
    if i >= R * PH * PW * C:
        return
    c, q, p, r = i % C, (i // C) % PW, (i // (C * PW)) % PH, i // (C * PW * PH)
    b = batch[r]
    gc = g[r, p, q, c]
    for iy in range(ylo.shape[2]):
        y0, y1, hy, ly = ylo[r, p, iy], yhi[r, p, iy], wylo[r, p, iy], wyhi[r, p, iy]
        for ix in range(xlo.shape[2]):
            x0, x1, hx, lx = xlo[r, q, ix], xhi[r, q, ix], wxlo[r, q, ix], wxhi[r, q, ix]
            cuda.atomic.add(grad, (b, y0, x0, c), gc * (hy * hx) / count[r])
            cuda.atomic.add(grad, (b, y0, x1, c), gc * (hy * lx) / count[r])
            cuda.atomic.add(grad, (b, y1, x0, c), gc * (ly * hx) / count[r])
            cuda.atomic.add(grad, (b, y1, x1, c), gc * (ly * lx) / count[r])


def _launch(kernel, n, *args):
    threads = 128
    kernel[math.ceil(n / threads), threads](*args)


def roi_align_cuda(features, plan, output_size):
    xp = get_array_module(features)
    ph, pw = output_size
    R, C = len(plan.batch), features.shape[1]
    out = cuda.to_device(np.zeros((R, ph, pw, C), dtype=features.dtype))
    _launch(_forward_gpu, out.size, to_cuda(_channels_last(features)), *map(to_cuda, _plan_arrays(plan, xp)), out)
    return from_cuda(out, features).transpose(0, 3, 1, 2)


def roi_align_backward_cuda(grad_out, plan, input_shape):
    xp = get_array_module(grad_out)
    N, C, H, W = input_shape
    grad = cuda.to_device(np.zeros((N, H, W, C), dtype=grad_out.dtype))
    g = to_cuda(xp.ascontiguousarray(grad_out.transpose(0, 2, 3, 1)))
    _launch(_backward_gpu, g.size, g, *map(to_cuda, _plan_arrays(plan, xp)), grad)
    return from_cuda(grad, grad_out).transpose(0, 3, 1, 2)


# (forward, backward) of each compiled implementation; ops.roi_align's KernelTable loads these
IMPLS = {
    "numba": (roi_align_numba, roi_align_backward_numba),
    "cuda": (roi_align_cuda, roi_align_backward_cuda),
}
