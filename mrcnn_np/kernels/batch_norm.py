"""Batch norm in training on the CPU; the specification is :func:`mrcnn_np.nn.functional.batch_norm`.

The specification makes about six passes over the feature map forward (mean, ``x - mu``, its
square, their mean, ``x_hat``, ``x_hat * w + b``) and as many backward, each a NumPy temporary.
These kernels make two forward and two backward, one channel at a time while it is in cache::

    forward, per channel c:   mu = mean(x[:, c]); var = mean((x[:, c] - mu)**2)       (two reads)
                              out[:, c] = (x[:, c] - mu) * inv_std * w[c] + b[c]     (one write)
    backward, per channel c:  sum(g), sum(g * x_hat)                                 (two reads)
                              d_x = w * inv_std * (g - sum(g)/n - x_hat * sum(g * x_hat)/n)

(``x_hat`` recomputed from ``x``, ``mu`` and ``inv_std`` rather than kept). The sums are
accumulated in float64 and may be reordered (``fastmath``) so that they vectorise; the result
is the specification's to rounding (``tests/kernels/test_batch_norm_kernels.py``). Channels
never interact, so they are shared out over the kernel threads (:mod:`.threads`) in ranges, each
a ``nogil`` call, and the result is the same to the bit on any number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .threads import cpu_threads, in_parallel, ranges

_FAST = {"reassoc", "nsz", "arcp", "contract"}  # reordered sums (vectorised); no finite-math assumptions


@njit(cache=True, nogil=True, fastmath=_FAST)
def _forward_channels(x, weight, bias, eps, c0, c1, out, mean, var):
    """Channels c0..c1-1 of x (N, C, L): ``mean``, biased ``var`` (C,) and ``out`` (N, C, L)."""
    N, L = x.shape[0], x.shape[2]
    count = N * L
    for c in range(c0, c1):
        total = 0.0
        for n in range(N):
            for i in range(L):
                total += x[n, c, i]
        mu = total / count
        squares = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                squares += d * d
        v = squares / count
        inv_std = 1.0 / math.sqrt(v + eps)
        for n in range(N):
            for i in range(L):
                out[n, c, i] = (x[n, c, i] - mu) * inv_std * weight[c] + bias[c]
        mean[c] = mu
        var[c] = v


@njit(cache=True, nogil=True, fastmath=_FAST)
def _backward_channels(g, x, weight, mean, var, eps, c0, c1, d_x, d_weight, d_bias, need_input):
    """Channels c0..c1-1: ``d_weight``, ``d_bias`` (C,) and, with ``need_input``, ``d_x`` (N, C, L)."""
    N, L = x.shape[0], x.shape[2]
    count = N * L
    for c in range(c0, c1):
        mu = mean[c]
        inv_std = 1.0 / math.sqrt(var[c] + eps)
        sum_g = 0.0
        sum_gx = 0.0
        for n in range(N):
            for i in range(L):
                gi = g[n, c, i]
                sum_g += gi
                sum_gx += gi * ((x[n, c, i] - mu) * inv_std)
        d_weight[c] = sum_gx
        d_bias[c] = sum_g
        if need_input:
            k = weight[c] * inv_std
            mean_g = sum_g / count
            mean_gx = sum_gx / count
            for n in range(N):
                for i in range(L):
                    x_hat = (x[n, c, i] - mu) * inv_std
                    d_x[n, c, i] = k * (g[n, c, i] - mean_g - x_hat * mean_gx)


def _channel_ranges(C: int, values: int) -> list:
    """Ranges of channels, one per thread, for a map of ``values`` values (serial below ~64K values)."""
    return ranges(C, min(cpu_threads(), max(1, values >> 16)))


def batch_norm_train_forward(x, weight, bias, eps):
    """(N, C, H, W) or (N, C) -> ``(out, mean, var)``: normalised with the batch's statistics, the
    biased variance (C,) in float64."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)  # (N, C, ...) -> (N, C, L)
    C = x3.shape[1]
    out = np.empty_like(x3)
    mean, var = np.empty(C), np.empty(C)
    w = np.ones(C, x3.dtype) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(C, x3.dtype) if bias is None else np.ascontiguousarray(bias)
    in_parallel(lambda r: _forward_channels(x3, w, b, eps, r[0], r[1], out, mean, var), _channel_ranges(C, x3.size))
    return out.reshape(x.shape), mean, var  # (N, C, L) -> (N, C, ...)


def batch_norm_train_backward(grad_out, x, weight, mean, var, eps, need):
    """``(d_input, d_weight, d_bias)`` of :func:`batch_norm_train_forward`; entries not in ``need`` are None."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)  # (N, C, ...) -> (N, C, L)
    g3 = np.ascontiguousarray(grad_out, dtype=x3.dtype).reshape(x3.shape)
    C = x3.shape[1]
    w = np.ones(C, x3.dtype) if weight is None else np.ascontiguousarray(weight)
    d_x = np.empty_like(x3) if need[0] else np.empty((0, C, 0), x3.dtype)
    d_w, d_b = np.empty(C, x3.dtype), np.empty(C, x3.dtype)
    in_parallel(lambda r: _backward_channels(g3, x3, w, mean, var, eps, r[0], r[1], d_x, d_w, d_b, need[0]),
                _channel_ranges(C, x3.size))
    return (d_x.reshape(x.shape) if need[0] else None,  # (N, C, L) -> (N, C, ...)
            d_w if need[1] else None, d_b if need[2] else None)


BATCH_NORM_TRAIN_IMPL = (batch_norm_train_forward, batch_norm_train_backward)
