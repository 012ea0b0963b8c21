"""Inference on the CPU: a convolution and the norm after it folded into one convolution, with the
ReLU and the residual sum done on each tile of its output while the tile is in cache.

A norm with fixed statistics is an affine map per channel, ``norm(y) = y * scale + shift``
(FrozenBatchNorm2d always; BatchNorm2d in eval mode, with its running statistics), so

    norm(conv(x, W) + b) = conv(x, W * scale) + (b * scale + shift)

and the ResNet's ``relu(norm(conv(x)) + identity)`` becomes one pass of the tiled convolution
(:func:`mrcnn_np.kernels.conv.conv2d_forward_tiled`, ``relu=`` and ``residual=``) instead of four
passes over the feature map (conv, norm, add, ReLU).

:func:`conv_norm` is what the modules call. It folds only when nothing can need a gradient
(inside ``no_grad``, as ``predict`` always is), the norm's statistics are fixed, the input is
on the host and the conv runs the tiled kernel (``impl="auto"`` on the host, or ``"numba"``);
otherwise it runs the separate layers on the tape, exactly as before. Folded weights are
computed once per conv and dtype and kept on the conv (not in its state dict) with a copy of
what they were computed from; every call compares the current weights and statistics with that
copy, so loading weights, training, ``to(dtype)`` or writing into a weight by hand all refold.
On a GPU the layers stay separate (the comparison would be a device-to-host read per conv).
Folding rounds differently from conv-then-norm: float32 results move by a few units in the
last place (tests/unit/test_fused.py).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..autograd import Tensor, is_grad_enabled
from ..backend import as_array
from ..checks import pair
from . import conv as conv_ops
from . import functional as F
from .modules import BatchNorm2d, FrozenBatchNorm2d

# one flag with F.conv2d's choice of Winograd at inference, kept in nn.conv (which cannot import this module)
_ENABLED = conv_ops.FAST_INFERENCE


@contextlib.contextmanager
def fusion(enabled: bool):
    """Within the block, :func:`conv_norm` folds and ``F.conv2d`` may run a 3x3 as Winograd's
    (:mod:`mrcnn_np.kernels.winograd`) at inference (``True``, the default), or every conv is the
    separate layers' im2col (``False``: the specification's arithmetic, e.g. to compare with a GPU run
    bit for bit)."""
    before = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    try:
        yield
    finally:
        _ENABLED[0] = before


def _fixed_statistics(norm) -> bool:
    return norm is None or isinstance(norm, FrozenBatchNorm2d) or (isinstance(norm, BatchNorm2d) and not norm.training)


def _sources(conv, norm) -> tuple:
    """The arrays the folded weights are computed from."""
    arrays = [conv.weight.data, None if conv.bias is None else conv.bias.data]
    if norm is not None:
        arrays += [as_array(norm.weight), as_array(norm.bias), norm.running_mean, norm.running_var]
    return tuple(arrays)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def folded(conv, norm) -> tuple:
    """``(weight (C_out, C_in, kh, kw), bias (C_out,) or None)`` of ``norm(conv(x))`` as one conv; cached on
    ``conv`` and recomputed whenever a source array differs from the copy it was computed from."""
    sources = _sources(conv, norm)
    cache = conv.__dict__.get("_folded")
    if cache is not None and len(cache[0]) == len(sources) and all(map(_same, cache[0], sources)):
        return cache[1]
    weight, bias = sources[0], sources[1]
    if norm is not None:
        w, b, mean, var = sources[2:]
        scale = w * (1 / np.sqrt(var + norm.eps))  # FrozenBatchNorm2d's scale and shift, in its order
        shift = b - mean * scale
        weight = weight * scale.reshape(-1, 1, 1, 1)  # (C_out,) -> (C_out, 1, 1, 1)
        bias = shift if bias is None else bias * scale + shift
    result = (np.ascontiguousarray(weight), bias)
    object.__setattr__(conv, "_folded", (tuple(None if a is None else a.copy() for a in sources), result))
    return result


def _transformed(conv, weights: tuple):
    """Winograd's transform of the folded 3x3 weight of ``weights`` (:func:`folded`'s ``(weight, bias)``;
    :func:`mrcnn_np.kernels.winograd.weight_transform`), kept on ``conv`` with that result: a refold returns
    a new tuple, so a new transform (the weight array itself can be the conv's own, changed in place);
    None for other kernels."""
    weight = weights[0]
    if weight.shape[2:] != (3, 3):
        return None
    cache = conv.__dict__.get("_winograd")
    if cache is None or cache[0] is not weights:
        from ..kernels.winograd import weight_transform

        cache = (weights, weight_transform(weight))
        object.__setattr__(conv, "_winograd", cache)
    return cache[1]


def conv_norm(conv, norm, x, relu: bool = False, residual=None):
    """``relu(norm(conv(x)) + residual)`` (``norm``, ``relu`` and ``residual`` optional): folded and
    fused on the CPU when nothing needs a gradient (module doc), else the separate layers on the tape."""
    data = as_array(x)
    if (_ENABLED[0] and not is_grad_enabled() and _fixed_statistics(norm) and isinstance(data, np.ndarray)
            and conv_ops.CONV2D.resolve("auto", data) == "numba"):
        from ..kernels.conv import conv2d_forward_tiled

        weights = folded(conv, norm)
        weight, bias = weights
        conv_ops._check_conv("conv2d", data, weight, bias, weight.shape[1], weight.shape[0])
        pairs = [pair(v) for v in (conv.stride, conv.padding, conv.dilation)]
        out = conv2d_forward_tiled(data, weight, bias, *pairs, relu=relu,
                                   residual=None if residual is None else as_array(residual), winograd=True,
                                   transformed=_transformed(conv, weights))
        return Tensor(out)
    out = conv(x)
    if norm is not None:
        out = norm(out)
    if residual is not None:
        out = out + residual
    return F.relu(out) if relu else out
