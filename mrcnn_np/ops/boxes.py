"""Box utilities on arrays of absolute ``xyxy`` boxes, shaped and named like ``torchvision.ops``.

In:  boxes (R, 4) as ``x1, y1, x2, y2`` in pixels, float32 or float64.
Out: areas (R,), IoU matrices (R1, R2), clipped boxes (R, 4), kept indices (K,) int64.

Torchvision: ``ops/boxes.py`` (``box_area``, ``box_iou``, ``clip_boxes_to_image``,
``remove_small_boxes``). Unlike torchvision, boxes with ``x2 < x1``, ``y2 < y1`` or NaN
coordinates raise a ValueError instead of producing silent nonsense, and the IoU of two
zero-area boxes is 0 (torchvision gives NaN).

``box_iou`` has three implementations (``impl=``, resolved against the table ``BOX_IOU``): the
NumPy reference below, a parallel Numba kernel and a numba.cuda kernel
(:mod:`mrcnn_np.kernels.box_iou`).
"""

from __future__ import annotations

import numpy as np

from ..backend import KernelTable, get_array_module
from ..checks import (
    as_boxes_arg,
    check_boxes,
    check_number,
    check_real_array,
    check_same_dtype,
    check_shape,
    check_size_hw,
)


def box_area(boxes):
    """(R, 4) -> (R,): ``(x2 - x1) * (y2 - y1)``."""
    boxes = as_boxes_arg(boxes)
    check_shape("box_area", "boxes", boxes, "(R, 4)", ndim=2, dims={1: 4})
    check_real_array("box_area", "boxes", boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou_numpy(boxes1, boxes2):
    """The reference: (R1, 4), (R2, 4) -> (R1, R2) intersection over union.

    Same arithmetic, in the same order, as torchvision's ``_box_inter_union``.
    """
    xp = get_array_module(boxes1, boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = xp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (R1, R2, 2) top-left of the overlap
    rb = xp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (R1, R2, 2) bottom-right
    wh = xp.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    positive = union > 0
    # 0 for two zero-area boxes; xp.where, not divide(where=), which CuPy's ufuncs lack
    return xp.where(positive, inter / xp.where(positive, union, 1), 0).astype(inter.dtype, copy=False)


def _kernels():
    from ..kernels import box_iou  # imports numba: on first use only

    return box_iou


BOX_IOU = KernelTable("box_iou", numpy=box_iou_numpy,
                      numba=lambda: _kernels().box_iou_numba, cuda=lambda: _kernels().box_iou_cuda)


def box_iou(boxes1, boxes2, impl: str = "auto"):
    """Pairwise IoU: (R1, 4), (R2, 4) -> (R1, R2), same dtype. ``impl``: see module doc. A list
    is taken as an array of the other argument's dtype (float64 when both are lists)."""
    dtype = next((b.dtype for b in (boxes1, boxes2) if hasattr(b, "dtype")), np.float64)
    boxes1, boxes2 = as_boxes_arg(boxes1, "boxes1", dtype), as_boxes_arg(boxes2, "boxes2", dtype)
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    check_same_dtype("box_iou", ("boxes1", boxes1), ("boxes2", boxes2))
    run = BOX_IOU.select(impl, boxes1, boxes2)
    if min(len(boxes1), len(boxes2)) == 0:  # nothing to launch a kernel on
        return box_iou_numpy(boxes1, boxes2)
    return run(boxes1, boxes2)


def clip_boxes_to_image(boxes, size: tuple[int, int]):
    """Clamp x to [0, width] and y to [0, height]; ``size`` is (height, width)."""
    boxes = as_boxes_arg(boxes)
    check_shape("clip_boxes_to_image", "boxes", boxes, "(..., 4)", dims={-1: 4})
    check_real_array("clip_boxes_to_image", "boxes", boxes)
    check_size_hw("clip_boxes_to_image", "size", size)
    xp = get_array_module(boxes)
    height, width = size
    out = boxes.copy()
    out[..., 0::2] = xp.clip(boxes[..., 0::2], 0, width)
    out[..., 1::2] = xp.clip(boxes[..., 1::2], 0, height)
    return out


def remove_small_boxes(boxes, min_size: float):
    """Indices (int64) of the boxes whose width and height are both >= ``min_size``."""
    boxes = as_boxes_arg(boxes)
    check_shape("remove_small_boxes", "boxes", boxes, "(R, 4)", ndim=2, dims={1: 4})
    check_real_array("remove_small_boxes", "boxes", boxes)
    check_number("remove_small_boxes", "min_size", min_size)  # checked, used as given (its dtype counts)
    xp = get_array_module(boxes)
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return xp.nonzero((ws >= min_size) & (hs >= min_size))[0].astype(np.int64)
