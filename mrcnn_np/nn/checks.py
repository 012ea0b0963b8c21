"""Input checks shared by the layers and the data code: clear errors that name the expected and
received shape or value."""

from __future__ import annotations

import numpy as np


def is_int(x) -> bool:
    """True for a Python or NumPy integer, not a bool (``True`` is an int to Python)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def is_number(x) -> bool:
    """True for a Python or NumPy integer or float, not a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def pair(v) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5)`` stays; anything else is a ValueError."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {v!r}")
    return t


def check_shape(op: str, name: str, arr, expected: str, ndim: int | None = None,
                dims: dict[int, int | None] | None = None) -> None:
    """Raise ValueError unless ``arr`` has ``ndim`` axes and the given sizes at ``dims``.

    ``expected`` is the human-readable shape, e.g. ``"(N, 64, H, W)"``.
    """
    shape = getattr(arr, "shape", None)
    if shape is None:
        raise TypeError(f"{op}: {name} must be an array or Tensor, got {type(arr).__name__}")
    bad = ndim is not None and len(shape) != ndim
    if not bad and dims:
        bad = any(size is not None and shape[axis] != size for axis, size in dims.items())
    if bad:
        raise ValueError(f"{op}: expected {name} of shape {expected}, got shape {tuple(shape)}")


def check_float(op: str, name: str, arr) -> None:
    """Raise TypeError unless ``arr`` holds floating-point numbers."""
    if arr.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {arr.dtype}")


def check_same_dtype(op: str, *named) -> None:
    """Raise TypeError unless all ``(name, array)`` pairs share one dtype."""
    dtypes = {arr.dtype for _, arr in named}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} {arr.dtype}" for name, arr in named)
        raise TypeError(f"{op}: dtypes must match, got {listing}")
