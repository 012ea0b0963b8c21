"""Grader of exercise 05: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases. Detections are compared one by one, in order: labels
exactly, boxes and scores to 1e-10 of the reference's largest value; pasted masks, mask
targets and the loss to 1e-10 as well. The references are mrcnn_np's
``RoIHeads.postprocess_detections``, ``paste_masks_in_image``, ``project_masks_on_boxes``
and ``maskrcnn_loss`` and torchvision's functions of the same names.

Every detection case has at most 1,000 candidate boxes (R x (K - 1)), so that torchvision's
``batched_nms`` takes its "coordinate trick" path: one NMS over all classes' boxes shifted
apart, whose stable sort orders equal scores by candidate index (proposal-major). Its
per-class path (above 1,000 boxes on CPU) orders equal scores with an unstable sort.

When a result is wrong in a way the grader recognises (``>=`` in NMS, no clamp, no padding
of the mask, rounding instead of truncating, align_corners=True, every class in the mask
loss, ...), the message ends with a hint.
"""

import math
import re

import numpy as np

from mrcnn_np.exercises import Task, assert_close, function, shape_str
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import torch_modules as _torch_modules

STUB = "exercise.py"
RTOL = 1e-10
CLIP = math.log(1000.0 / 16)
WEIGHTS = (10.0, 10.0, 5.0, 5.0)



def _as_array(received, what, expected_shape):
    """``received`` as a float64 array (any shape), or a readable AssertionError."""
    if received is None:
        raise AssertionError(f"{what}:\nexpected an array of shape {shape_str(expected_shape)}, got None "
                             "(a missing return?)")
    try:
        return np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected an array of shape {shape_str(expected_shape)}, "
                             f"got {type(received).__name__}") from None


def _matches(got, variant):
    """Whether ``got`` equals ``variant`` (same shape, close values, NaN where it has NaN)."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    variant = np.asarray(variant, dtype=np.float64)
    return got.shape == variant.shape and bool(np.allclose(got, variant, rtol=1e-9, atol=1e-12, equal_nan=True))


def _first_hint(got, expected, variants):
    """The hint of the first ``(variant, hint)`` that ``got`` reproduces and that differs from ``expected``."""
    for variant, hint in variants:
        if _matches(got, variant) and not _matches(variant, expected):
            return hint
    return None


# --- task (a) ----------------------------------------------------------------------------------
def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _random_boxes(rng, n, low, high, min_size, max_size):
    """(n, 4) boxes with top-left corners in [low, high) (per axis x, y) and log-uniform sides."""
    xy = rng.uniform(low, high, (n, 2))
    wh = np.exp(rng.uniform(np.log(min_size), np.log(max_size), (n, 2)))
    return np.concatenate([xy, xy + wh], axis=1)


# The exact case: whole-pixel proposals and deltas whose decoded boxes are exact in floating
# point (dx / 10 = 1/8, times a width of 16 is 2 px), so IoUs of exactly 0.5 and tied scores
# come out exact in every implementation. K = 5 classes, image (40, 60), score_thresh 0.2.
EXACT_PROPOSALS = np.array([
    [0.0, 0.0, 10.0, 10.0],  # 0 \ IoU exactly 0.5: both kept, since only IoU > 0.5 suppresses; classes 1
    [0.0, 0.0, 10.0, 5.0],  # 1 / and 2 of both tied: four equal scores, in candidate order 0.1, 0.2, 1.1, 1.2
    [20.0, 10.0, 30.0, 20.0],  # 2 \ IoU 0.82, equal logits: the lower index (2) is kept
    [21.0, 10.0, 31.0, 20.0],  # 3 /
    [70.0, 5.0, 80.0, 15.0],  # 4: right of the image (width 60): 0 px wide once clipped, removed
    [5.0, 25.0, 25.0, 35.0],  # 5: equal logits for all 5 classes: every score exactly 0.2 = score_thresh
    [40.0, 20.0, 56.0, 36.0],  # 6: class 2 moved by dx = 1.25, dy = -2.5 -> +2 px, -4 px (exactly)
    [-6.0, 30.0, 14.0, 46.0],  # 7: across the left and bottom borders; classes 1-4 tied
])
EXACT_LOGITS = np.array([
    [0.0, 2.0, 2.0, 0.0, -1.0],
    [0.0, 2.0, 2.0, 0.0, -1.0],
    [1.0, 2.0, 2.0, 0.0, 0.0],
    [1.0, 2.0, 2.0, 0.0, 0.0],
    [0.0, 4.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 2.5, 0.0, 1.0],
    [0.0, 1.0, 1.0, 1.0, 1.0],
])


def _detection_cases():
    """(label, keyword arguments of postprocess_detections); at most 1,000 candidates each."""
    rng = np.random.default_rng(51)

    # 1. Boxes across the border, and four tiny proposals with wild dw / dh in their best class.
    R, K, (H, W) = 60, 5, (120, 160)
    proposals = _random_boxes(rng, R, -20.0, [W - 10.0, H - 10.0], 4.0, 80.0)
    logits = rng.normal(0.0, 2.0, (R, K))
    deltas = rng.normal(0.0, 1.0, (R, 4 * K))
    for r, (k, coord, value) in enumerate([(1, 2, 22.0), (2, 3, 24.0), (3, 2, -22.0), (4, 3, 21.0)]):
        centre = np.array([W / 2, H / 2]) + rng.uniform(-8, 8, 2)
        proposals[r] = np.concatenate([centre - [1.0, 0.75], centre + [1.0, 0.75]])  # 2 x 1.5 px
        logits[r, k] = 8.0
        deltas[r, 4 * k : 4 * k + 4] = [0.3, -0.2, 0.1, 0.1]
        deltas[r, 4 * k + coord] = value  # dw / 5 or dh / 5 beyond the clamp log(1000 / 16) = 4.14
    yield ("60 proposals, 5 classes, image (120, 160), boxes across the border; 4 tiny proposals with "
           "dw or dh beyond the clamp in their best class",
           dict(class_logits=logits, box_regression=deltas, proposals=proposals, image_shape=(H, W),
                score_thresh=0.05, nms_thresh=0.5, detections_per_img=100))

    # 2. Proposals crowded around three objects: NMS matters, and 9 survive it, more than detections_per_img.
    R, K, (H, W) = 48, 4, (64, 96)
    objects = np.array([[10.0, 8.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0], [20.0, 35.0, 45.0, 62.0]])
    proposals = objects[rng.integers(0, 3, R)] + rng.normal(0.0, 3.0, (R, 4))
    proposals[:, 2:] = np.maximum(proposals[:, 2:], proposals[:, :2] + 2.0)
    yield ("48 proposals around 3 objects, 4 classes, image (64, 96), score_thresh=0.2, nms_thresh=0.3, "
           "detections_per_img=6",
           dict(class_logits=rng.normal(0.0, 1.5, (R, K)), box_regression=rng.normal(0.0, 0.5, (R, 4 * K)),
                proposals=proposals, image_shape=(H, W), score_thresh=0.2, nms_thresh=0.3, detections_per_img=6))

    # 3. Exact coordinates: IoU exactly 0.5, tied scores, a score exactly score_thresh, a box clipped to 0 px.
    deltas = np.zeros((len(EXACT_PROPOSALS), 4 * 5))
    deltas[6, 8:12] = [1.25, -2.5, 0.0, 0.0]
    yield ("exact coordinates, 8 proposals, 5 classes, image (40, 60), score_thresh=0.2: two boxes of IoU exactly "
           "0.5, tied scores, scores exactly equal to score_thresh, a box outside the image",
           dict(class_logits=EXACT_LOGITS.copy(), box_regression=deltas, proposals=EXACT_PROPOSALS.copy(),
                image_shape=(40, 60), score_thresh=0.2, nms_thresh=0.5, detections_per_img=100))

    # 4. 21 classes (Pascal VOC's 20 + background), a portrait image.
    R, K, (H, W) = 45, 21, (90, 70)
    proposals = _random_boxes(rng, R, -10.0, [W - 5.0, H - 5.0], 3.0, 60.0)
    yield ("45 proposals, 21 classes (900 candidates), portrait image (90, 70)",
           dict(class_logits=rng.normal(0.0, 3.0, (R, K)), box_regression=rng.normal(0.0, 1.0, (R, 4 * K)),
                proposals=proposals, image_shape=(H, W), score_thresh=0.05, nms_thresh=0.5, detections_per_img=100))

    # 5. Every proposal is background: nothing survives.
    R, K = 20, 3
    logits = np.concatenate([np.full((R, 1), 10.0), rng.normal(-5.0, 1.0, (R, K - 1))], axis=1)
    yield ("20 proposals, 3 classes, every score below score_thresh: no detection",
           dict(class_logits=logits, box_regression=rng.normal(0.0, 1.0, (R, 4 * K)),
                proposals=_random_boxes(rng, R, 0.0, 50.0, 5.0, 30.0), image_shape=(64, 64), score_thresh=0.05,
                nms_thresh=0.5, detections_per_img=100))


def _greedy_nms(boxes, scores, threshold, suppress_equal=False, ties_reversed=False):
    """Greedy NMS (torchvision's arithmetic); ``suppress_equal``: IoU >= threshold suppresses."""
    order = np.argsort(scores, kind="stable")[::-1] if ties_reversed else np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        wh = np.clip(np.minimum(boxes[best, 2:], boxes[rest, 2:]) - top_left, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[best] + area[rest] - inter)  # NaN for two empty boxes: never suppresses
        order = rest[~((iou >= threshold) if suppress_equal else (iou > threshold))]
    return np.array(keep, dtype=np.int64)


def _detections_variant(class_logits, box_regression, proposals, image_shape, score_thresh, nms_thresh,
                        detections_per_img, mistake=None):
    """(boxes, scores, labels) as torchvision computes them, or with one deliberate ``mistake`` (for hints)."""
    R, K = class_logits.shape
    if mistake == "sigmoid":
        scores = 1 / (1 + np.exp(-class_logits))
    elif mistake == "softmax_axis0":
        scores = _softmax(class_logits, axis=0)
    elif mistake == "logits":
        scores = class_logits.copy()
    else:
        scores = _softmax(class_logits)
    if mistake == "coord_major":
        deltas = box_regression.reshape(R, 4, K).transpose(0, 2, 1)  # (R, 4K) read as (R, 4, K)
    else:
        deltas = box_regression.reshape(R, K, 4)
    weights = np.array((1.0, 1.0, 1.0, 1.0) if mistake == "no_weights" else WEIGHTS)
    d = deltas / weights  # (R, K, 4)
    if mistake == "no_clamp":
        dwh = d[..., 2:]
    elif mistake == "clamp_before_weights":
        dwh = np.minimum(deltas[..., 2:], CLIP) / weights[2:]
    elif mistake == "clamp_both":
        dwh = np.clip(d[..., 2:], -CLIP, CLIP)
    else:
        dwh = np.minimum(d[..., 2:], CLIP)
    size = (proposals[:, 2:] - proposals[:, :2])[:, None, :]  # (R, 1, 2)
    centre = proposals[:, None, :2] + 0.5 * size
    new_centre = d[..., :2] * size + centre
    with np.errstate(over="ignore"):
        half = 0.5 * (np.exp(dwh) * size)
    boxes = np.concatenate([new_centre - half, new_centre + half], axis=-1)  # (R, K, 4)
    height, width = image_shape[::-1] if mistake == "clip_swapped" else image_shape
    if mistake != "no_clip":
        boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)
        boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)
    labels = np.broadcast_to(np.arange(K), (R, K))
    first = 0 if mistake == "keep_background" else 1
    boxes, scores = boxes[:, first:].reshape(-1, 4), scores[:, first:].reshape(-1)
    labels = labels[:, first:].reshape(-1)
    keep = (scores >= score_thresh) if mistake == "score_ge" else (scores > score_thresh)
    if mistake != "no_remove_small":
        keep &= (boxes[:, 2] - boxes[:, 0] >= 1e-2) & (boxes[:, 3] - boxes[:, 1] >= 1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if mistake == "top_before_nms":
        first_n = np.sort(np.argsort(-scores, kind="stable")[:detections_per_img])
        boxes, scores, labels = boxes[first_n], scores[first_n], labels[first_n]
    reverse = mistake == "ties_reversed"
    if mistake == "no_nms":
        kept = np.arange(len(scores))
    elif mistake == "class_agnostic":
        kept = _greedy_nms(boxes, scores, nms_thresh)
    else:
        kept = np.concatenate([np.zeros(0, np.int64)] + [
            np.nonzero(labels == k)[0][_greedy_nms(boxes[labels == k], scores[labels == k], nms_thresh,
                                                   suppress_equal=mistake == "nms_ge", ties_reversed=reverse)]
            for k in np.unique(labels)])  # class after class
    if mistake == "ties_reversed":
        kept = np.sort(kept)
        kept = kept[np.argsort(scores[kept], kind="stable")[::-1]]
    elif mistake != "unsorted":
        if mistake != "class_major_ties":
            kept = np.sort(kept)  # candidate order: ties broken by it
        kept = kept[np.argsort(-scores[kept], kind="stable")]
    if mistake != "no_top":
        kept = kept[:detections_per_img]
    labels = labels[kept] - (1 if mistake == "labels_from_0" else 0)
    return boxes[kept], scores[kept], labels.astype(np.int64)


DETECTION_HINTS = [
    ("nms_ge", "NMS suppresses a box only when its IoU with a kept box is > nms_thresh, strictly: two boxes of "
               "IoU exactly 0.5 are both kept"),
    ("class_agnostic", "NMS runs within each class: boxes of different classes never suppress each other"),
    ("no_nms", "no box was suppressed: run NMS (nms_thresh) within each class"),
    ("no_clamp", "clamp dw / ww and dh / wh from above at log(1000 / 16) before exp: a box grows at most 62.5 "
                 "times"),
    ("clamp_before_weights", "clamp after dividing by the weight: min(dw / 5, log(1000 / 16)), not "
                             "min(dw, log(1000 / 16)) / 5"),
    ("clamp_both", "dw and dh are clamped from above only (np.minimum): a very negative dw just makes a small box"),
    ("no_weights", "the box head's deltas are scaled by the weights (10, 10, 5, 5): dx / 10, dy / 10, dw / 5, "
                   "dh / 5"),
    ("coord_major", "box_regression (R, 4K) holds class k's deltas in columns 4k..4k+3: reshape to (R, K, 4), "
                    "not (R, 4, K)"),
    ("no_clip", "clip the boxes to the image: x to [0, width], y to [0, height]"),
    ("clip_swapped", "image_shape is (height, width): x is clipped to [0, width], y to [0, height]"),
    ("keep_background", "drop the background: class 0 is never a detection (boxes[:, 1:], scores[:, 1:])"),
    ("labels_from_0", "labels are class indices 1..K-1 (the background is 0): after dropping column 0, add 1 back"),
    ("score_ge", "keep scores > score_thresh, strictly: a score equal to it is dropped"),
    ("no_remove_small", "drop boxes whose width or height is < 1e-2 once clipped (a box outside the image is "
                        "0 px wide)"),
    ("sigmoid", "the scores are a softmax over the K classes of each proposal, not a sigmoid of each logit"),
    ("softmax_axis0", "softmax over the classes (axis 1, each row sums to 1), not over the proposals (axis 0)"),
    ("logits", "the scores are probabilities: softmax(class_logits) over the classes"),
    ("top_before_nms", "keep the best detections_per_img after NMS, not before"),
    ("no_top", "keep at most detections_per_img detections (the best, after NMS)"),
    ("class_major_ties", "equal scores keep the candidates' order, proposal-major (candidate r * (K - 1) + k - 1): "
                         "sort the kept indices before the stable sort by score, or the classes you looped over "
                         "come first"),
    ("ties_reversed", "equal scores: the earlier candidate first, in NMS and in the final order "
                      "(np.argsort(-scores, kind='stable'); np.argsort(scores)[::-1] puts ties backwards)"),
    ("unsorted", "return the detections of all classes together by decreasing score, not class after class"),
]


def _detections_hint(got, kwargs):
    """The hint of the first mistake ``got`` (boxes, scores, labels) reproduces, or of a wrong order."""
    expected = _detections_variant(**kwargs)
    for mistake, hint in DETECTION_HINTS:
        variant = _detections_variant(**kwargs, mistake=mistake)
        if all(_matches(g, v) for g, v in zip(got, variant, strict=True)) and not all(
                _matches(v, e) for v, e in zip(variant, expected, strict=True)):
            return hint
    try:
        boxes, scores, labels = (np.asarray(a, dtype=np.float64) for a in got)
        rows = np.concatenate([boxes, scores[:, None], labels[:, None]], axis=1)
        expected_rows = np.concatenate([expected[0], expected[1][:, None], expected[2][:, None]], axis=1)
        if rows.shape == expected_rows.shape and np.allclose(np.unique(rows, axis=0), np.unique(expected_rows, axis=0)):
            return ("the right detections in the wrong order: by decreasing score, equal scores in candidate order "
                    "(proposal r, class k: r * (K - 1) + k - 1)")
    except (TypeError, ValueError):
        pass
    return None


def _describe_detection(boxes, scores, labels, i):
    return f"label {int(labels[i])}, score {scores[i]:.6g}, box {_fmt(boxes[i])}"


def _compare_detections(got, expected, what):
    """Fail unless ``got`` (boxes, scores, labels) holds ``expected``'s detections in the same order."""
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        raise AssertionError(f"{what}:\nexpected a tuple (boxes (D, 4), scores (D,), labels (D,)), "
                             f"got {type(got).__name__}{length}")
    e_boxes, e_scores, e_labels = (np.asarray(a) for a in expected)
    D = len(e_scores)
    boxes = _as_array(got[0], f"boxes of {what}", (D, 4))
    scores = _as_array(got[1], f"scores of {what}", (D,))
    labels_in = got[2]
    labels = _as_array(labels_in, f"labels of {what}", (D,))
    if boxes.ndim != 2 or boxes.shape[1:] != (4,) or scores.shape != (len(boxes),) or labels.shape != (len(boxes),):
        raise AssertionError(f"{what}:\nexpected boxes (D, 4), scores (D,) and labels (D,) with D = {D}; got "
                             f"boxes {shape_str(boxes.shape)}, scores {shape_str(scores.shape)}, labels "
                             f"{shape_str(labels.shape)}")
    box_tol = RTOL * max(float(np.abs(e_boxes).max(initial=0.0)), 1.0)
    score_tol = RTOL * max(float(np.abs(e_scores).max(initial=0.0)), 1.0)
    n = min(D, len(boxes))
    with np.errstate(invalid="ignore"):
        wrong = ((labels[:n] != e_labels[:n]) | ~(np.abs(scores[:n] - e_scores[:n]) <= score_tol)
                 | ~(np.abs(boxes[:n] - e_boxes[:n]) <= box_tol).all(axis=1))
    first = int(np.argmax(wrong)) if wrong.any() else n
    if len(boxes) != D:
        detail = (f"expected {D} detections, got {len(boxes)}" + (
            f"; the first difference is detection {first}: expected " + (
                _describe_detection(e_boxes, e_scores, e_labels, first) if first < D else "none") + ", got " + (
                _describe_detection(boxes, scores, labels, first) if first < len(boxes) else "none")))
        raise AssertionError(f"{what}:\n{detail}")
    if wrong.any():
        raise AssertionError(
            f"{what}: {int(wrong.sum())} of {D} detections differ (labels exactly, boxes and scores to "
            f"{RTOL:.0e} x the largest)\nfirst at detection {first}: expected "
            f"{_describe_detection(e_boxes, e_scores, e_labels, first)}, got "
            f"{_describe_detection(boxes, scores, labels, first)}")
    dtype = getattr(labels_in, "dtype", None)
    if dtype != np.int64:
        hint = "\nhint: labels are class indices: .astype(np.int64)" if dtype is not None else ""
        raise AssertionError(f"labels of {what}:\nexpected int64 labels, got "
                             f"{dtype if dtype is not None else type(labels_in).__name__}{hint}")


def _library_detections(kwargs):
    from mrcnn_np.model.roi_heads import RoIHeads

    heads = RoIHeads(None, None, None, None, score_thresh=kwargs["score_thresh"], nms_thresh=kwargs["nms_thresh"],
                     detections_per_img=kwargs["detections_per_img"])
    out = heads.postprocess_detections(kwargs["class_logits"], kwargs["box_regression"], [kwargs["proposals"]],
                                       [kwargs["image_shape"]])[0]
    return out["boxes"], out["scores"], out["labels"]


def _torch_detections(torch, roi_heads, kwargs):
    heads = roi_heads.RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, kwargs["score_thresh"],
                               kwargs["nms_thresh"], kwargs["detections_per_img"])
    with torch.no_grad():
        boxes, scores, labels = heads.postprocess_detections(
            torch.tensor(kwargs["class_logits"]), torch.tensor(kwargs["box_regression"]),
            [torch.tensor(kwargs["proposals"])], [kwargs["image_shape"]])
    return boxes[0].numpy(), scores[0].numpy(), labels[0].numpy()


def check_postprocess_detections(ex):
    postprocess_detections = function(ex, "postprocess_detections")
    note = None
    for label, kwargs in _detection_cases():
        R, K = kwargs["class_logits"].shape
        case = (f"postprocess_detections(class_logits ({R}, {K}), box_regression ({R}, {4 * K}), proposals ({R}, 4), "
                f"image_shape={kwargs['image_shape']}, score_thresh={kwargs['score_thresh']}, "
                f"nms_thresh={kwargs['nms_thresh']}, detections_per_img={kwargs['detections_per_img']}) [{label}]")
        args = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        got = _call(ex, postprocess_detections, (), case, kwargs=args)
        references = [("mrcnn_np RoIHeads.postprocess_detections", _library_detections(kwargs))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.roi_heads")
        if modules:
            references.append(("torchvision RoIHeads.postprocess_detections", _torch_detections(*modules, kwargs)))
        for reference, expected in references:
            try:
                _compare_detections(got, expected, f"{case}\nvs {reference}")
            except AssertionError as error:
                hint = None if "hint:" in str(error) or not isinstance(got, (tuple, list)) or len(got) != 3 \
                    else _detections_hint(got, kwargs)
                raise _hinted(error, hint) from None
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _paste_cases():
    """(label, masks (R, 1, M, M), boxes (R, 4), a label per box, image_shape, padding)."""
    rng = np.random.default_rng(52)
    crafted = [
        ("inside the image", [12.4, 8.7, 35.2, 29.9]),
        ("partly outside (top-left, negative corners)", [-7.3, -4.6, 20.8, 18.2]),
        ("partly outside (bottom-right)", [62.4, 41.7, 93.1, 71.9]),
        ("tiny: 0.3 x 0.2 px", [30.2, 20.6, 30.5, 20.8]),
        ("thin: 0.5 px high", [10.3, 50.2, 40.7, 50.7]),
        ("a point: zero size", [50.0, 30.0, 50.0, 30.0]),
        ("larger than the image", [-25.5, -18.2, 101.3, 77.6]),
    ]
    boxes = np.concatenate([np.array([b for _, b in crafted]), _random_boxes(rng, 3, 0.0, [60.0, 45.0], 3.0, 30.0)])
    labels = [name for name, _ in crafted] + ["a random box"] * 3
    yield "M = 28, image (60, 80)", rng.uniform(0, 1, (len(boxes), 1, 28, 28)), boxes, labels, (60, 80), 1
    boxes = _random_boxes(rng, 5, [-6.0, -4.0], [30.0, 40.0], 2.0, 25.0)
    yield ("M = 14, image (45, 33)", rng.uniform(0, 1, (5, 1, 14, 14)), boxes, ["a random box"] * 5, (45, 33), 1)
    boxes = _random_boxes(rng, 4, -5.0, 40.0, 4.0, 40.0)
    yield ("M = 28, padding=2, image (50, 50)", rng.uniform(0, 1, (4, 1, 28, 28)), boxes, ["a random box"] * 4,
           (50, 50), 2)
    yield "no masks: (0, 1, 28, 28)", np.zeros((0, 1, 28, 28)), np.zeros((0, 4)), [], (20, 30), 1


def _resize_variant(image, out_h, out_w, align_corners=False, clamp=True, inverted=False):
    """torch's bilinear resize of a 2-D array, or one with a deliberate mistake (for hints)."""
    def taps(n_in, n_out):
        d = np.arange(n_out, dtype=np.float64)
        if align_corners:
            src = d * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            src = (d + 0.5) * (n_out / n_in if inverted else n_in / n_out) - 0.5
        if clamp:
            src = np.maximum(src, 0.0)
        low = src.astype(np.int64)  # truncated: without the clamp, -0.25 -> 0 and frac = -0.25 extrapolates
        low = np.minimum(low, n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), src - low

    x_low, x_high, fx = taps(image.shape[1], out_w)
    y_low, y_high, fy = taps(image.shape[0], out_h)
    rows = image[:, x_low] * (1 - fx) + image[:, x_high] * fx
    return rows[y_low] * (1 - fy)[:, None] + rows[y_high] * fy[:, None]


def _paste_variant(masks, boxes, image_shape, padding, pad=True, expand=True, to_int=int, plus_one=True,
                   fixed_padding=False, **resize):
    """torchvision's paste_masks_in_image, or with one deliberate mistake (for hints)."""
    R, _, M, _ = masks.shape
    im_h, im_w = image_shape
    p = 1 if fixed_padding else padding
    out = np.zeros((R, 1, im_h, im_w))
    scale = (M + 2 * p) / M if expand else 1.0
    padded = np.pad(masks[:, 0], ((0, 0), (p, p), (p, p))) if pad else masks[:, 0]
    for r in range(R):
        x1, y1, x2, y2 = boxes[r]
        half_w, half_h = (x2 - x1) * 0.5 * scale, (y2 - y1) * 0.5 * scale
        cx, cy = (x2 + x1) * 0.5, (y2 + y1) * 0.5
        x1, y1, x2, y2 = (int(to_int(v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
        extra = 1 if plus_one else 0
        w, h = max(x2 - x1 + extra, 1), max(y2 - y1 + extra, 1)
        resized = _resize_variant(padded[r], h, w, **resize)
        xa, xb, ya, yb = max(x1, 0), min(x2 + 1, im_w), max(y1, 0), min(y2 + 1, im_h)
        if xb > xa and yb > ya:
            part = resized[ya - y1 : yb - y1, xa - x1 : xb - x1]
            if part.shape != (yb - ya, xb - xa):  # no + 1: the resized mask is a pixel short
                part = np.pad(part, ((0, yb - ya - part.shape[0]), (0, xb - xa - part.shape[1])))
            out[r, 0, ya:yb, xa:xb] = part
    return out


PASTE_HINTS = [
    (dict(pad=False, expand=False), "pad the mask with one pixel of zeros on every side and grow the box by "
                                    "(M + 2) / M about its centre: the mask's edge then fades out across the box's "
                                    "border instead of stopping at it"),
    (dict(expand=False), "the padded mask is (M + 2) / M larger than the mask: grow the box by that scale about its "
                         "centre (half_w = (x2 - x1) * 0.5 * scale)"),
    (dict(pad=False), "the box grows by (M + 2) / M because the mask is padded: pad it with np.pad(mask, padding) "
                      "first"),
    (dict(fixed_padding=True), "use the padding argument (the grader passes padding=2 once): scale = (M + 2 * padding) "
                               "/ M"),
    (dict(to_int=round), "truncate the grown box's corners towards 0 (int(), as torch's .to(torch.int64)), do not "
                         "round them"),
    (dict(to_int=math.floor), "truncate towards 0 (int(-3.7) = -3), not floor (-4): they differ for corners left of "
                              "or above the image"),
    (dict(to_int=math.ceil), "truncate the grown box's corners towards 0 (int()), not ceil"),
    (dict(plus_one=False), "both end pixels belong to the box: resize to w = x2 - x1 + 1, h = y2 - y1 + 1"),
    (dict(align_corners=True), "align_corners=False: src = (d + 0.5) * in / out - 0.5, pixel centres to pixel "
                               "centres, not d * (in - 1) / (out - 1)"),
    (dict(clamp=False), "clamp the source coordinate at 0: src = max((d + 0.5) * scale - 0.5, 0)"),
    (dict(inverted=True), "scale = in_size / out_size (how many input pixels per output pixel)"),
]


def _paste_hint(got, masks, boxes, image_shape, padding, expected):
    try:
        received = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    R, _, H, W = expected.shape
    if received.shape != expected.shape:
        if received.shape == (R, H, W):
            return "return (R, 1, H, W): keep the channel axis (one mask per box)"
        if received.shape == (R, 1, W, H):
            return "image_shape is (height, width): the canvas is (H, W)"
        return None
    if H == W and _matches(received, expected.transpose(0, 1, 3, 2)):
        return "the pasted masks are transposed: rows are y, columns x"
    variants = []
    for kwargs, hint in PASTE_HINTS:
        try:
            variants.append((_paste_variant(masks, boxes, image_shape, padding, **kwargs), hint))
        except (IndexError, ValueError):
            continue
    return _first_hint(received, expected, variants)


PASTE_CLIP_HINT = ("paste only the part of the box inside the image: rows max(y1, 0)..min(y2 + 1, H), columns "
                   "max(x1, 0)..min(x2 + 1, W), from the same part of the resized mask (offset by y1, x1)")


def _paste_crash_hint(exc):
    """A hint for a paste that raised: the resized mask a pixel short of its box, or not clipped."""
    shapes = re.findall(r"shape \((\d+),\s*(\d+)\)", str(exc))
    if isinstance(exc, ValueError) and len(shapes) == 2:
        source, target = ([int(n) for n in pair] for pair in shapes)
        if all(s <= t for s, t in zip(source, target, strict=True)) and source != target:
            return "both end pixels belong to the box: resize to w = x2 - x1 + 1, h = y2 - y1 + 1"
    if isinstance(exc, (ValueError, IndexError)):
        return PASTE_CLIP_HINT
    return None


def _worst_mask(got, expected, boxes, labels):
    error = np.abs(np.asarray(got, dtype=np.float64) - expected).reshape(len(boxes), -1)
    error[np.isnan(error)] = np.inf
    r = int(np.argmax(error.max(axis=1)))
    return f"the largest error is in mask {r}, box {_fmt(boxes[r])} ({labels[r]})"


def check_paste_masks_in_image(ex):
    from mrcnn_np.model.transform import paste_masks_in_image as library_paste

    paste = function(ex, "paste_masks_in_image")
    note = None
    for label, masks, boxes, labels, image_shape, padding in _paste_cases():
        case = (f"paste_masks_in_image(masks {shape_str(masks.shape)}, boxes {shape_str(boxes.shape)}, "
                f"image_shape={image_shape}, padding={padding}) [{label}]")
        got = _call(ex, paste, (masks.copy(), boxes.copy(), image_shape), case, _paste_crash_hint,
                    kwargs=dict(padding=padding))
        references = [("mrcnn_np.model.transform.paste_masks_in_image",
                       library_paste(masks, boxes, image_shape, padding=padding))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.roi_heads")
        if modules:
            torch, roi_heads = modules
            references.append(("torchvision paste_masks_in_image", roi_heads.paste_masks_in_image(
                torch.tensor(masks), torch.tensor(boxes), image_shape, padding=padding).numpy()))
        for reference, expected in references:
            try:
                assert_close(got, expected, f"{case} vs {reference}", RTOL)
            except AssertionError as error:
                lines = str(error)
                if len(boxes) and np.shape(got) == expected.shape:
                    lines += "\n" + _worst_mask(got, expected, boxes, labels)
                raise _hinted(AssertionError(lines),
                              _paste_hint(got, masks, boxes, image_shape, padding, expected)) from None
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _shape_masks(rng, G, H, W):
    """(G, H, W) uint8 masks of random ellipses, rectangles and triangles, and their (G, 4) boxes."""
    y, x = np.mgrid[0:H, 0:W] + 0.5
    masks, boxes = [], []
    for g in range(G):
        x1, y1 = rng.uniform(0, 0.6 * W), rng.uniform(0, 0.6 * H)
        x2, y2 = x1 + rng.uniform(0.25, 0.4) * W, y1 + rng.uniform(0.25, 0.4) * H
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
        kind = g % 3
        if kind == 0:
            mask = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
        elif kind == 1:
            mask = inside
        else:
            mask = inside & ((x - x1) / (x2 - x1) + (y - y1) / (y2 - y1) <= 1)  # a right triangle: not symmetric
        masks.append(mask.astype(np.uint8))
        boxes.append([x1, y1, x2, y2])
    return np.stack(masks), np.array(boxes)


def _jittered(rng, boxes, sigma):
    """``boxes`` (R, 4) with normal noise on every corner, at least 2 px wide and high."""
    boxes = boxes + rng.normal(0.0, sigma, boxes.shape)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 2.0)
    return boxes


def _on_edge(mask):
    """A box of 0.4 x 0.3 px just left of the first pixel where ``mask`` (H, W) steps from 1 to 0 along x:
    read as 1 x 1 px (aligned=False), it reaches across the step."""
    y, x = (int(v[0]) for v in np.nonzero((mask[:, :-1] == 1) & (mask[:, 1:] == 0)))
    return [x + 0.1, y + 0.2, x + 0.5, y + 0.5]


def _target_cases():
    """(label, gt_masks (G, H, W) uint8, proposals (R, 4), a label per proposal, matched_idxs (R,), M)."""
    rng = np.random.default_rng(53)
    gt_masks, gt_boxes = _shape_masks(rng, 3, 48, 64)
    matched = np.array([0, 1, 2, 2, 0, 1, 2, 0, 1, 2])
    proposals = _jittered(rng, gt_boxes[matched], 3.0)
    labels = ["its object's box, jittered"] * 10
    crafted = [("partly outside (top-left)", [-6.5, -4.2, 20.3, 15.8]), ("partly outside (bottom-right)",
               [50.2, 35.6, 71.4, 55.1]), ("tiny: 0.4 x 0.3 px, on its object's edge", _on_edge(gt_masks[0])),
               ("larger than the image (3 x 2 sample points per bin)", [-5.0, -3.0, 70.0, 52.0]),
               ("thin: 0.6 px wide", [30.2, 5.5, 30.8, 40.5])]
    for i, (name, box) in enumerate(crafted):
        proposals[5 + i] = box
        labels[5 + i] = name
    yield "3 masks (48, 64), M = 28", gt_masks, proposals, labels, matched, 28
    gt_masks, gt_boxes = _shape_masks(rng, 2, 30, 50)
    matched = np.array([1, 0, 1, 0, 0, 1])
    yield ("2 masks (30, 50), M = 14", gt_masks, _jittered(rng, gt_boxes[matched], 2.0),
           ["its object's box, jittered"] * 6, matched, 14)
    yield "no proposals: (0, 4)", gt_masks, np.zeros((0, 4)), [], np.zeros(0, dtype=np.int64), 28


def _target_axis(start, length, bins, size, offset=0.0, min_one=True, grid="ceil"):
    """(bins, size) summed bilinear weights of each bin's sample points along one axis, and the grid."""
    start -= offset
    if min_one:
        length = max(length, 1.0)
    g = grid if isinstance(grid, int) else int({"ceil": math.ceil, "round": round, "floor": math.floor}[grid](
        length / bins))
    weights = np.zeros((bins, size))
    for p in range(bins):
        for i in range(g):
            t = start + p * length / bins + (i + 0.5) * length / bins / g
            if t < -1.0 or t > size:
                continue
            t = max(t, 0.0)
            low = int(t)
            if low >= size - 1:
                low = high = size - 1
                t = float(low)
            else:
                high = low + 1
            weights[p, low] += 1.0 - (t - low)
            weights[p, high] += t - low
    return weights, g


def _targets_variant(gt_masks, proposals, matched_idxs, M, aligned=False, min_one=True, grid="ceil",
                     transpose=False, first_mask=False, threshold=False, swap_xy=False):
    """torchvision's project_masks_on_boxes, or with one deliberate mistake (for hints)."""
    _, H, W = gt_masks.shape
    out = np.zeros((len(proposals), M, M))
    offset = 0.5 if aligned else 0.0
    for r, (x1, y1, x2, y2) in enumerate(proposals):
        if swap_xy:
            x1, y1, x2, y2 = y1, x1, y2, x2
        mask = gt_masks[0 if first_mask else matched_idxs[r]].astype(np.float64)
        Wy, g_h = _target_axis(y1, y2 - y1, M, H, offset, min_one and not aligned, grid)
        Wx, g_w = _target_axis(x1, x2 - x1, M, W, offset, min_one and not aligned, grid)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = Wy @ mask @ Wx.T / (g_h * g_w)  # 0 / 0 where a rounded-down grid has no point (as yours)
    if transpose:
        out = out.transpose(0, 2, 1)
    return (out >= 0.5).astype(np.float64) if threshold else out


TARGET_HINTS = [
    (dict(aligned=True), "aligned=False (torchvision's project_masks_on_boxes): no half-pixel shift, and a box is at "
                         "least 1 x 1 pixel"),
    (dict(min_one=False), "aligned=False reads a box smaller than a pixel as 1 pixel: roi_w = max(x2 - x1, 1), "
                          "roi_h = max(y2 - y1, 1)"),
    (dict(grid=2), "sampling_ratio is -1 here (adaptive: ceil(roi_h / M) x ceil(roi_w / M) points per bin), not 2 as "
                   "in the heads' MultiScaleRoIAlign"),
    (dict(grid=1), "sampling_ratio is -1 (adaptive): ceil(roi_h / M) x ceil(roi_w / M) points per bin, not one"),
    (dict(grid="round"), "the adaptive grid rounds up: ceil(roi_h / M), not round"),
    (dict(grid="floor"), "the adaptive grid rounds up: ceil(roi_h / M), not floor or int()"),
    (dict(transpose=True), "the targets are transposed: out[r, i, j] is bin row i (along y), column j (along x)"),
    (dict(first_mask=True), "each proposal reads its own matched object's mask: gt_masks[matched_idxs[r]]"),
    (dict(threshold=True), "do not threshold the targets: they are RoIAlign's fractions in [0, 1] (the BCE takes "
                           "soft targets)"),
    (dict(swap_xy=True), "a proposal is x1, y1, x2, y2: x (columns) first"),
]


def _targets_hint(got, gt_masks, proposals, matched_idxs, M, expected):
    try:
        received = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if received.shape != expected.shape:
        if received.ndim == 3 and received.shape[0] == len(proposals) and received.shape[1:] != (M, M):
            return f"use the argument M: the targets are (R, M, M), here M = {M}"
        if received.shape == (len(proposals), 1, M, M):
            return "return (R, M, M): drop RoIAlign's channel axis"
        return None
    variants = [(_targets_variant(gt_masks, proposals, matched_idxs, M, **kwargs), hint)
                for kwargs, hint in TARGET_HINTS]
    return _first_hint(received, expected, variants)


def _targets_crash_hint(exc):
    if isinstance(exc, IndexError):
        return ("gt_masks holds one mask per object (G of them): index it with matched_idxs[r], not with the "
                "proposal's index r")
    return None


def check_mask_targets(ex):
    from mrcnn_np.model.roi_heads import project_masks_on_boxes

    mask_targets = function(ex, "mask_targets")
    note = None
    for label, gt_masks, proposals, labels, matched_idxs, M in _target_cases():
        case = (f"mask_targets(gt_masks {shape_str(gt_masks.shape)} uint8, proposals {shape_str(proposals.shape)}, "
                f"matched_idxs {shape_str(matched_idxs.shape)}, M={M}) [{label}]")
        got = _call(ex, mask_targets, (gt_masks.copy(), proposals.copy(), matched_idxs.copy()), case,
                    _targets_crash_hint, kwargs=dict(M=M))
        references = [("mrcnn_np.model.roi_heads.project_masks_on_boxes",
                       project_masks_on_boxes(gt_masks, proposals, matched_idxs, M))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.roi_heads")
        if modules:
            torch, roi_heads = modules
            references.append(("torchvision project_masks_on_boxes", roi_heads.project_masks_on_boxes(
                torch.tensor(gt_masks), torch.tensor(proposals), torch.tensor(matched_idxs), M).numpy()))
        for reference, expected in references:
            try:
                assert_close(got, expected, f"{case} vs {reference}", RTOL)
            except AssertionError as error:
                lines = str(error)
                if len(proposals) and np.shape(got) == expected.shape:
                    lines += "\n" + _worst_mask(got, expected, proposals, labels).replace("mask", "target", 1)
                raise _hinted(AssertionError(lines),
                              _targets_hint(got, gt_masks, proposals, matched_idxs, M, expected)) from None
    return note


# --- task (d) ----------------------------------------------------------------------------------
def _loss_case(rng, proposals_per_image, K, M, H=40, W=56, extreme=False):
    """The inputs of maskrcnn_loss (per-image lists) and of mask_loss (concatenated)."""
    from mrcnn_np.model.roi_heads import project_masks_on_boxes

    proposals, gt_masks, gt_labels, matched = [], [], [], []
    for R in proposals_per_image:
        G = 3
        masks, boxes = _shape_masks(rng, G, H, W)
        idx = rng.integers(0, G, R)
        proposals.append(_jittered(rng, boxes[idx], 2.0))
        gt_masks.append(masks)
        gt_labels.append(rng.integers(1, K, G))
        matched.append(idx)
    total = sum(proposals_per_image)
    mask_logits = rng.normal(0.0, 2.0, (total, K, M, M))
    labels = np.concatenate([g[i] for g, i in zip(gt_labels, matched, strict=True)]).astype(np.int64)
    if extreme and total:
        r, y, x = rng.integers(0, total, 40), rng.integers(0, M, 40), rng.integers(0, M, 40)
        mask_logits[r, labels[r], y, x] = rng.choice([-50.0, -42.0, 45.0, 50.0], 40)
    targets = [project_masks_on_boxes(m, p, i, M) for m, p, i in zip(gt_masks, proposals, matched, strict=True)]
    learner = dict(mask_logits=mask_logits, labels=labels, mask_targets=np.concatenate(targets))
    lists = dict(mask_logits=mask_logits, proposals=proposals, gt_masks=gt_masks, gt_labels=gt_labels,
                 mask_matched_idxs=matched)
    return learner, lists


def _loss_cases():
    rng = np.random.default_rng(54)
    yield "2 images, 5 + 7 positive RoIs, 4 classes, M = 28", *_loss_case(rng, [5, 7], 4, 28)
    yield ("1 image, 6 positive RoIs, 3 classes, M = 14, mask logits as large as +-50",
           *_loss_case(rng, [6], 3, 14, extreme=True))
    yield "2 images without positive RoIs (R = 0): loss 0", *_loss_case(rng, [0, 0], 3, 28)


def _bce(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _loss_variants(mask_logits, labels, mask_targets):
    """(value, hint) of recognised mistakes; NaN where a mistake has no value here."""
    R = len(labels)
    x, t = mask_logits, mask_targets
    picked = x[np.arange(R), labels]  # (R, M, M)

    def mean(values):
        return values.sum() / values.size if values.size else np.nan

    with np.errstate(all="ignore"):
        probs = _softmax(x, axis=1)[np.arange(R), labels] if R else np.zeros((0,))
        variants = [
            (mean(_bce(x, t[:, None])), "only the ground-truth class's channel counts: mask_logits[np.arange(R), "
                                        "labels], not every class's mask (Mask R-CNN decouples mask and class)"),
            (mean(_bce(x[np.arange(R), labels - 1], t)) if R else np.nan,
             "channel k is class k, the background included (channel 0): use labels as they are, not labels - 1"),
            (mean(_bce(x[:, labels], t)) if R else np.nan,
             "mask_logits[:, labels] is (R, R, M, M): pick one channel per RoI with mask_logits[np.arange(R), labels]"),
            (mean(-(t * np.log(probs) + (1 - t) * np.log1p(-probs))) if R else np.nan,
             "a per-pixel sigmoid of the ground-truth class's logit, not a softmax over the classes: in Mask R-CNN the "
             "classes do not compete for a pixel"),
            (_bce(picked, t).sum(), "the loss is a mean over the R x M x M pixels, not a sum"),
            (_bce(picked, t).mean(axis=(1, 2)).sum() if R else np.nan, "average over the RoIs too: a mean over all "
                                                                        "R x M x M pixels"),
            (mean(_bce(picked, (t >= 0.5).astype(np.float64))), "use the targets as they are (fractions), do not "
                                                                 "threshold them"),
        ]
    return variants


def _loss_hint(got, expected, variants):
    try:
        value = float(np.asarray(got, dtype=np.float64))
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value):
        if expected == 0.0:
            return ("with no positive RoI the loss is 0 (torchvision returns mask_logits.sum() * 0), not a mean over "
                    "nothing")
        return ("the loss is not finite: log(sigmoid(x)) overflows for large |x|; use max(x, 0) - x * t + "
                "log(1 + exp(-|x|))")
    for variant, hint in variants:
        if np.isfinite(variant) and abs(value - variant) <= 1e-9 * max(abs(variant), 1e-300) \
                and abs(variant - expected) > 1e-9 * abs(expected):
            return hint
    return None


def _assert_close_scalar(received, expected, what):
    """Fail unless ``received`` is one number within RTOL of ``expected`` (absolutely, when it is 0)."""
    if received is None:
        raise AssertionError(f"{what}:\nexpected a float, got None (a missing return?)")
    try:
        value = np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected a float, got {type(received).__name__}") from None
    if value.shape != ():
        raise AssertionError(f"{what}:\nexpected a float (one number), got an array of shape {shape_str(value.shape)}")
    allowed = RTOL * abs(expected) if expected != 0 else RTOL
    if not abs(float(value) - expected) <= allowed:  # NaN fails
        raise AssertionError(f"{what}: values differ\nexpected {expected:.10g}, got {float(value):.10g} "
                             f"(abs error {abs(float(value) - expected):.3g}, allowed {allowed:.1e})")


def check_mask_loss(ex):
    from mrcnn_np.model.roi_heads import maskrcnn_loss

    mask_loss = function(ex, "mask_loss")
    note = None
    for label, learner, lists in _loss_cases():
        R, K, M, _ = learner["mask_logits"].shape
        case = (f"mask_loss(mask_logits ({R}, {K}, {M}, {M}), labels ({R},), mask_targets ({R}, {M}, {M})) "
                f"[{label}]")
        got = _call(ex, mask_loss, tuple(v.copy() for v in learner.values()), case)
        references = [("mrcnn_np.model.roi_heads.maskrcnn_loss", float(maskrcnn_loss(**lists).item()))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.roi_heads")
        if modules:
            torch, roi_heads = modules
            as_tensors = {k: torch.tensor(v) if isinstance(v, np.ndarray) else [torch.tensor(a) for a in v]
                          for k, v in lists.items()}
            references.append(("torchvision maskrcnn_loss", roi_heads.maskrcnn_loss(**as_tensors).item()))
        for reference, expected in references:
            try:
                _assert_close_scalar(got, expected, f"{case} vs {reference}")
            except AssertionError as error:
                raise _hinted(error, _loss_hint(got, expected, _loss_variants(**learner))) from None
    return note


TASKS = [
    Task("postprocess_detections", "(a) softmax, decode, clip, filter, NMS per class, top-k",
         check_postprocess_detections),
    Task("paste_masks_in_image", "(b) 28x28 masks resized into their boxes in the image", check_paste_masks_in_image),
    Task("mask_targets", "(c) RoIAlign of the matched ground-truth masks", check_mask_targets),
    Task("mask_loss", "(d) BCE on the ground-truth class's mask", check_mask_loss),
]
