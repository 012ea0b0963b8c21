"""Losses, named and parametrised like ``torch.nn.functional``.

Each loss computes an element-wise loss ``l`` and its derivative ``dl/dinput`` in the
forward pass; :func:`_reduced` then applies the reduction (``"none" | "mean" | "sum"``)
and records the backward, which is just ``grad * dl/dinput`` scaled by the reduction.
"""

from __future__ import annotations

from ..autograd import apply, needs_grad
from ..backend import as_array, get_array_module
from ..checks import check_float, is_trusted

REDUCTIONS = ("none", "mean", "sum")


def _reduced(op, loss, d_input, inputs, reduction, count=None, d_other=None):
    """Reduce an element-wise ``loss`` and record its backward.

    ``d_input``: dloss/dinputs[0] element-wise; ``d_other``: dloss/dinputs[1] or None.
    ``count``: the divisor of ``"mean"`` (default: the number of elements).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        out, scale = loss, None
    elif reduction == "sum":
        out, scale = loss.sum(), 1.0
    else:
        count = loss.size if count is None else count
        out, scale = loss.sum() / count, 1.0 / count

    def backward(g):
        if scale is None:  # "none": one gradient per loss element, spread over trailing axes
            factor = g.reshape(g.shape + (1,) * (d_input.ndim - g.ndim))
        else:
            factor = g * scale
        return tuple(
            factor * d if d is not None and needs_grad(t) else None
            for t, d in zip(inputs, (d_input, d_other), strict=False)
        )

    return apply(out, inputs, backward)


def _check_pair(op, x, t):
    check_float(op, "input", x)
    if x.shape != t.shape:
        raise ValueError(f"{op}: expected target of shape {tuple(x.shape)} (the input's), got {tuple(t.shape)}")


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0):
    """Huber-like loss: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``
    (``d = input - target``; ``beta = 0`` is the L1 loss)."""
    xp = get_array_module(input, target)
    x, t = as_array(input), as_array(target)
    _check_pair("smooth_l1_loss", x, t)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    d = x - t
    if beta == 0:
        return l1_loss(input, target, reduction)
    small = xp.abs(d) < beta
    loss = xp.where(small, 0.5 * d * d / beta, xp.abs(d) - 0.5 * beta)
    grad = xp.where(small, d / beta, xp.sign(d))
    return _reduced("smooth_l1_loss", loss, grad, (input, target), reduction, d_other=-grad)


def l1_loss(input, target, reduction: str = "mean"):
    """``|input - target|``; the gradient is ``sign(input - target)`` (0 at 0, as torch)."""
    xp = get_array_module(input, target)
    x, t = as_array(input), as_array(target)
    _check_pair("l1_loss", x, t)
    d = x - t
    grad = xp.sign(d)
    return _reduced("l1_loss", xp.abs(d), grad, (input, target), reduction, d_other=-grad)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean"):
    """``-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]``, times ``weight`` if given.

    Evaluated as ``max(x, 0) - x t + log(1 + exp(-|x|))``, which never overflows.
    dl/dx = ``sigmoid(x) - t``; dl/dt = ``-x`` (both times ``weight``).
    """
    xp = get_array_module(input, target)
    x, t = as_array(input), as_array(target)
    _check_pair("binary_cross_entropy_with_logits", x, t)
    e = xp.exp(-xp.abs(x))
    loss = xp.maximum(x, 0) - x * t + xp.log1p(e)
    d_input = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)) - t
    d_target = -x
    if weight is not None:
        w = as_array(weight)
        loss, d_input, d_target = loss * w, d_input * w, d_target * w
    return _reduced("binary_cross_entropy_with_logits", loss, d_input, (input, target), reduction,
                    d_other=d_target)


def cross_entropy(input, target, reduction: str = "mean", ignore_index: int = -100):
    """Softmax cross-entropy: input logits (N, C), target class indices (N,) int.

    ``"mean"`` divides by the number of targets not equal to ``ignore_index``.
    dl/dlogits = ``softmax(x) - onehot(t)`` on the rows that count.
    """
    xp = get_array_module(input)
    x, t = as_array(input), as_array(target)
    check_float("cross_entropy", "input", x)
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: expected input of shape (N, C), got {tuple(x.shape)}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"cross_entropy: expected target of shape ({x.shape[0]},), got {tuple(t.shape)}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}")
    N, C = x.shape
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= C))
    if not is_trusted() and bool(bad.any()):
        raise ValueError(f"cross_entropy: target {int(t[bad][0])} is outside [0, {C}) (and not ignore_index)")
    safe_t = xp.where(keep, t, 0)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
    rows = xp.arange(N)
    loss = -log_probs[rows, safe_t] * keep
    d_input = xp.exp(log_probs)
    d_input[rows, safe_t] -= 1
    d_input *= keep[:, None]
    return _reduced("cross_entropy", loss, d_input, (input,), reduction, count=int(keep.sum()))


def cross_entropy_with_probs(input, target, reduction: str = "mean"):
    """Softmax cross-entropy against class *probabilities*: logits (N, C, *) and a target of the same
    shape, a distribution over the classes (axis 1) at every position -- ``torch.nn.functional.cross_entropy``
    with a probability target. ``l = -sum_c t_c log softmax(x)_c``, one per position (N, *).

    ``"mean"`` divides by the number of positions, N * prod(*), as torch does.
    dl/dx = ``softmax(x) * sum_c t_c - t`` (``softmax(x) - t`` where t sums to 1); dl/dt = ``-log softmax(x)``.
    """
    op = "cross_entropy_with_probs"
    xp = get_array_module(input, target)
    x, t = as_array(input), as_array(target)
    _check_pair(op, x, t)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C, *), got {tuple(x.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, C, *)
    loss = -(t * log_probs).sum(axis=1)  # (N, C, *) -> (N, *)
    d_input = xp.exp(log_probs) * t.sum(axis=1, keepdims=True) - t
    d_target = -log_probs
    if reduction != "none":
        return _reduced(op, loss, d_input, (input, target), reduction, d_other=d_target)

    def backward(g):  # one gradient per position, spread over the classes
        g = xp.expand_dims(g, 1)  # (N, *) -> (N, 1, *)
        return (g * d_input if needs_grad(input) else None, g * d_target if needs_grad(target) else None)

    return apply(loss, (input, target), backward)
