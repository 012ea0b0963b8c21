"""A small reverse-mode automatic differentiation tape.

A :class:`Tensor` wraps an array (``.data``, NumPy or CuPy) and, when it takes part in a
computation that needs gradients, remembers the op that made it: its parents and a
``backward`` closure that maps the gradient of the output to the gradients of the
parents. ``loss.backward()`` visits the graph in reverse topological order and
accumulates gradients into the ``.grad`` of the leaves (tensors made by the user with
``requires_grad=True``, e.g. parameters), as ``torch.Tensor.backward`` does.

Every op is defined by :func:`apply`: compute the forward result with plain array code,
then hand over the closure that computes the backward. The layers of
:mod:`mrcnn_np.nn.functional` are written the same way, each as an explicit
``*_forward`` / ``*_backward`` pair.

Plain arrays and Python numbers are accepted wherever a Tensor is, as constants.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np

from .backend import as_array, get_array_module

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no op is recorded on the tape (inference, optimiser updates)."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def is_grad_enabled() -> bool:
    """True unless inside :func:`no_grad`."""
    return _GRAD_ENABLED


class Tensor:
    """An array with an optional gradient.

    ``Tensor(data, requires_grad=False)``: ``data`` is any array-like (kept as it is when
    already a NumPy or CuPy array). Only floating-point tensors may require gradients.
    """

    _is_tensor = True  # lets backend.get_array_module look inside without importing us
    __array_priority__ = 100  # ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        xp = get_array_module(data)
        if not isinstance(data, xp.ndarray):
            data = np.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable | None = None
        self._retain_grad = False

    # --- array-like attributes -------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(tensor)`` and matplotlib see the data of a host tensor. A device tensor is
        refused, as CuPy refuses ``np.asarray`` of its arrays: call ``.numpy()`` to copy it to the
        host explicitly."""
        from .backend import is_cupy_array

        if is_cupy_array(self.data):
            raise TypeError("Implicit conversion of a device Tensor to a NumPy array is not allowed; "
                            "use .numpy() to copy it to the host explicitly")
        data = self.data if copy is not True else self.data.copy()
        return data if dtype is None else data.astype(dtype, copy=False)

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host if it lives on the GPU)."""
        from .backend import to_numpy

        return to_numpy(self.data)

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after ``backward`` (for inspection)."""
        self._retain_grad = True
        return self

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    # --- backward pass -------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the gradient flowing into ``self``; it may be omitted for a tensor
        with one element (a loss), where it is 1.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be omitted only for a one-element tensor, not shape {self.shape}"
                )
            grad = xp.ones_like(self.data)
        grad = as_array(grad)
        if grad.shape != self.shape:
            raise ValueError(f"grad shape {grad.shape} != tensor shape {self.shape}")

        grads: dict[int, object] = {id(self): grad}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None or node._retain_grad:  # leaf, or kept on request
                node.grad = g.copy() if node.grad is None else node.grad + g
            if node._backward is None:
                continue
            parent_grads = node._backward(g)
            for parent, pg in zip(node._parents, parent_grads, strict=True):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:  # a bug in an op's backward, never the user's
                    raise AssertionError(f"gradient shape {pg.shape} != {parent.shape}")
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    # --- operators (each defined once below as a function) ---------------------------
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __neg__(self):
        return mul(self, -1.0)

    def __pow__(self, exponent: float):
        return power(self, exponent)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __getitem__(self, index):
        return getitem(self, index)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def permute(self, *axes):
        return permute(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes)

    def sum(self, axis=None, keepdims: bool = False):
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return mean(self, axis, keepdims)

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)


def as_tensor(x) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant Tensor around it."""
    return x if isinstance(x, Tensor) else Tensor(x)


def needs_grad(x) -> bool:
    """True when ``x`` is a Tensor that wants a gradient (used inside backward closures)."""
    return isinstance(x, Tensor) and x.requires_grad


def apply(out_data, parents: Sequence, backward: Callable) -> Tensor:
    """Wrap an op's result; record it on the tape when a parent needs a gradient.

    ``backward(grad_out)`` must return one gradient (or ``None``) per parent, in order.
    Non-Tensor parents are constants and receive nothing.
    """
    out = Tensor(out_data)
    if _GRAD_ENABLED and any(needs_grad(p) for p in parents):
        out.requires_grad = True
        out._parents = tuple(as_tensor(p) for p in parents)
        out._backward = backward
    return out


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes reachable from ``root``, parents before children (iterative DFS)."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents if p.requires_grad)
    return order


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach ``shape``."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


# --- element-wise arithmetic (broadcasting like NumPy) ---------------------------------
def add(a, b) -> Tensor:
    a_, b_ = as_array(a), as_array(b)
    return apply(
        a_ + b_,
        (a, b),
        lambda g: (unbroadcast(g, np.shape(a_)), unbroadcast(g, np.shape(b_))),
    )


def sub(a, b) -> Tensor:
    a_, b_ = as_array(a), as_array(b)
    return apply(
        a_ - b_,
        (a, b),
        lambda g: (unbroadcast(g, np.shape(a_)), unbroadcast(-g, np.shape(b_))),
    )


def mul(a, b) -> Tensor:
    a_, b_ = as_array(a), as_array(b)
    return apply(
        a_ * b_,
        (a, b),
        lambda g: (
            unbroadcast(g * b_, np.shape(a_)) if needs_grad(a) else None,
            unbroadcast(g * a_, np.shape(b_)) if needs_grad(b) else None,
        ),
    )


def div(a, b) -> Tensor:
    a_, b_ = as_array(a), as_array(b)
    out = a_ / b_
    return apply(
        out,
        (a, b),
        lambda g: (
            unbroadcast(g / b_, np.shape(a_)) if needs_grad(a) else None,
            unbroadcast(-g * out / b_, np.shape(b_)) if needs_grad(b) else None,
        ),
    )


def power(a, exponent: float) -> Tensor:
    """``a ** exponent`` for a constant (non-Tensor) exponent."""
    a_ = as_array(a)
    return apply(a_**exponent, (a,), lambda g: (g * exponent * a_ ** (exponent - 1),))


def exp(a) -> Tensor:
    xp = get_array_module(a)
    out = xp.exp(as_array(a))
    return apply(out, (a,), lambda g: (g * out,))


def log(a) -> Tensor:
    xp = get_array_module(a)
    a_ = as_array(a)
    return apply(xp.log(a_), (a,), lambda g: (g / a_,))


def matmul(a, b) -> Tensor:
    """Matrix product of 2-D (or batched, broadcast) operands."""
    xp = get_array_module(a, b)
    a_, b_ = as_array(a), as_array(b)
    if a_.ndim < 2 or b_.ndim < 2:
        raise ValueError(f"matmul needs operands of ndim >= 2, got {a_.shape} and {b_.shape}")
    return apply(
        a_ @ b_,
        (a, b),
        lambda g: (
            unbroadcast(g @ xp.swapaxes(b_, -1, -2), a_.shape) if needs_grad(a) else None,
            unbroadcast(xp.swapaxes(a_, -1, -2) @ g, b_.shape) if needs_grad(b) else None,
        ),
    )


# --- shape operations ------------------------------------------------------------------
def reshape(a, shape) -> Tensor:
    a_ = as_array(a)
    return apply(a_.reshape(shape), (a,), lambda g: (g.reshape(a_.shape),))


def permute(a, axes) -> Tensor:
    """Reorder axes, like ``torch.permute`` / ``np.transpose``."""
    xp = get_array_module(a)
    axes = tuple(axes)
    inverse = tuple(int(i) for i in np.argsort(axes))
    return apply(xp.transpose(as_array(a), axes), (a,), lambda g: (xp.transpose(g, inverse),))


def concat(tensors: Sequence, axis: int = 0) -> Tensor:
    """Join along an existing axis (``torch.cat``)."""
    xp = get_array_module(*tensors)
    arrays = [as_array(t) for t in tensors]
    bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
    return apply(
        xp.concatenate(arrays, axis=axis),
        tuple(tensors),
        lambda g: tuple(xp.split(g, bounds, axis=axis)),
    )


def stack(tensors: Sequence, axis: int = 0) -> Tensor:
    """Join along a new axis (``torch.stack``)."""
    xp = get_array_module(*tensors)
    arrays = [as_array(t) for t in tensors]
    return apply(
        xp.stack(arrays, axis=axis),
        tuple(tensors),
        lambda g: tuple(xp.take(g, i, axis=axis) for i in range(len(arrays))),
    )


def _is_advanced(index) -> bool:
    """True when ``index`` uses integer/boolean arrays (which may repeat elements)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(p, (int, slice, type(None), type(Ellipsis))) for p in parts)


def getitem(a, index) -> Tensor:
    """``a[index]`` with NumPy indexing; repeated indices accumulate their gradients."""
    xp = get_array_module(a)
    a_ = as_array(a)
    index = tuple(as_array(i) for i in index) if isinstance(index, tuple) else as_array(index)

    def backward(g):
        full = xp.zeros_like(a_)
        if _is_advanced(index):
            _scatter_add(full, index, g)
        else:
            full[index] = g
        return (full,)

    return apply(a_[index], (a,), backward)


def _scatter_add(full, index, g) -> None:
    """``full[index] += g`` with repeated positions accumulating (``add.at``), done fast for the common
    case: a tuple of 1-D integer arrays picking elements of the leading axes (``logits[rows, labels]``).

    Those positions become one linear index over the leading axes; on the host, when no position
    repeats (checked), it is a plain assignment of whole rows, else ``add.at`` over rows -- both far
    faster than ``add.at`` with a tuple index and trailing axes, and the same sums."""
    xp = get_array_module(full)
    parts = index if isinstance(index, tuple) else (index,)
    leading = len(parts)
    simple = leading <= full.ndim and all(
        getattr(p, "ndim", None) == 1 and p.dtype.kind in "iu" and len(p) == len(parts[0]) for p in parts)
    if not simple:
        xp.add.at(full, index, g)
        return
    lead_shape = full.shape[:leading]
    # (R,) per leading axis -> (R,) linear positions over those axes; negative indices count from the end
    linear = xp.ravel_multi_index(tuple(p % n for p, n in zip(parts, lead_shape, strict=True)), lead_shape)
    rows = full.reshape(-1, *full.shape[leading:])  # (prod(lead), *rest): a view of the contiguous zeros
    values = xp.broadcast_to(g, (len(linear), *full.shape[leading:]))
    if xp is np and len(np.unique(linear)) == len(linear):
        rows[linear] += values  # no position repeats: a plain read-add-write, as add.at would do
    else:
        xp.add.at(rows, linear, values)


# --- reductions ------------------------------------------------------------------------
def _expand_reduced(g, shape, axis, keepdims):
    """Broadcast the gradient of a reduction back to the input shape."""
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        axes = tuple(ax % len(shape) for ax in axes)
        for ax in sorted(axes):
            g = g.reshape(g.shape[:ax] + (1,) + g.shape[ax:])
    xp = get_array_module(g)
    return xp.broadcast_to(g, shape)


def sum(a, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 (mirrors torch.sum)
    a_ = as_array(a)
    return apply(
        a_.sum(axis=axis, keepdims=keepdims),
        (a,),
        lambda g: (_expand_reduced(g, a_.shape, axis, keepdims).copy(),),
    )


def mean(a, axis=None, keepdims: bool = False) -> Tensor:
    a_ = as_array(a)
    out = a_.mean(axis=axis, keepdims=keepdims)
    count = a_.size // max(out.size, 1) if a_.size else 0
    return apply(
        out,
        (a,),
        lambda g: (_expand_reduced(g / count, a_.shape, axis, keepdims).copy(),),
    )
