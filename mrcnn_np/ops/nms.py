"""Non-maximum suppression: greedy, by decreasing score, as ``torchvision.ops.nms``.

In:  boxes (R, 4) xyxy, scores (R,), an IoU threshold; for ``batched_nms`` also a
     category per box (R,) int.
Out: int64 indices of the kept boxes, in decreasing score order (equal scores: lower
     index first, as torchvision's stable sort gives).

The algorithm: visit boxes from the highest score down; keep a box unless an already kept
box overlaps it with IoU **>** the threshold. The overlap arithmetic is torchvision's CPU
kernel's, operation for operation, so the same boxes are kept even in float32.

``nms`` has three implementations (``impl=``, resolved against the table ``NMS``): the NumPy
reference here, a Numba kernel and a numba.cuda kernel (:mod:`mrcnn_np.kernels.nms`).

``batched_nms`` never suppresses across categories. Like torchvision it uses the
"coordinate trick" (shift each category's boxes far apart, one NMS) up to 1,000 boxes and
one NMS per category above, so that the two agree on which boxes are kept even in the
rounding of shifted coordinates. Torchvision sorts the result of the per-category path
with an unstable sort, so for more than 16 kept boxes its order of *equal* scores is an
artefact of ``std::sort``; ours orders them by index.
"""

from __future__ import annotations

import numpy as np

from ..backend import KernelTable, get_array_module
from ..checks import as_array_arg, as_boxes_arg, check_boxes, check_iou_threshold, check_scores
from ..kernels.order import score_order

# torchvision switches batched_nms strategy above this many coordinates (boxes.numel()) on CPU
_VANILLA_ABOVE_NUMEL = 4000


def nms_numpy(boxes, scores, iou_threshold: float):
    """The reference: greedy NMS with a vectorised overlap test per kept box."""
    xp = get_array_module(boxes)
    order = score_order(scores)
    x1, y1, x2, y2 = (boxes[order, k] for k in range(4))  # sorted, so "later" means "lower score"
    areas = (x2 - x1) * (y2 - y1)
    suppressed = xp.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)
        w = xp.maximum(xp.minimum(x2[i], x2[rest]) - xp.maximum(x1[i], x1[rest]), 0)
        h = xp.maximum(xp.minimum(y2[i], y2[rest]) - xp.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 for zero-area pairs: NaN, never > t
            iou = inter / union
        suppressed[rest] |= iou > np.float64(iou_threshold)  # compared in double, as torchvision
    return order[xp.asarray(keep, dtype=np.int64)].astype(np.int64)


def _kernels():
    from ..kernels import nms  # imports numba: on first use only

    return nms


NMS = KernelTable("nms", numpy=nms_numpy, numba=lambda: _kernels().nms_numba, cuda=lambda: _kernels().nms_cuda)


def nms(boxes, scores, iou_threshold: float, impl: str = "auto"):
    """Indices (K,) int64 of the boxes kept by greedy NMS, by decreasing score. Lists are taken
    as float64 arrays; a NaN ``iou_threshold`` is a ValueError."""
    boxes, scores = as_boxes_arg(boxes), as_array_arg(scores, "scores", np.float64)
    check_boxes(boxes)
    check_scores(scores, len(boxes))
    iou_threshold = check_iou_threshold("nms", iou_threshold)
    run = NMS.select(impl, boxes, scores)
    if len(boxes) == 0:  # nothing to launch a kernel on
        return get_array_module(boxes).zeros(0, dtype=np.int64)
    return run(boxes, scores, iou_threshold)


def batched_nms(boxes, scores, idxs, iou_threshold: float, impl: str = "auto"):
    """NMS within each category ``idxs`` (R,) int; kept indices (K,) int64 by decreasing score.
    Lists are taken as arrays (boxes and scores float64)."""
    boxes, scores = as_boxes_arg(boxes), as_array_arg(scores, "scores", np.float64)
    idxs = as_array_arg(idxs, "idxs", np.int64 if isinstance(idxs, (list, tuple)) and not idxs else None)
    check_boxes(boxes)
    check_scores(scores, len(boxes))
    iou_threshold = check_iou_threshold("batched_nms", iou_threshold)
    xp = get_array_module(boxes)
    if idxs.shape != (len(boxes),):
        raise ValueError(f"idxs must have shape ({len(boxes)},) (one category per box), got {tuple(idxs.shape)}")
    if idxs.dtype.kind not in "iu":
        raise TypeError(f"batched_nms: idxs must be integer category ids, got dtype {idxs.dtype}")
    if len(boxes) == 0:
        return xp.zeros(0, dtype=np.int64)
    if boxes.size > _VANILLA_ABOVE_NUMEL:  # one NMS per category
        keep_mask = xp.zeros(len(boxes), dtype=bool)
        for category in xp.unique(idxs):
            members = xp.nonzero(idxs == category)[0]
            keep_mask[members[nms(boxes[members], scores[members], iou_threshold, impl)]] = True
        kept = xp.nonzero(keep_mask)[0]
        return kept[score_order(scores[kept])].astype(np.int64)
    # coordinate trick: categories moved apart by more than the largest coordinate
    offsets = idxs.astype(boxes.dtype) * (boxes.max() + boxes.dtype.type(1))
    return nms(boxes + offsets[:, None], scores, iou_threshold, impl)
