"""Layers as functions, named and parametrised like ``torch.nn.functional``.

Each function computes its forward pass with plain array code and records on the tape
(:func:`mrcnn_np.autograd.apply`) a backward closure written out by hand, so every
gradient formula can be read next to the forward it belongs to. Inputs may be
:class:`~mrcnn_np.autograd.Tensor` s or arrays (constants).

Convolutions live in :mod:`.conv`, losses in :mod:`.losses`; both are re-exported here,
as are the tensor operations of :mod:`mrcnn_np.autograd` (add, mul, reshape, permute,
concat, stack, getitem, sum, mean, ...).
"""

from __future__ import annotations

import functools

import numpy as np

from ..autograd import (  # noqa: F401  (re-exported: F.add, F.concat, ...)
    Tensor,
    add,
    apply,
    concat,
    div,
    exp,
    getitem,
    log,
    matmul,
    mean,
    mul,
    needs_grad,
    permute,
    power,
    reshape,
    stack,
    sub,
    sum,
)
from ..backend import KernelTable, as_array, get_array_module
from ..checks import check_float, check_same_dtype, check_shape, pair
from .conv import conv2d, conv_transpose2d, im2col  # noqa: F401
from .losses import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    smooth_l1_loss,
)


# --- linear and activations ----------------------------------------------------------------
def _linear_numpy(x, w, b):
    out = x @ w.T
    return out if b is None else out + b


def _linear_backward_numpy(g, x, w, need):
    g2 = g.reshape(-1, w.shape[0])  # (*, out) -> (M, out)
    x2 = x.reshape(-1, w.shape[1])  # (*, in) -> (M, in)
    return (
        g @ w if need[0] else None,
        g2.T @ x2 if need[1] else None,
        g2.sum(axis=0) if need[2] else None,
    )


def _linear_kernels():
    from ..kernels import linear  # the threaded host products: on first use only

    return linear


# (forward, backward) pairs; "numba": the same products with their rows shared out over the CPU
# kernel threads (mrcnn_np/kernels/linear.py). On CuPy arrays "auto" is this specification.
LINEAR = KernelTable("linear", numpy=(_linear_numpy, _linear_backward_numpy),
                     numba=lambda: _linear_kernels().LINEAR_IMPL)


def linear(input, weight, bias=None, impl: str = "auto"):
    """``y = x @ weight.T + bias``: input (*, in_features), weight (out_features, in_features).
    ``impl``: numpy (the specification above) | numba (its rows on the CPU's threads) | auto."""
    x, w, b = as_array(input), as_array(weight), as_array(bias)
    check_shape("linear", "weight", w, "(out_features, in_features)", ndim=2)
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: expected input of shape (*, {w.shape[1]}), got shape {tuple(x.shape)}")
    check_float("linear", "input", x)
    check_same_dtype("linear", ("input", x), ("weight", w))
    if b is not None:
        check_shape("linear", "bias", b, f"({w.shape[0]},)", ndim=1, dims={0: w.shape[0]})
    forward_impl, backward_impl = LINEAR.select(impl, x)
    out = forward_impl(x, w, b)

    def backward(g):
        return backward_impl(g, x, w, (needs_grad(input), needs_grad(weight), needs_grad(bias)))

    return apply(out, (input, weight, bias), backward)


def relu(input):
    """``max(x, 0)``; the gradient passes where the output is positive."""
    xp = get_array_module(input)
    out = xp.maximum(as_array(input), 0)  # propagates NaN, like torch
    return apply(out, (input,), lambda g: (g * (out > 0),))


def sigmoid(input):
    """``1 / (1 + exp(-x))``, evaluated without overflow for large ``|x|``."""
    xp = get_array_module(input)
    x = as_array(input)
    e = xp.exp(-xp.abs(x))
    out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return apply(out, (input,), lambda g: (g * out * (1 - out),))


def softmax(input, dim: int):
    """``exp(x) / sum(exp(x))`` along ``dim`` (shifted by the max for stability)."""
    xp = get_array_module(input)
    x = as_array(input)
    e = xp.exp(x - x.max(axis=dim, keepdims=True))
    out = e / e.sum(axis=dim, keepdims=True)
    return apply(out, (input,), lambda g: (out * (g - (g * out).sum(axis=dim, keepdims=True)),))


def log_softmax(input, dim: int):
    """``x - log(sum(exp(x)))`` along ``dim``."""
    xp = get_array_module(input)
    x = as_array(input)
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return apply(out, (input,), lambda g: (g - xp.exp(out) * g.sum(axis=dim, keepdims=True),))


# --- pooling -------------------------------------------------------------------------------
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1):
    """``torch.nn.functional.max_pool2d`` (ceil_mode=False): (N, C, H, W) -> (N, C, Ho, Wo).

    Padding counts as -inf. The gradient goes to the first maximum of each window, as in
    torch; windows that overlap add their gradients.
    """
    xp = get_array_module(input)
    x = as_array(input)
    check_shape("max_pool2d", "input", x, "(N, C, H, W)", ndim=4)
    check_float("max_pool2d", "input", x)
    (kh, kw), (ph, pw), (dh, dw) = pair(kernel_size), pair(padding), pair(dilation)
    sh, sw = pair(kernel_size if stride is None else stride)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"max_pool2d: padding {padding} must be at most half of kernel {kernel_size}")
    N, C, H, W = x.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"max_pool2d: input of shape {tuple(x.shape)} is smaller than the kernel")
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-xp.inf)
    sN, sC, sH, sW = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(N, C, Ho, Wo, kh, kw), strides=(sN, sC, sH * sh, sW * sw, sH * dh, sW * dw)
    ).reshape(N, C, Ho, Wo, kh * kw)  # (N, C, Ho, Wo, kh, kw) -> (N, C, Ho, Wo, kh*kw)
    argmax = windows.argmax(axis=-1)  # first maximum (NaN counts as maximum, like torch)
    out = xp.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]

    def backward(g):
        d_padded = xp.zeros_like(padded)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw)
                d_padded[:, :, rows, cols] += g * (argmax == i * kw + j)
        return (d_padded[:, :, ph : ph + H, pw : pw + W],)

    return apply(out, (input,), backward)


# --- normalisation ---------------------------------------------------------------------------
def frozen_batch_norm2d(input, weight, bias, running_mean, running_var, eps: float = 1e-5):
    """torchvision's ``FrozenBatchNorm2d``: ``x * scale + shift`` with fixed statistics.

    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``,
    computed in this order as torchvision does. The four per-channel arrays (C,) are
    constants (buffers); only the input receives a gradient.
    """
    xp = get_array_module(input)
    x = as_array(input)
    check_shape("frozen_batch_norm2d", "input", x, "(N, C, H, W)", ndim=4)
    C = x.shape[1]
    stats = {"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var}
    for name, value in stats.items():
        if needs_grad(value):
            raise ValueError(f"frozen_batch_norm2d: {name} is a frozen buffer and cannot require grad")
        check_shape("frozen_batch_norm2d", name, as_array(value), f"({C},)", ndim=1, dims={0: C})
    w, b, rm, rv = (as_array(v).reshape(1, C, 1, 1) for v in stats.values())  # (C,) -> (1, C, 1, 1)
    scale = w * (1 / xp.sqrt(rv + eps))
    shift = b - rm * scale
    return apply(x * scale + shift, (input,), lambda g: (g * scale,))


def _norm_axes(x):
    """The axes a (N, C) or (N, C, H, W) input is reduced over per channel, and a (C,) array's broadcast shape."""
    return ((0,), (1, x.shape[1])) if x.ndim == 2 else ((0, 2, 3), (1, x.shape[1], 1, 1))


def _batch_norm_train_numpy(x, weight, bias, eps):
    """Normalised with the batch's statistics -> ``(out, mean, var)``, the biased variance, (C,) each."""
    xp = get_array_module(x)
    axes, shape = _norm_axes(x)
    w = weight.reshape(shape) if weight is not None else 1.0  # (C,) -> shape
    b = bias.reshape(shape) if bias is not None else 0.0
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    return x_hat * w + b, mu.reshape(-1), var.reshape(-1)  # (1, C, 1, 1) -> (C,)


def _batch_norm_train_backward_numpy(g, x, weight, batch_mean, batch_var, eps, need):
    """``(d_input, d_weight, d_bias)``: the mean and variance depend on x too."""
    xp = get_array_module(x)
    axes, shape = _norm_axes(x)
    count = x.size // x.shape[1]
    w = weight.reshape(shape) if weight is not None else 1.0
    mu, var = batch_mean.reshape(shape), batch_var.reshape(shape)  # (C,) -> shape
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    d_x_hat = g * w
    d_input = None
    if need[0]:
        d_input = inv_std / count * (
            count * d_x_hat
            - d_x_hat.sum(axis=axes, keepdims=True)
            - x_hat * (d_x_hat * x_hat).sum(axis=axes, keepdims=True)
        )
    return d_input, (g * x_hat).sum(axis=axes) if need[1] else None, g.sum(axis=axes) if need[2] else None


def _batch_norm_kernels():
    from ..kernels import batch_norm  # numba: on first use only

    return batch_norm


# training's (forward, backward) pair; "numba": two passes each, a channel at a time, on the CPU
# kernel threads (mrcnn_np/kernels/batch_norm.py). On CuPy arrays "auto" is this specification.
BATCH_NORM_TRAIN = KernelTable("batch_norm", numpy=(_batch_norm_train_numpy, _batch_norm_train_backward_numpy),
                               numba=lambda: _batch_norm_kernels().BATCH_NORM_TRAIN_IMPL)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, impl: str = "auto"):
    """``torch.nn.functional.batch_norm`` for (N, C) or (N, C, H, W) inputs.

    Training normalises with the batch statistics (biased variance) and updates the
    running statistics **in place** (unbiased variance), like torch; evaluation uses the
    running statistics. ``running_mean`` / ``running_var`` may be None in training.
    ``impl`` (training only): numpy (the specification above) | numba (fewer passes) | auto.
    """
    xp = get_array_module(input)
    x = as_array(input)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: expected input of shape (N, C) or (N, C, H, W), got {tuple(x.shape)}")
    C = x.shape[1]
    axes, shape = _norm_axes(x)
    w_arr, b_arr = as_array(weight), as_array(bias)
    rm, rv = as_array(running_mean), as_array(running_var)
    if training:
        count = x.size // C
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input {tuple(x.shape)}")
        forward_impl, backward_impl = BATCH_NORM_TRAIN.select(impl, x)
        out, mu, var = forward_impl(x, w_arr, b_arr, eps)
        if rm is not None:
            rm *= 1 - momentum
            rm += momentum * mu
        if rv is not None:
            rv *= 1 - momentum
            rv += momentum * var * (count / (count - 1))

        def backward(g):
            return backward_impl(g, x, w_arr, mu, var, eps, (needs_grad(input), needs_grad(weight), needs_grad(bias)))

        return apply(out, (input, weight, bias), backward)
    w = w_arr.reshape(shape) if weight is not None else 1.0  # (C,) -> shape
    b = b_arr.reshape(shape) if bias is not None else 0.0
    inv_std = 1 / xp.sqrt(rv.reshape(shape) + eps)
    x_hat = (x - rm.reshape(shape)) * inv_std
    out = x_hat * w + b

    def backward(g):
        return (
            g * w * inv_std if needs_grad(input) else None,
            (g * x_hat).sum(axis=axes) if needs_grad(weight) else None,
            g.sum(axis=axes) if needs_grad(bias) else None,
        )

    return apply(out, (input, weight, bias), backward)


# --- resampling ------------------------------------------------------------------------------
def _source_scale(in_size, out_size, scale_factor, align_corners, dtype):
    """torch's ``area_pixel_compute_scale``: the step in input pixels per output pixel."""
    if align_corners:
        return dtype.type((in_size - 1) / (out_size - 1) if out_size > 1 else 0)
    if scale_factor is not None:
        return dtype.type(1.0 / scale_factor)
    return dtype.type(in_size) / dtype.type(out_size)


def source_taps(in_size: int, out_size: int, mode: str, scale_factor=None, align_corners: bool = False,
                dtype=np.float64):
    """Where each output pixel reads from along one axis: a list of ``(index, weight)`` taps,
    ``resized[dst] = sum(weight[dst] * signal[index[dst]])``.

    ``nearest``: one tap, source ``floor(dst * scale)`` computed in float32, torch's legacy
    rule (with its exact special cases out == in and out == 2 * in). ``bilinear``: two taps,
    source ``(dst + 0.5) * scale - 0.5`` clamped at 0 (``align_corners=False``) or
    ``dst * scale`` (True), split between the neighbours ``i0`` and ``i1 = min(i0 + 1, in - 1)``,
    computed in the input's float type as torch's CPU kernel does. Every index array is
    non-decreasing in ``dst``.
    """
    dst = np.arange(out_size)
    if mode == "nearest":
        if out_size == in_size:
            src = dst
        elif out_size == 2 * in_size:
            src = dst >> 1
        else:
            scale = _source_scale(in_size, out_size, scale_factor, False, np.dtype(np.float32))
            src = np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), in_size - 1)
        return [(src, None)]
    dt = np.dtype(dtype)
    scale = _source_scale(in_size, out_size, scale_factor, align_corners, dt)
    d = dst.astype(dt)
    real = scale * d if align_corners else np.maximum(scale * (d + dt.type(0.5)) - dt.type(0.5), 0)
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lambda1 = np.clip(real - i0, 0, 1).astype(dt)
    i1 = i0 + (i0 < in_size - 1)
    return [(i0, 1 - lambda1), (i1, lambda1)]


@functools.lru_cache(maxsize=1024)
def _device_taps(xp, in_size: int, out_size: int, mode: str, scale_factor, align_corners: bool, dtype) -> tuple:
    """:func:`source_taps` as arrays of module ``xp``, with what the backward needs: a tuple of
    ``(index, weight, present, starts)`` per tap. Cached per shape, so on a GPU the taps are
    computed and copied to the device once, not on every call (weights None for nearest)."""
    out = []
    for index, weight in source_taps(in_size, out_size, mode, scale_factor, align_corners, dtype):
        present, starts = np.unique(index, return_index=True)
        arrays = (index, weight, present, starts)
        for a in arrays:
            if a is not None:
                a.flags.writeable = False  # shared by every call of this shape
        out.append(tuple(None if a is None else xp.asarray(a) for a in arrays))
    return tuple(out)


def _weighted(values, weight, axis):
    """``values * weight`` with ``weight`` (n,) laid along ``axis`` (None means 1)."""
    if weight is None:
        return values
    shape = [1] * values.ndim
    shape[axis] = -1
    return values * weight.reshape(shape)


def _resample_axis(x, taps, axis):
    """Forward along one axis: ``sum_t weight_t * take(x, index_t)``."""
    xp = get_array_module(x)
    out = None
    for index, weight, _, _ in taps:
        term = _weighted(xp.take(x, index, axis=axis), weight, axis)
        out = term if out is None else out + term
    return out


def _resample_axis_backward(g, taps, in_size, axis):
    """The adjoint of :func:`_resample_axis`: scatter-add ``weight_t * g`` back to ``index_t``.

    Indices are sorted, so every source pixel owns a contiguous run of output pixels and the
    scatter is one ``add.reduceat`` per tap (no atomics, no dense matrix)."""
    xp = get_array_module(g)
    shape = list(g.shape)
    shape[axis] = in_size
    out = xp.zeros(shape, dtype=g.dtype)
    for _, weight, present, starts in taps:
        summed = xp.add.reduceat(_weighted(g, weight, axis), starts, axis=axis)
        where = [slice(None)] * g.ndim
        where[axis] = present
        out[tuple(where)] += summed
    return out


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None):
    """``torch.nn.functional.interpolate`` for 4-D input, modes ``nearest`` and ``bilinear``.

    Resizing is separable: width first, then height, each output pixel a weighted sum of
    one (nearest) or two (bilinear) input pixels given by :func:`source_taps` -- the same
    terms, in the same order, as torch's CPU kernel. The backward scatters the gradient back.
    """
    x = as_array(input)
    check_shape("interpolate", "input", x, "(N, C, H, W)", ndim=4)
    check_float("interpolate", "input", x)
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"interpolate: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners applies to mode='bilinear' only")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    (H, W) = in_hw = x.shape[2:]
    if size is not None:
        out_hw, scales = pair(size), (None, None)
    else:
        scales = tuple(float(s) for s in (scale_factor if np.iterable(scale_factor) else (scale_factor,) * 2))
        out_hw = tuple(int(np.floor(n * s)) for n, s in zip(in_hw, scales, strict=True))
        if recompute_scale_factor:
            scales = (None, None)
    if min(out_hw) < 1:
        raise ValueError(f"interpolate: output size {out_hw} must be positive")
    xp = get_array_module(x)
    taps_h, taps_w = (
        _device_taps(xp, n_in, n_out, mode, s, bool(align_corners), x.dtype)
        for n_in, n_out, s in zip(in_hw, out_hw, scales, strict=True)
    )
    out = _resample_axis(_resample_axis(x, taps_w, axis=3), taps_h, axis=2)  # (N, C, H, Wo) -> (N, C, Ho, Wo)

    def backward(g):
        return (_resample_axis_backward(_resample_axis_backward(g, taps_h, H, axis=2), taps_w, W, axis=3),)

    return apply(out, (input,), backward)
