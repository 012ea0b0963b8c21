"""Argument checks shared by the layers, the detection ops and the data code.

Each check raises a clear error that names the argument (and the index of the first bad
element) and says what was expected; a check that passes returns nothing, or the value it
normalised. The checks sit below :mod:`mrcnn_np.nn`, :mod:`mrcnn_np.ops` and
:mod:`mrcnn_np.kernels` and import only NumPy. They run on NumPy and CuPy arrays alike:
they use array methods and operators only, never a ``numpy`` function on an array.
"""

from __future__ import annotations

import contextlib

import numpy as np


def is_int(x) -> bool:
    """True for a Python or NumPy integer, not a bool (``True`` is an int to Python)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def is_number(x) -> bool:
    """True for a Python or NumPy integer or float, not a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _prefix(op: str | None) -> str:
    return f"{op}: " if op else ""


def describe(x) -> str:
    """A short description of a wrong value for an error message: its type, and for an array its
    dtype and shape."""
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(x).__name__} of dtype {dtype} and shape {tuple(shape)}"
    return type(x).__name__ if x is None or isinstance(x, (dict, set, list, tuple)) else f"{type(x).__name__} {x!r}"


def is_real_scalar(x) -> bool:
    """A Python or NumPy int or float (not a bool), or a 0-d integer or float array."""
    if is_number(x):
        return True
    dtype = getattr(x, "dtype", None)
    return getattr(x, "shape", None) == () and dtype is not None and dtype.kind in "iuf"


def check_number(op: str | None, name: str, value, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, finite: bool = True) -> float:
    """``value`` as a float: TypeError unless it is a real number (a bool, a str or a list is not);
    ValueError for NaN, for an infinite value unless ``finite=False``, and outside ``[lo, hi]``
    (``(lo, hi]`` with ``lo_open``)."""
    if not is_real_scalar(value):
        raise TypeError(f"{_prefix(op)}{name} must be a number, got {describe(value)}")
    v = float(value)
    if v != v:
        raise ValueError(f"{_prefix(op)}{name} is NaN; expected a number")
    if finite and v in (float("inf"), float("-inf")):
        raise ValueError(f"{_prefix(op)}{name} must be finite, got {v}")
    below = lo is not None and (v <= lo if lo_open else v < lo)
    if below or (hi is not None and v > hi):
        if hi is None:
            expected = f"> {lo:g}" if lo_open else f">= {lo:g}"
        elif lo is None:
            expected = f"<= {hi:g}"
        else:
            expected = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{_prefix(op)}{name} must be {expected}, got {v:g}")
    return v


def check_int(op: str | None, name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int: TypeError unless it is a Python or NumPy integer (not a bool, not a
    float, even a whole one); ValueError outside ``[lo, hi]``."""
    if not is_int(value):
        raise TypeError(f"{_prefix(op)}{name} must be an int, got {describe(value)}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        expected = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"in [{lo}, {hi}]")
        raise ValueError(f"{_prefix(op)}{name} must be {expected}, got {v}")
    return v


def check_bool(op: str | None, name: str, value) -> bool:
    """``value`` as a bool: TypeError unless it is a Python or NumPy bool (not 0, 1 or "yes")."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_prefix(op)}{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_numbers(op: str | None, name: str, values, n: int | None = None, lo: float | None = None, *,
                  lo_open: bool = False) -> tuple[float, ...]:
    """A tuple or list of ``n`` finite numbers (each ``>= lo``, or ``> lo`` with ``lo_open``) as a
    tuple of floats; TypeError / ValueError naming ``name`` and the index."""
    if getattr(values, "ndim", None) == 1 and getattr(values, "dtype", None) is not None:
        values = values.tolist()  # a 1-d array of numbers
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{_prefix(op)}{name} must be a tuple of {n or 'some'} numbers, got {describe(values)}")
    if n is not None and len(values) != n:
        raise ValueError(f"{_prefix(op)}{name} must hold {n} numbers, got {len(values)}: {tuple(values)!r}")
    return tuple(check_number(op, f"{name}[{i}]", v, lo, lo_open=lo_open) for i, v in enumerate(values))


def check_real_array(op: str | None, name: str, arr, integers: bool = True) -> None:
    """TypeError unless ``arr`` holds float32 or float64 numbers or (with ``integers``) integers:
    not bool, complex, object, str or float16 (no kernels, too little range)."""
    dtype = getattr(arr, "dtype", None)
    if not (is_float32_or_64(arr) or (integers and getattr(dtype, "kind", None) in ("i", "u"))):
        expected = "float32, float64 or integer" if integers else "float32 or float64"
        raise TypeError(f"{_prefix(op)}{name} must hold {expected} numbers, got dtype {dtype}")


def check_float_dtype(op: str | None, name: str, value):
    """float32 or float64 given as a type, a name or an ``np.dtype`` -> the NumPy scalar type
    (``np.float32`` / ``np.float64``); anything else (None, float16, an integer type, "foo") is
    a TypeError naming ``name``."""
    try:
        dt = None if value is None else np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.float32, np.float64):
        raise TypeError(f"{_prefix(op)}{name} must be float32 or float64, got {value!r}")
    return dt.type


def pair(v, name: str | None = None) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5)`` stays (NumPy integers too); a pair of another length is a
    ValueError, anything that is not an int or a pair of ints a TypeError (naming ``name``)."""
    if is_int(v):
        return (int(v), int(v))
    what = f"{name} must be" if name else "expected"
    if not isinstance(v, (tuple, list)) or not all(is_int(i) for i in v):
        raise TypeError(f"{what} an int or a pair of ints, got {v!r}")
    if len(v) != 2:
        raise ValueError(f"{what} an int or a pair of ints, got {v!r}")
    return (int(v[0]), int(v[1]))


def check_output_size(output_size, op: str | None = None) -> tuple[int, int]:
    """(ph, pw) from an int or pair; ValueError unless both are positive."""
    ph, pw = pair(output_size, f"{_prefix(op)}output_size")
    if ph < 1 or pw < 1:
        raise ValueError(f"{_prefix(op)}output_size must be positive, got {output_size}")
    return ph, pw


def check_size_hw(op: str | None, name: str, size, positive: bool = False) -> tuple[float, float]:
    """An image size ``(height, width)``: two finite numbers >= 0 (> 0 with ``positive``), returned
    as given (not converted)."""
    if not isinstance(size, (tuple, list)) and not (getattr(size, "shape", None) == (2,)):
        raise TypeError(f"{_prefix(op)}{name} must be (height, width), got {size!r}")
    if len(size) != 2:
        raise ValueError(f"{_prefix(op)}{name} must be (height, width), got {len(size)} values: {tuple(size)!r}")
    for axis, v in zip(("height", "width"), size, strict=True):
        check_number(op, f"{name} {axis}", v, 0, lo_open=positive)
    return size[0], size[1]


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
        bad = any(size is not None and (not -len(shape) <= axis < len(shape) or shape[axis] != size)
                  for axis, size in dims.items())
    if bad:
        raise ValueError(f"{op}: expected {name} of shape {expected}, got shape {tuple(shape)}")


def is_float32_or_64(arr) -> bool:
    """True for an array of float32 or float64 (float16 has no kernels and too little range)."""
    dtype = getattr(arr, "dtype", None)
    return getattr(dtype, "kind", None) == "f" and dtype.itemsize in (4, 8)


def as_array_arg(x, name: str, dtype=None):
    """A Python list or tuple (of numbers) as a NumPy array (``dtype`` if given, else NumPy's
    choice); a CPU torch tensor as its ``.numpy()``; arrays pass unchanged; anything else is a
    TypeError naming ``name``."""
    x = _from_torch(x, name)
    if isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError) as exc:
            if "inhomogeneous" in str(exc):  # NumPy's words for a ragged list
                raise ValueError(f"{name} must be an array or a (nested) list of numbers of one shape; got a ragged "
                                 f"list (its rows differ in length)") from None
            raise TypeError(f"{name} must be an array or a (nested) list of numbers; converting it "
                            f"failed: {exc}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got a list converted to dtype {arr.dtype}")
        return arr
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    return x


def as_boxes_arg(x, name: str = "boxes", dtype=np.float64):
    """Like :func:`as_array_arg` for (R, 4) boxes: a list becomes a ``dtype`` array, and the empty
    list ``[]`` the (0, 4) array."""
    was_list = isinstance(x, (list, tuple))
    x = as_array_arg(x, name, dtype if was_list else None)
    return x.reshape(0, 4) if was_list and x.size == 0 else x


def check_iou_threshold(op: str, value) -> float:
    """An IoU threshold as a float: TypeError for a non-number, ValueError for NaN (a NaN
    threshold compares false with every IoU, so NMS would keep every box)."""
    if not is_number(value) and not (getattr(value, "shape", None) == () and value.dtype.kind in "iuf"):
        raise TypeError(f"{op}: iou_threshold must be a number, got {type(value).__name__}")
    value = float(value)
    if value != value:
        raise ValueError(f"{op}: iou_threshold is NaN; expected a number, usually in [0, 1]")
    return value


def check_float(op: str, name: str, arr) -> None:
    """Raise TypeError unless ``arr`` holds float32 or float64 numbers."""
    if not is_float32_or_64(arr):
        raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {arr.dtype}")


def check_same_dtype(op: str, *named) -> None:
    """Raise TypeError unless all ``(name, array)`` pairs share one dtype."""
    dtypes = {arr.dtype for _, arr in named}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} {arr.dtype}" for name, arr in named)
        raise TypeError(f"{op}: dtypes must match, got {listing}")


_TRUSTED = [False]  # inside the model's own forward pass: see trusted()


@contextlib.contextmanager
def trusted():
    """Within the block, the checks of *values* (NaN, infinite, inverted boxes, batch indices)
    are skipped; types and shapes are still checked. The model runs its stages inside it:
    their inputs are its own intermediate results, whose sources (images, targets, weights)
    were checked at the edge, and on a GPU every value check is a device-to-host sync."""
    before = _TRUSTED[0]
    _TRUSTED[0] = True
    try:
        yield
    finally:
        _TRUSTED[0] = before


def is_trusted() -> bool:
    """True inside :func:`trusted` (value checks skipped)."""
    return _TRUSTED[0]


def check_boxes(boxes, name: str = "boxes", allow_empty: bool = True):
    """Validate an (R, 4) float array of xyxy boxes; returns it unchanged.

    Raises TypeError for a non-float dtype and ValueError for a wrong shape, NaN or
    infinite coordinates, or ``x2 < x1`` / ``y2 < y1`` (naming the first bad box).
    """
    if not is_float32_or_64(boxes):
        raise TypeError(f"{name} must be a float32 or float64 array, got {getattr(boxes, 'dtype', type(boxes))}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (R, 4) as x1, y1, x2, y2; got shape {tuple(boxes.shape)}")
    if not allow_empty and boxes.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if _TRUSTED[0]:
        return boxes
    finite = (abs(boxes) < float("inf")).all(axis=1)  # False for inf and NaN (and no warning)
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
    if not is_float32_or_64(scores):
        raise TypeError(f"scores must be float32 or float64, got {scores.dtype}")
    if _TRUSTED[0]:
        return scores
    nan = scores != scores  # NaN is the one value unequal to itself
    if bool(nan.any()):
        raise ValueError(f"scores[{int(nan.argmax())}] is NaN; NMS needs comparable scores")
    return scores


def check_batch_indices(op: str, rois, num_images: int) -> None:
    """Raise ValueError unless column 0 of the (R, 5) ``rois`` holds whole numbers in
    ``0 .. num_images - 1`` (naming the first bad box)."""
    if len(rois) == 0 or _TRUSTED[0]:
        return
    b = rois[:, 0]
    bad = (b < 0) | (b >= num_images) | (b % 1 != 0)
    if bool(bad.any()):
        i = int(bad.argmax())
        raise ValueError(f"{op}: box {i} has batch index {rois[i, 0]}, but the input holds "
                         f"{num_images} image(s) (valid: 0..{num_images - 1})")


def check_label_list(matched_idxs) -> list:
    """A list of (N_i,) label arrays (lists converted); TypeError / ValueError naming the index."""
    if hasattr(matched_idxs, "shape") or not isinstance(matched_idxs, (list, tuple)):
        raise TypeError(f"matched_idxs must be a list of (N_i,) label arrays, one per image; got "
                        f"{type(matched_idxs).__name__}")
    out = [as_array_arg(labels, f"matched_idxs[{i}]") for i, labels in enumerate(matched_idxs)]
    for i, labels in enumerate(out):
        if labels.ndim != 1:
            raise ValueError(f"matched_idxs[{i}] must have shape (N,), got {tuple(labels.shape)}")
        check_real_array(None, f"matched_idxs[{i}]", labels)
    return out


# --- model inputs: images and training targets ----------------------------------------------
IMAGE_RANGE_TOLERANCE = 1e-3  # a float image may exceed [0, 1] by this much (rounding), no more


def _from_torch(x, name: str):
    """A CPU torch tensor as a NumPy array (torch is never imported); other tensors refused."""
    if type(x).__module__.split(".")[0] != "torch" or not hasattr(x, "detach"):
        return x
    device = getattr(getattr(x, "device", None), "type", "cpu")
    if device != "cpu":
        raise TypeError(f"{name} is a torch tensor on {device}; move it to the host first (.cpu())")
    return x.detach().numpy()


def check_image_list(images) -> list:
    """``images`` as a list of arrays (CPU torch tensors converted with ``.numpy()``).

    TypeError for ``None``, a single array (``pass [image]``), or an element that is not an
    array; ValueError for an empty list."""
    if hasattr(images, "shape"):
        raise TypeError(f"images must be a list of arrays; got one array of shape {tuple(images.shape)}: "
                        f"pass [image]")
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a list of arrays, got {type(images).__name__}")
    if not len(images):
        raise ValueError("got an empty list of images")
    out = []
    for i, image in enumerate(images):
        image = _from_torch(image, f"images[{i}]")
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            raise TypeError(f"images[{i}] must be an array of shape (H, W, 3) or (3, H, W), got "
                            f"{type(image).__name__}")
        out.append(image)
    return out


def check_unit_range(name: str, image) -> None:
    """ValueError unless the float ``image`` is finite and within [0, 1] (give or take
    :data:`IMAGE_RANGE_TOLERANCE`); one pass over the pixels, one sync."""
    lo, hi = image.min(), image.max()
    lo, hi = float(lo), float(hi)  # NaN propagates into both
    if lo != lo or hi != hi or abs(lo) == float("inf") or abs(hi) == float("inf"):
        raise ValueError(f"{name} contains NaN or infinite values")
    if hi > 1 + IMAGE_RANGE_TOLERANCE or lo < -IMAGE_RANGE_TOLERANCE:
        hint = "divide it by 255 or pass it as uint8" if hi > 1 + IMAGE_RANGE_TOLERANCE else "clip it to [0, 1]"
        raise ValueError(f"{name} is a float image with values in [{lo:g}, {hi:g}], expected [0, 1]: {hint}")


def check_targets(targets, num_images: int) -> list:
    """TypeError unless ``targets`` is a list of dicts; ValueError unless one per image."""
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a list of dicts (one per image), got {type(targets).__name__}")
    if len(targets) != num_images:
        raise ValueError(f"got {num_images} image(s) but {len(targets)} target(s); expected one target per image")
    return list(targets)


def check_target(i: int, target, image_size, dtype, num_classes: int | None = None,
                 require_masks: bool = True) -> dict:
    """One training target checked against its image of ``image_size`` (H, W) and normalised:
    lists become arrays (boxes in ``dtype``, labels int64). Expected: ``boxes`` (G, 4) float
    xyxy with positive width and height, ``labels`` (G,) ints in 1..num_classes - 1 (0 is the
    background), ``masks`` (G, H, W) -- optional when not ``require_masks`` (a detection model
    without a mask branch), checked when present. Raises TypeError / ValueError naming the key
    and index."""
    name = f"targets[{i}]"
    if not isinstance(target, dict):
        raise TypeError(f"{name} must be a dict with boxes, labels and masks, got {type(target).__name__}")
    missing = [k for k in ("boxes", "labels", "masks") if k not in target and (require_masks or k != "masks")]
    if missing:
        raise ValueError(f"{name} has no {', '.join(repr(k) for k in missing)}; expected keys 'boxes' (G, 4), "
                         f"'labels' (G,) and 'masks' (G, H, W)" + ("" if require_masks else " (masks optional)"))
    target = dict(target)
    boxes = as_boxes_arg(target["boxes"], f"{name}['boxes']", dtype)
    check_boxes(boxes, f"{name}['boxes']")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(empty.any()):
        j = int(empty.argmax())
        raise ValueError(f"{name}['boxes'][{j}] = {boxes[j].tolist()} has zero width or height; ground-truth "
                         f"boxes need x2 > x1 and y2 > y1 (remove the box, or its object, from the target)")
    G = boxes.shape[0]
    labels = as_array_arg(target["labels"], f"{name}['labels']")
    if labels.size == 0:
        labels = labels.astype(np.int64)  # [] is float64 to NumPy
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name}['labels'] must be integer class indices, got dtype {labels.dtype}")
    if tuple(labels.shape) != (G,):
        raise ValueError(f"{name}['labels'] must have shape ({G},) (one per box), got {tuple(labels.shape)}")
    if G:
        top = num_classes - 1 if num_classes is not None else None
        bad = labels < 1 if top is None else (labels < 1) | (labels > top)
        if bool(bad.any()):
            j = int(bad.argmax())
            valid = "1 or more" if top is None else f"1..{top}"
            raise ValueError(f"{name}['labels'][{j}] = {int(labels[j])}; expected a class in {valid} "
                             f"(0 is the background)")
    if "masks" not in target:
        target.update(boxes=boxes, labels=labels.astype(np.int64, copy=False))
        return target
    masks = as_array_arg(target["masks"], f"{name}['masks']", np.uint8)
    if getattr(masks.dtype, "kind", None) not in ("b", "u", "i", "f"):
        raise TypeError(f"{name}['masks'] must be 0/1 masks of dtype uint8 (or bool, int, float), got dtype "
                        f"{masks.dtype}")
    H, W = image_size
    if tuple(masks.shape) != (G, H, W):
        raise ValueError(f"{name}['masks'] must have shape ({G}, {H}, {W}) (one mask per box, the image's "
                         f"size), got {tuple(masks.shape)}")
    target.update(boxes=boxes, labels=labels.astype(np.int64, copy=False), masks=masks)
    return target
