"""Argument checks shared by the layers, the detection ops and the data code.

Each check raises a clear error that names the argument (and the index of the first bad
element) and says what was expected; a check that passes returns nothing, or the value it
normalised. The checks sit below :mod:`mrcnn_np.nn`, :mod:`mrcnn_np.ops` and
:mod:`mrcnn_np.kernels` and import only NumPy. They run on NumPy and CuPy arrays alike:
they use array methods and operators only, never a ``numpy`` function on an array.
"""

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


def check_output_size(output_size) -> tuple[int, int]:
    """(ph, pw) from an int or pair; ValueError unless both are positive."""
    ph, pw = pair(output_size)
    if ph < 1 or pw < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    return ph, pw


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


def check_boxes(boxes, name: str = "boxes", allow_empty: bool = True):
    """Validate an (R, 4) float array of xyxy boxes; returns it unchanged.

    Raises TypeError for a non-float dtype and ValueError for a wrong shape, NaN or
    infinite coordinates, or ``x2 < x1`` / ``y2 < y1`` (naming the first bad box).
    """
    if not hasattr(boxes, "dtype") or boxes.dtype.kind != "f":
        raise TypeError(f"{name} must be a float32 or float64 array, got {getattr(boxes, 'dtype', type(boxes))}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (R, 4) as x1, y1, x2, y2; got shape {tuple(boxes.shape)}")
    if not allow_empty and boxes.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    finite = (boxes * 0 == 0).all(axis=1)  # x * 0 is 0 for a finite x, NaN for inf and NaN
    if not bool(finite.all()):
        i = int(finite.argmin())
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has NaN or infinite coordinates")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(inverted.any()):
        i = int(inverted.argmax())
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
    return boxes


def check_scores(scores, n: int):
    """Validate (R,) float scores, one per box: ValueError for a wrong shape or NaN (naming the
    index), TypeError for a non-float dtype; returns them unchanged."""
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) (one per box), got {tuple(scores.shape)}")
    if scores.dtype.kind != "f":
        raise TypeError(f"scores must be float32 or float64, got {scores.dtype}")
    nan = scores != scores  # NaN is the one value unequal to itself
    if bool(nan.any()):
        raise ValueError(f"scores[{int(nan.argmax())}] is NaN; NMS needs comparable scores")
    return scores


def check_batch_indices(op: str, rois, num_images: int) -> None:
    """Raise ValueError unless column 0 of the (R, 5) ``rois`` holds whole numbers in
    ``0 .. num_images - 1`` (naming the first bad box)."""
    if len(rois) == 0:
        return
    b = rois[:, 0]
    bad = (b < 0) | (b >= num_images) | (b % 1 != 0)
    if bool(bad.any()):
        i = int(bad.argmax())
        raise ValueError(f"{op}: box {i} has batch index {rois[i, 0]}, but the input holds "
                         f"{num_images} image(s) (valid: 0..{num_images - 1})")
