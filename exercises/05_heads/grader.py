"""Grader of exercise 05: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases. Detections are compared one by one, in order: labels
exactly, boxes and scores to 1e-10 of the reference's largest value; pasted masks, mask
targets and the loss to 1e-10 as well. The references are mrcnn_np's
``RoIHeads.postprocess_detections``, ``paste_masks_in_image``, ``project_masks_on_boxes``
and ``maskrcnn_loss`` and torchvision's functions of the same names. The gradients of the box
and mask losses are compared with mrcnn_np's autograd and torch autograd through torchvision's
``fastrcnn_loss`` and ``maskrcnn_loss`` (to 1e-10), and with central differences of the loss.

Every detection case has at most 1,000 candidate boxes (R x (K - 1)), so that torchvision's
``batched_nms`` takes its "coordinate trick" path: one NMS over all classes' boxes shifted
apart, whose stable sort orders equal scores by candidate index (proposal-major). Its
per-class path (above 1,000 boxes on CPU) orders equal scores with an unstable sort.

When a result is wrong in a way the grader recognises (one of the mistakes in
``mistakes.py``, or a wrong shape or order), the message ends with a hint.
"""

import re

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, caller, compare, for_each_case, function, references, shape_str
from mrcnn_np.exercises import as_array as _as_array
from mrcnn_np.exercises import as_tuple as _as_tuple
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import assert_close_scalar as _assert_close_scalar
from mrcnn_np.exercises import assert_gradient as _assert_gradient
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import matches as _matches

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)



# --- task (a) ----------------------------------------------------------------------------------
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


def _detections_hint(got, expected, call):
    """The hint of the mistake ``got`` (boxes, scores, labels) reproduces, or of a wrong order."""
    hint = MISTAKES.hint("postprocess_detections", got, expected, call)
    if hint:
        return hint
    try:  # (D, 6) rows: box, score, label
        rows, expected_rows = (np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(d[1]), -1) for a in d],
                                              axis=1) for d in (got, expected))
    except (TypeError, ValueError, IndexError):
        return None
    if rows.shape == expected_rows.shape and _matches(np.unique(rows, axis=0), np.unique(expected_rows, axis=0)):
        return ("the right detections in the wrong order: by decreasing score, equal scores in candidate order "
                "(proposal r, class k: r * (K - 1) + k - 1)")
    return None


def _describe_detection(boxes, scores, labels, i):
    return f"label {int(labels[i])}, score {scores[i]:.6g}, box {_fmt(boxes[i])}"


def _compare_detections(got, expected, what):
    """Fail unless ``got`` (boxes, scores, labels) holds ``expected``'s detections in the same order."""
    e_boxes, e_scores, e_labels = (np.asarray(a) for a in expected)
    D = len(e_scores)
    boxes, scores, labels = (_as_array(a, shape, f"{name} of {what}", dtype=np.float64) for a, shape, name in zip(
        got, [(D, 4), (D,), (D,)], ["boxes", "scores", "labels"], strict=True))
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
    dtype = getattr(got[2], "dtype", None)
    if dtype != np.int64:
        hint = "\nhint: labels are class indices: .astype(np.int64)" if dtype is not None else ""
        raise AssertionError(f"labels of {what}:\nexpected int64 labels, got "
                             f"{dtype if dtype is not None else type(got[2]).__name__}{hint}")


def _library_detections(kwargs):
    from mrcnn_np.config import MaskRCNNConfig
    from mrcnn_np.model.roi_heads import RoIHeads

    parts = dict.fromkeys(("box_roi_pool", "box_head", "box_predictor", "mask_roi_pool", "mask_head", "mask_predictor"))
    heads = RoIHeads.from_config(MaskRCNNConfig(), **parts, score_thresh=kwargs["score_thresh"],
                                 nms_thresh=kwargs["nms_thresh"], detections_per_img=kwargs["detections_per_img"])
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


def check_postprocess_detections(ex, label, kwargs):
    R, K = kwargs["class_logits"].shape
    case = (f"postprocess_detections(class_logits ({R}, {K}), box_regression ({R}, {4 * K}), proposals ({R}, 4), "
            f"image_shape={kwargs['image_shape']}, score_thresh={kwargs['score_thresh']}, "
            f"nms_thresh={kwargs['nms_thresh']}, detections_per_img={kwargs['detections_per_img']}) [{label}]")
    call = caller(**kwargs)
    got = _as_tuple(_call(ex, call, (function(ex, "postprocess_detections"),), case), 3, case,
                   "(boxes (D, 4), scores (D,), labels (D,))")
    refs, note = references(("mrcnn_np RoIHeads.postprocess_detections", _library_detections(kwargs)),
                            ("torch", "torchvision.models.detection.roi_heads"),
                            lambda *modules: ("torchvision RoIHeads.postprocess_detections",
                                              _torch_detections(*modules, kwargs)))
    compare(got, refs, lambda got, expected, name: _compare_detections(got, expected, f"{case}\nvs {name}"),
            lambda expected: _detections_hint(got, expected, call))
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


def _paste_hint(got, expected, call):
    """A hint for a wrong shape or transposed masks, else the hint of the mistake ``got`` reproduces."""
    R, _, H, W = expected.shape
    if np.shape(got) == (R, H, W):
        return "return (R, 1, H, W): keep the channel axis (one mask per box)"
    if np.shape(got) == (R, 1, W, H) != expected.shape:
        return "image_shape is (height, width): the canvas is (H, W)"
    if H == W and _matches(got, expected.transpose(0, 1, 3, 2)) and not _matches(got, expected):
        return "the pasted masks are transposed: rows are y, columns x"
    return MISTAKES.hint("paste_masks_in_image", got, expected, call)


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


def _check_against_references(ex, task, case, call, crash_hint, library, torchvision_call, row, hint):
    """The learner's ``task`` run by ``call`` against mrcnn_np's ``library`` function (run the same
    way) and, when installed, ``torchvision_call(torch, roi_heads)``; returns the report's note."""
    got = _call(ex, call, (function(ex, task),), case, crash_hint)
    refs, note = references((f"{library.__module__}.{library.__name__}", call(library)),
                            ("torch", "torchvision.models.detection.roi_heads"),
                            lambda torch, roi_heads: (f"torchvision {library.__name__}",
                                                      torchvision_call(torch, roi_heads).numpy()))
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", RTOL, row=row),
            lambda expected: hint(got, expected))
    return note


def check_paste_masks_in_image(ex, label, masks, boxes, labels, image_shape, padding):
    from mrcnn_np.model.transform import paste_masks_in_image as library_paste

    case = (f"paste_masks_in_image(masks {shape_str(masks.shape)}, boxes {shape_str(boxes.shape)}, "
            f"image_shape={image_shape}, padding={padding}) [{label}]")
    call = caller(masks, boxes, image_shape, padding=padding)
    return _check_against_references(
        ex, "paste_masks_in_image", case, call, _paste_crash_hint, library_paste,
        lambda torch, roi_heads: roi_heads.paste_masks_in_image(torch.tensor(masks), torch.tensor(boxes), image_shape,
                                                                padding=padding),
        row=lambda r: f"mask {r}, box {_fmt(boxes[r])} ({labels[r]})",
        hint=lambda got, expected: _paste_hint(got, expected, call))


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


def _targets_hint(got, expected, M, call):
    """A hint for a wrong shape, else the hint of the mistake ``got`` reproduces."""
    R = len(expected)
    shape = np.shape(got)
    if len(shape) == 3 and shape[0] == R and shape[1:] != (M, M):
        return f"use the argument M: the targets are (R, M, M), here M = {M}"
    if shape == (R, 1, M, M):
        return "return (R, M, M): drop RoIAlign's channel axis"
    return MISTAKES.hint("mask_targets", got, expected, call)


def _targets_crash_hint(exc):
    if isinstance(exc, IndexError):
        return ("gt_masks holds one mask per object (G of them): index it with matched_idxs[r], not with the "
                "proposal's index r")
    return None


def check_mask_targets(ex, label, gt_masks, proposals, labels, matched_idxs, M):
    from mrcnn_np.model.roi_heads import project_masks_on_boxes

    case = (f"mask_targets(gt_masks {shape_str(gt_masks.shape)} uint8, proposals {shape_str(proposals.shape)}, "
            f"matched_idxs {shape_str(matched_idxs.shape)}, M={M}) [{label}]")
    call = caller(gt_masks, proposals, matched_idxs, M=M)
    return _check_against_references(
        ex, "mask_targets", case, call, _targets_crash_hint, project_masks_on_boxes,
        lambda torch, roi_heads: roi_heads.project_masks_on_boxes(
            *map(torch.tensor, (gt_masks, proposals, matched_idxs)), M),
        row=lambda r: f"target {r}, box {_fmt(proposals[r])} ({labels[r]})",
        hint=lambda got, expected: _targets_hint(got, expected, M, call))


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


def _loss_hint(got, expected, call):
    """A hint for a loss that is not finite, else the hint of the mistake ``got`` reproduces."""
    try:
        finite = np.isfinite(float(np.asarray(got, dtype=np.float64)))
    except (TypeError, ValueError):
        return None
    if not finite and expected == 0.0:
        return "with no positive RoI the loss is 0 (torchvision returns mask_logits.sum() * 0), not a mean over nothing"
    if not finite:
        return ("the loss is not finite: log(sigmoid(x)) overflows for large |x|; use max(x, 0) - x * t + "
                "log(1 + exp(-|x|))")
    return MISTAKES.hint("mask_loss", got, expected, call)


def check_mask_loss(ex, label, learner, lists):
    from mrcnn_np.model.roi_heads import maskrcnn_loss

    R, K, M, _ = learner["mask_logits"].shape
    case = f"mask_loss(mask_logits ({R}, {K}, {M}, {M}), labels ({R},), mask_targets ({R}, {M}, {M})) [{label}]"
    call = caller(*learner.values())
    got = _call(ex, call, (function(ex, "mask_loss"),), case)

    def torch_loss(torch, roi_heads):
        tensors = {k: torch.tensor(v) if isinstance(v, np.ndarray) else [torch.tensor(a) for a in v]
                   for k, v in lists.items()}
        return "torchvision maskrcnn_loss", roi_heads.maskrcnn_loss(**tensors).item()

    refs, note = references(("mrcnn_np.model.roi_heads.maskrcnn_loss", float(maskrcnn_loss(**lists).item())),
                            ("torch", "torchvision.models.detection.roi_heads"), torch_loss)
    compare(got, refs, lambda got, expected, name: _assert_close_scalar(got, expected, f"{case} vs {name}", RTOL),
            lambda expected: _loss_hint(got, expected, call))
    return note


# --- task (e) ----------------------------------------------------------------------------------
def _box_loss_case(rng, rois_per_image, K, spread, positive=0.25):
    """The inputs of box_loss_backward (concatenated over the images, as the head sees them) and of
    fastrcnn_loss (per-image lists, with class logits the box loss does not read)."""
    R = sum(rois_per_image)
    labels = np.where(rng.uniform(size=R) < positive, rng.integers(1, K, R), 0).astype(np.int64)
    box_regression = rng.normal(0.0, spread, (R, 4 * K))
    regression_targets = rng.normal(0.0, spread, (R, 4))
    learner = dict(box_regression=box_regression, labels=labels, regression_targets=regression_targets)
    split = np.cumsum(rois_per_image)[:-1]
    lists = dict(class_logits=rng.normal(0.0, 1.0, (R, K)), box_regression=box_regression,
                 labels=np.split(labels, split), regression_targets=np.split(regression_targets, split))
    return learner, lists


def _box_loss_cases():
    rng = np.random.default_rng(55)
    learner, lists = _box_loss_case(rng, [16, 16], 5, 0.15)
    pos = np.flatnonzero(learner["labels"] > 0)[:2]
    cols = 4 * learner["labels"][pos][:, None] + np.arange(4)  # (2, 4)
    learner["box_regression"][pos[:, None], cols] = learner["regression_targets"][pos]  # d = 0 exactly
    yield ("2 images, 16 + 16 sampled RoIs (about 25 % positive), 5 classes, deltas of the order of beta = 1/9 "
           "(both branches); two positives predicted exactly (d = 0)", learner, lists)
    yield ("1 image, 24 sampled RoIs (half positive), 21 classes, deltas far beyond beta (mostly the L1 branch)",
           *_box_loss_case(rng, [24], 21, 1.0, positive=0.5))
    yield "1 image, 12 sampled RoIs, all background: no box is trained", *_box_loss_case(rng, [12], 3, 0.5,
                                                                                          positive=0.0)


def _library_box_loss(lists, box_regression, requires_grad=False):
    """mrcnn_np's fastrcnn_loss box loss (a Tensor) on ``box_regression``, and the Tensor it was given."""
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.model.roi_heads import fastrcnn_loss

    x = Tensor(box_regression.copy(), requires_grad=requires_grad)
    return fastrcnn_loss(lists["class_logits"], x, lists["labels"], lists["regression_targets"])[1], x


def _library_box_loss_grad(lists):
    loss, x = _library_box_loss(lists, lists["box_regression"], requires_grad=True)
    loss.backward()
    return x.grad


def _torch_box_loss_grad(torch, roi_heads, lists):
    x = torch.tensor(lists["box_regression"], requires_grad=True)
    roi_heads.fastrcnn_loss(torch.tensor(lists["class_logits"]), x, [torch.tensor(a) for a in lists["labels"]],
                            [torch.tensor(a) for a in lists["regression_targets"]])[1].backward()
    return x.grad.numpy()


def _gradient_hint(task, got, expected, call):
    """A hint for a gradient of the wrong shape, else the hint of the mistake ``got`` reproduces."""
    if np.shape(got) != expected.shape and np.size(got) == expected.size:
        return f"return the gradient in the input's shape {shape_str(expected.shape)}"
    if np.shape(got) != expected.shape:
        return (f"the gradient has the input's shape {shape_str(expected.shape)}, with zeros where the loss does not "
                "read the input")
    return MISTAKES.hint(task, got, expected, call)


def _check_gradient(ex, task, case, call, refs_library, torch_reference, loss, x, **gradient):
    """The learner's gradient against mrcnn_np's autograd, torch autograd and central differences of ``loss``."""
    got = _call(ex, call, (function(ex, task),), case)

    def check(got, expected, name):
        _assert_close(got, expected, f"{case} vs {name}", RTOL)
        if name.startswith("mrcnn_np"):  # once: the judge that needs no reference implementation
            _assert_gradient(got, loss, x, f"{case}, the gradient", **gradient)

    refs, note = references(refs_library, ("torch", "torchvision.models.detection.roi_heads"), torch_reference)
    compare(got, refs, check, lambda expected: _gradient_hint(task, got, expected, call))
    return note


def check_box_loss_backward(ex, label, learner, lists):
    R, K4 = learner["box_regression"].shape
    case = f"box_loss_backward(box_regression ({R}, {K4}), labels ({R},), regression_targets ({R}, 4)) [{label}]"
    return _check_gradient(
        ex, "box_loss_backward", case, caller(*learner.values()),
        ("mrcnn_np.model.roi_heads.fastrcnn_loss (autograd)", _library_box_loss_grad(lists)),
        lambda torch, roi_heads: ("torch autograd through torchvision fastrcnn_loss",
                                  _torch_box_loss_grad(torch, roi_heads, lists)),
        lambda x: _library_box_loss(lists, x)[0].item(), learner["box_regression"], probes=None)


# --- task (f) ----------------------------------------------------------------------------------
def _library_mask_loss_grad(lists):
    from mrcnn_np.autograd import Tensor
    from mrcnn_np.model.roi_heads import maskrcnn_loss

    x = Tensor(lists["mask_logits"].copy(), requires_grad=True)
    maskrcnn_loss(x, *(lists[k] for k in ("proposals", "gt_masks", "gt_labels", "mask_matched_idxs"))).backward()
    return x.grad


def _torch_mask_loss_grad(torch, roi_heads, lists):
    x = torch.tensor(lists["mask_logits"], requires_grad=True)
    roi_heads.maskrcnn_loss(x, *([torch.tensor(a) for a in lists[k]] for k in
                                 ("proposals", "gt_masks", "gt_labels", "mask_matched_idxs"))).backward()
    return x.grad.numpy()


def _bce_of_the_true_class(learner):
    """The mask loss as a function of the mask logits alone (the targets fixed): mrcnn_np's
    binary_cross_entropy_with_logits of each RoI's ground-truth channel, mean."""
    from mrcnn_np.nn import functional as F

    labels, targets = learner["labels"], learner["mask_targets"]

    def loss(x):
        if len(labels) == 0:
            return 0.0
        return F.binary_cross_entropy_with_logits(x[np.arange(len(labels)), labels], targets).item()
    return loss


def check_mask_loss_backward(ex, label, learner, lists):
    R, K, M, _ = learner["mask_logits"].shape
    case = (f"mask_loss_backward(mask_logits ({R}, {K}, {M}, {M}), labels ({R},), mask_targets ({R}, {M}, {M})) "
            f"[{label}]")
    return _check_gradient(
        ex, "mask_loss_backward", case, caller(*learner.values()),
        ("mrcnn_np.model.roi_heads.maskrcnn_loss (autograd)", _library_mask_loss_grad(lists)),
        lambda torch, roi_heads: ("torch autograd through torchvision maskrcnn_loss",
                                  _torch_mask_loss_grad(torch, roi_heads, lists)),
        _bce_of_the_true_class(learner), learner["mask_logits"], probes=256, eps=1e-4)


TASKS = [
    Task("postprocess_detections", "(a) softmax, decode, clip, filter, NMS per class, top-k",
         for_each_case(_detection_cases, check_postprocess_detections)),
    Task("paste_masks_in_image", "(b) 28x28 masks resized into their boxes in the image",
         for_each_case(_paste_cases, check_paste_masks_in_image)),
    Task("mask_targets", "(c) RoIAlign of the matched ground-truth masks",
         for_each_case(_target_cases, check_mask_targets)),
    Task("mask_loss", "(d) BCE on the ground-truth class's mask", for_each_case(_loss_cases, check_mask_loss)),
    Task("box_loss_backward", "(e) the gradient of the box loss (smooth L1)",
         for_each_case(_box_loss_cases, check_box_loss_backward)),
    Task("mask_loss_backward", "(f) the gradient of the mask loss (BCE)",
         for_each_case(_loss_cases, check_mask_loss_backward)),
]
