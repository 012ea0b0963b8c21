"""Chapter 05 (the box and mask heads): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here, deliberately broken copies of the reference solution prove that each
classic mistake fails the task it belongs to and that the message names it; the grader's
crafted cases are checked to be what their labels say, and its own engines (the base of
its hints) to be torchvision's.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection import roi_heads as tv_roi_heads

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, PASS, TODO

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTER = "05_heads"
SOLUTION = EXERCISES / "solutions" / f"{CHAPTER}.py"
TASK_NAMES = ["postprocess_detections", "paste_masks_in_image", "mask_targets", "mask_loss"]


@functools.cache
def load_grader():
    return exercises.load_grader(EXERCISES / CHAPTER)


def grade_task(tmp_path, text, task):
    """The result of one task of the grader on the file holding ``text`` (faster than grading all four)."""
    path = tmp_path / "broken.py"
    path.write_text(text)
    module = exercises.load_module(path)
    (chosen,) = [t for t in load_grader().TASKS if t.name == task]
    return exercises.run_task(chosen, module)


def broken(replacements):
    """The solution with each (old, new) replacement made; every ``old`` must occur exactly once."""
    source = SOLUTION.read_text()
    for old, new in replacements:
        assert source.count(old) == 1, f"the solution changed: update this test's bug ({old!r})"
        source = source.replace(old, new)
    return source


EXACT = "exact coordinates, 8 proposals"
SUPPRESS = "order = rest[~(iou > iou_threshold)]"
DW = "dw = np.minimum(deltas[..., 2] / ww, clip)"
DH = "dh = np.minimum(deltas[..., 3] / wh, clip)"
CLIP_X = "    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)  # x1, x2\n"
CLIP_Y = "    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)  # y1, y2\n"
FLAT_BOXES = "boxes = boxes[:, 1:].reshape(-1, 4)"
FLAT_SCORES = "scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)"
FILTER = "keep = (scores > score_thresh) & (widths >= 1e-2) & (heights >= 1e-2)"
PER_CLASS = "kept.append(members[nms(boxes[members], scores[members], nms_thresh)])"
SORT_KEPT = "kept = np.sort(np.concatenate(kept))"
FINAL = 'kept = kept[np.argsort(-scores[kept], kind="stable")][:detections_per_img]'
RETURN_A = "return boxes[kept], scores[kept], labels[kept].astype(np.int64)"
SCALE = "scale = (M + 2 * padding) / M"
PAD = "padded = np.pad(masks[:, 0], ((0, 0), (padding, padding), (padding, padding)))"
TO_INT = "(int(v) for v in (ctr_x - half_w"
SRC = "src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)"
LOW = "low = np.floor(src).astype(np.int64)"
SIZE = "w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)"
MIN_ONE = "    length = max(length, 1.0)  # aligned=False: a box is at least 1 pixel long\n"
GRID = "grid = math.ceil(length / bins)"
TARGET = "out[r] = Wy @ mask @ Wx.T / (g_h * g_w)"
MATCHED = "mask = gt_masks[matched_idxs[r]].astype(np.float64)"
PICK = "x = mask_logits[np.arange(len(labels)), labels]"
BCE = "loss = np.maximum(x, 0) - x * mask_targets + np.log1p(np.exp(-np.abs(x)))"
MEAN = "return float(loss.mean())"

# name: ([(text in the solution, replacement), ...], the task that must fail, texts its message must contain)
BUGS = {
    # --- (a) postprocess_detections
    ">= in NMS": (
        [(SUPPRESS, SUPPRESS.replace(">", ">="))],
        "postprocess_detections", [EXACT, "expected 11 detections, got 9", "hint: NMS suppresses a box only when its "
                                                                           "IoU with a kept box is > nms_thresh"],
    ),
    "NMS over all classes together": (
        [("for label in np.unique(labels):", "for label in np.unique(labels)[:1]:"),
         ("members = np.nonzero(labels == label)[0]", "members = np.arange(len(labels))")],
        "postprocess_detections", ["hint: NMS runs within each class"],
    ),
    "no NMS": (
        [(PER_CLASS, "kept.append(members)")],
        "postprocess_detections", ["hint: no box was suppressed"],
    ),
    "no clamp": (
        [(DW, "dw = deltas[..., 2] / ww"), (DH, "dh = deltas[..., 3] / wh")],
        "postprocess_detections", ["4 tiny proposals with dw or dh beyond the clamp", "3 of 100 detections differ",
                                   "hint: clamp dw / ww and dh / wh from above"],
    ),
    "clamp before dividing by the weights": (
        [(DW, "dw = np.minimum(deltas[..., 2], clip) / ww"), (DH, "dh = np.minimum(deltas[..., 3], clip) / wh")],
        "postprocess_detections", ["hint: clamp after dividing by the weight"],
    ),
    "clamp from both sides": (
        [(DW, "dw = np.clip(deltas[..., 2] / ww, -clip, clip)"), (DH, "dh = np.clip(deltas[..., 3] / wh, -clip, clip)")],
        "postprocess_detections", ["hint: dw and dh are clamped from above only"],
    ),
    "no weights": (
        [("    wx, wy, ww, wh = weights\n", "    wx, wy, ww, wh = 1.0, 1.0, 1.0, 1.0\n")],
        "postprocess_detections", ["hint: the box head's deltas are scaled by the weights (10, 10, 5, 5)"],
    ),
    "deltas read coordinate-major": (
        [("deltas = deltas.reshape(R, -1, 4)", "deltas = deltas.reshape(R, 4, -1).transpose(0, 2, 1)")],
        "postprocess_detections", ["hint: box_regression (R, 4K) holds class k's deltas in columns 4k..4k+3"],
    ),
    "no clip": (
        [(CLIP_X, ""), (CLIP_Y, "")],
        "postprocess_detections", ["hint: clip the boxes to the image"],
    ),
    "image_shape read as (width, height)": (
        [("    height, width = image_shape\n", "    width, height = image_shape\n")],
        "postprocess_detections", ["hint: image_shape is (height, width)"],
    ),
    "background kept": (
        [(FLAT_BOXES, "boxes = boxes.reshape(-1, 4)"), (FLAT_SCORES, "scores, labels = scores.reshape(-1), "
                                                                     "labels.reshape(-1)")],
        "postprocess_detections", ["label 0", "hint: drop the background"],
    ),
    "labels counted from 0": (
        [(RETURN_A, "return boxes[kept], scores[kept], labels[kept].astype(np.int64) - 1")],
        "postprocess_detections", ["expected label 1", "got label 0", "hint: labels are class indices 1..K-1"],
    ),
    "scores >= score_thresh": (
        [(FILTER, FILTER.replace("scores > score_thresh", "scores >= score_thresh"))],
        "postprocess_detections", [EXACT, "hint: keep scores > score_thresh, strictly"],
    ),
    "small boxes kept": (
        [(FILTER, "keep = scores > score_thresh")],
        "postprocess_detections", ["hint: drop boxes whose width or height is < 1e-2"],
    ),
    "sigmoid instead of softmax": (
        [("scores = softmax(class_logits)", "scores = 1 / (1 + np.exp(-class_logits))")],
        "postprocess_detections", ["hint: the scores are a softmax over the K classes"],
    ),
    "logits as scores": (
        [("scores = softmax(class_logits)", "scores = class_logits.copy()")],
        "postprocess_detections", ["hint: the scores are probabilities: softmax(class_logits)"],
    ),
    "softmax over the proposals": (
        [("e = np.exp(x - x.max(axis=-1, keepdims=True))", "e = np.exp(x - x.max(axis=0, keepdims=True))"),
         ("return e / e.sum(axis=-1, keepdims=True)", "return e / e.sum(axis=0, keepdims=True)")],
        "postprocess_detections", ["hint: softmax over the classes (axis 1"],
    ),
    "top detections_per_img before NMS": (
        [("    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]\n",
          "    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]\n"
          "    first = np.sort(np.argsort(-scores, kind='stable')[:detections_per_img])\n"
          "    boxes, scores, labels = boxes[first], scores[first], labels[first]\n")],
        "postprocess_detections", ["hint: keep the best detections_per_img after NMS, not before"],
    ),
    "no detections_per_img": (
        [(FINAL, FINAL.replace("[:detections_per_img]", ""))],
        "postprocess_detections", ["expected 100 detections, got", "hint: keep at most detections_per_img"],
    ),
    "ties class-major (kept indices not sorted)": (
        [(SORT_KEPT, "kept = np.concatenate(kept)")],
        "postprocess_detections", [EXACT, "first at detection 2", "hint: equal scores keep the candidates' order, "
                                                                  "proposal-major"],
    ),
    "ties reversed": (
        [('order = np.argsort(-scores, kind="stable")', 'order = np.argsort(scores, kind="stable")[::-1]'),
         (FINAL, 'kept = kept[np.argsort(scores[kept], kind="stable")[::-1]][:detections_per_img]')],
        "postprocess_detections", [EXACT, "hint: equal scores: the earlier candidate first"],
    ),
    "class after class, not sorted by score": (
        [(SORT_KEPT, "kept = np.concatenate(kept)"), (FINAL, "kept = kept[:detections_per_img]")],
        "postprocess_detections", ["hint: return the detections of all classes together by decreasing score"],
    ),
    "float labels": (
        [(RETURN_A, RETURN_A.replace("np.int64", "np.float64"))],
        "postprocess_detections", ["expected int64 labels, got float64", "hint: labels are class indices: "
                                                                         ".astype(np.int64)"],
    ),
    "a list instead of a tuple of three": (
        [(RETURN_A, "return boxes[kept], scores[kept]")],
        "postprocess_detections", ["expected a tuple (boxes (D, 4), scores (D,), labels (D,)), got tuple of length 2"],
    ),
    # --- (b) paste_masks_in_image
    "no padding, no expansion": (
        [(SCALE, "scale = 1.0"), (PAD, "padded = masks[:, 0]")],
        "paste_masks_in_image", ["vs mrcnn_np.model.transform.paste_masks_in_image: values differ",
                                 "the largest error is in mask", "hint: pad the mask with one pixel of zeros"],
    ),
    "padding without expansion": (
        [(SCALE, "scale = 1.0")],
        "paste_masks_in_image", ["hint: the padded mask is (M + 2) / M larger"],
    ),
    "expansion without padding": (
        [(PAD, "padded = masks[:, 0]")],
        "paste_masks_in_image", ["hint: the box grows by (M + 2) / M because the mask is padded"],
    ),
    "padding argument ignored": (
        [(SCALE, "scale = (M + 2) / M"), (PAD, "padded = np.pad(masks[:, 0], ((0, 0), (1, 1), (1, 1)))")],
        "paste_masks_in_image", ["padding=2", "hint: use the padding argument"],
    ),
    "corners rounded": (
        [(TO_INT, TO_INT.replace("int(v)", "round(v)"))],
        "paste_masks_in_image", ["hint: truncate the grown box's corners towards 0", "do not round them"],
    ),
    "corners floored": (
        [(TO_INT, TO_INT.replace("int(v)", "math.floor(v)"))],
        "paste_masks_in_image", ["hint: truncate towards 0 (int(-3.7) = -3), not floor"],
    ),
    "corners rounded up": (
        [(TO_INT, TO_INT.replace("int(v)", "math.ceil(v)"))],
        "paste_masks_in_image", ["hint: truncate the grown box's corners towards 0 (int()), not ceil"],
    ),
    "align_corners=True": (
        [("    scale = in_size / out_size\n    " + SRC,
          "    src = np.arange(out_size) * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)")],
        "paste_masks_in_image", ["hint: align_corners=False"],
    ),
    "source not clamped at 0": (
        [(SRC, "src = (np.arange(out_size) + 0.5) * scale - 0.5"), (LOW, LOW.replace("np.floor(src)", "src"))],
        "paste_masks_in_image", ["hint: clamp the source coordinate at 0"],
    ),
    "scale inverted": (
        [("    scale = in_size / out_size\n", "    scale = out_size / in_size\n")],
        "paste_masks_in_image", ["hint: scale = in_size / out_size"],
    ),
    "no + 1: a pixel short": (
        [(SIZE, "w, h = max(x2 - x1, 1), max(y2 - y1, 1)")],
        "paste_masks_in_image", ["raised ValueError", "at broken.py, line", "hint: both end pixels belong to the box"],
    ),
    "paste not clipped to the image": (
        [("        if x_stop > x_start and y_stop > y_start:\n"
          "            out[r, 0, y_start:y_stop, x_start:x_stop] = resized[y_start - y1 : y_stop - y1, x_start - x1 : "
          "x_stop - x1]\n", "        out[r, 0, y1 : y2 + 1, x1 : x2 + 1] = resized\n")],
        "paste_masks_in_image", ["raised ValueError", "hint: paste only the part of the box inside the image"],
    ),
    "no channel axis": (
        [("out = np.zeros((R, 1, im_h, im_w), dtype=masks.dtype)", "out = np.zeros((R, im_h, im_w), dtype=masks.dtype)"),
         ("out[r, 0, y_start:y_stop, x_start:x_stop]", "out[r, y_start:y_stop, x_start:x_stop]")],
        "paste_masks_in_image", ["expected shape (10, 1, 60, 80), got (10, 60, 80)", "hint: return (R, 1, H, W)"],
    ),
    "paste_masks_in_image imported from the library": (
        [("# --- task (c)", "from mrcnn_np.model.transform import paste_masks_in_image  # noqa: E402\n\n\n"
                            "# --- task (c)")],
        "paste_masks_in_image", ["imported from elsewhere"],
    ),
    # --- (c) mask_targets
    "targets aligned=True": (
        [(MIN_ONE, "    start -= 0.5  # aligned=True\n")],
        "mask_targets", ["vs mrcnn_np.model.roi_heads.project_masks_on_boxes: values differ",
                         "hint: aligned=False (torchvision's project_masks_on_boxes): no half-pixel shift"],
    ),
    "targets without the minimum size": (
        [(MIN_ONE, "")],
        "mask_targets", ["(tiny: 0.4 x 0.3 px, on its object's edge)", "hint: aligned=False reads a box smaller than a pixel as 1 pixel"],
    ),
    "sampling_ratio=2": (
        [(GRID, "grid = 2")],
        "mask_targets", ["hint: sampling_ratio is -1 here (adaptive", "not 2"],
    ),
    "sampling_ratio=1": (
        [(GRID, "grid = 1")],
        "mask_targets", ["hint: sampling_ratio is -1 (adaptive): ceil(roi_h / M) x ceil(roi_w / M) points per bin, "
                         "not one"],
    ),
    "adaptive grid rounded down": (
        [(GRID, "grid = int(length / bins)")],
        "mask_targets", ["hint: the adaptive grid rounds up: ceil(roi_h / M), not floor or int()"],
    ),
    "adaptive grid rounded": (
        [(GRID, "grid = round(length / bins)")],
        "mask_targets", ["hint: the adaptive grid rounds up: ceil(roi_h / M), not round"],
    ),
    "targets transposed": (
        [(TARGET, f"out[r] = ({TARGET.removeprefix('out[r] = ')}).T")],
        "mask_targets", ["hint: the targets are transposed"],
    ),
    "every proposal reads the first mask": (
        [(MATCHED, "mask = gt_masks[0].astype(np.float64)")],
        "mask_targets", ["hint: each proposal reads its own matched object's mask"],
    ),
    "masks indexed by the proposal": (
        [(MATCHED, "mask = gt_masks[r].astype(np.float64)")],
        "mask_targets", ["raised IndexError", "hint: gt_masks holds one mask per object"],
    ),
    "targets thresholded": (
        [(TARGET, f"out[r] = {TARGET.removeprefix('out[r] = ')} >= 0.5")],
        "mask_targets", ["hint: do not threshold the targets"],
    ),
    "box read as y1, x1, y2, x2": (
        [("Wy, g_h = axis_weights(y1, y2 - y1, M, H)", "Wy, g_h = axis_weights(x1, x2 - x1, M, H)"),
         ("Wx, g_w = axis_weights(x1, x2 - x1, M, W)", "Wx, g_w = axis_weights(y1, y2 - y1, M, W)")],
        "mask_targets", ["hint: a proposal is x1, y1, x2, y2"],
    ),
    "M ignored": (
        [("    _, H, W = gt_masks.shape\n", "    _, H, W = gt_masks.shape\n    M = 28\n")],
        "mask_targets", ["M=14", "expected shape (6, 14, 14), got (6, 28, 28)", "hint: use the argument M"],
    ),
    # --- (d) mask_loss
    "every class's mask in the loss": (
        [(PICK, "x, mask_targets = mask_logits, mask_targets[:, None]")],
        "mask_loss", ["vs mrcnn_np.model.roi_heads.maskrcnn_loss: values differ",
                      "hint: only the ground-truth class's channel counts"],
    ),
    "channel labels - 1": (
        [(PICK, PICK.replace("labels]", "labels - 1]"))],
        "mask_loss", ["hint: channel k is class k, the background included"],
    ),
    "mask_logits[:, labels]": (
        [(PICK, "x = mask_logits[:, labels]")],
        "mask_loss", ["hint: mask_logits[:, labels] is (R, R, M, M)"],
    ),
    "softmax over the classes": (
        [(PICK + "  # (R, K, M, M) -> (R, M, M): one channel per RoI\n    " + BCE,
          "e = np.exp(mask_logits - mask_logits.max(axis=1, keepdims=True))\n"
          "    p = (e / e.sum(axis=1, keepdims=True))[np.arange(len(labels)), labels]\n"
          "    loss = -(mask_targets * np.log(p) + (1 - mask_targets) * np.log1p(-p))")],
        "mask_loss", ["hint: a per-pixel sigmoid of the ground-truth class's logit, not a softmax"],
    ),
    "a sum, not a mean": (
        [(MEAN, "return float(loss.sum())")],
        "mask_loss", ["hint: the loss is a mean over the R x M x M pixels, not a sum"],
    ),
    "a mean per RoI, summed": (
        [(MEAN, "return float(loss.mean(axis=(1, 2)).sum())")],
        "mask_loss", ["hint: average over the RoIs too"],
    ),
    "the naive BCE overflows": (
        [(BCE, "p = 1 / (1 + np.exp(-x))\n    loss = -(mask_targets * np.log(p) + (1 - mask_targets) * np.log(1 - p))")],
        "mask_loss", ["mask logits as large as +-50", "hint: the loss is not finite"],
    ),
    "no positive RoI: mean of nothing": (
        [("    if len(labels) == 0:\n        return 0.0", "    if False:\n        return 0.0")],
        "mask_loss", ["without positive RoIs", "got nan", "hint: with no positive RoI the loss is 0"],
    ),
    "targets thresholded in the loss": (
        [(BCE, BCE.replace("x * mask_targets", "x * (mask_targets >= 0.5)"))],
        "mask_loss", ["hint: use the targets as they are (fractions)"],
    ),
    "an array, not a float": (
        [(MEAN, "return loss.mean(axis=(1, 2))")],
        "mask_loss", ["expected a float (one number), got an array of shape (12,)"],
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # broken copies overflow, log(0), take the mean of nothing
@pytest.mark.parametrize("bug", BUGS)
def test_a_broken_solution_fails_its_task(bug, tmp_path):
    replacements, task, texts = BUGS[bug]
    result = grade_task(tmp_path, broken(replacements), task)
    assert result.status == FAIL, exercises.format_report([result])
    for text in texts:
        assert text in result.message, result.message


def test_every_hint_of_the_grader_is_shown_by_a_broken_copy():
    """Each hint the grader can give is expected, word for word, by one of the bugs above."""
    grader = load_grader()
    (_, learner, _), *_ = grader._loss_cases()
    hints = ([h for _, h in grader.DETECTION_HINTS] + [h for _, h in grader.PASTE_HINTS]
             + [h for _, h in grader.TARGET_HINTS] + [h for _, h in grader._loss_variants(**learner)])
    expected = [text.removeprefix("hint: ") for _, _, texts in BUGS.values() for text in texts
                if text.startswith("hint: ")]
    unshown = [h for h in hints if not any(h.startswith(text) for text in expected)]
    assert not unshown, unshown


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(broken(BUGS["corners rounded"][0]))
    results = {r.name: r for r in exercises.grade("05", path, exercises_dir=EXERCISES)}
    assert [name for name, r in results.items() if r.status == FAIL] == ["paste_masks_in_image"]
    assert all(results[name].status == PASS for name in TASK_NAMES if name != "paste_masks_in_image")


def test_the_helpers_are_needed_when_they_are_used(tmp_path):
    source = broken([("    order = np.argsort(-scores, kind=\"stable\")\n",
                      '    raise NotImplementedError("helper for task (a): write nms")\n')])
    result = grade_task(tmp_path, source, "postprocess_detections")
    assert result.status == TODO and "write nms" in result.message
    source = broken([("    x_low, x_high, fx = source_taps(image.shape[1], out_w)\n",
                      '    raise NotImplementedError("helper for task (b): write resize_bilinear")\n')])
    result = grade_task(tmp_path, source, "paste_masks_in_image")
    assert result.status == TODO and "write resize_bilinear" in result.message


# --- the grader's cases and engines ---------------------------------------------------------------
def detection_cases():
    return {label: kwargs for label, kwargs in load_grader()._detection_cases()}


def test_detection_cases_stay_on_torchvisions_coordinate_trick_path():
    for label, kwargs in detection_cases().items():
        R, K = kwargs["class_logits"].shape
        assert R * (K - 1) <= 1000, label  # batched_nms: boxes.numel() <= 4000 on CPU
        assert kwargs["box_regression"].shape == (R, 4 * K) and kwargs["proposals"].shape == (R, 4)


def test_the_detection_engine_is_torchvision():
    grader = load_grader()
    for label, kwargs in detection_cases().items():
        ours = grader._detections_variant(**kwargs)
        theirs = grader._torch_detections(torch, tv_roi_heads, kwargs)
        assert len(ours[0]) == len(theirs[0]), label
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=label)
        assert (ours[2] == theirs[2]).all()


def test_the_exact_case_is_exact():
    """IoU exactly 0.5, tied scores across classes and proposals, scores exactly score_thresh."""
    grader = load_grader()
    (exact,) = [kw for label, kw in detection_cases().items() if label.startswith("exact")]
    boxes, scores, labels = grader._torch_detections(torch, tv_roi_heads, exact)
    softmax = torch.softmax(torch.tensor(exact["class_logits"]), -1).numpy()
    assert (softmax[5] == exact["score_thresh"]).all()  # proposal 5: every score exactly 0.2
    assert softmax[0, 1] == softmax[0, 2] == softmax[1, 1] == softmax[1, 2]
    tied = scores == softmax[0, 1]  # proposals 0 and 1, classes 1 and 2: in candidate order, proposal-major
    assert boxes[tied].tolist() == [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 5]]
    assert labels[tied].tolist() == [1, 2, 1, 2]
    a, b = exact["proposals"][0], exact["proposals"][1]
    inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
    assert inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter) == 0.5
    assert [42.0, 16.0, 58.0, 32.0] in boxes.tolist()  # proposal 6, class 2: moved by exactly (+2, -4)
    assert not (boxes[:, 0] == 60).any()  # proposal 4 (outside the image) removed


def test_every_detection_mistake_shows_in_some_case():
    grader = load_grader()
    cases = list(detection_cases().values())
    for mistake, _ in grader.DETECTION_HINTS:
        def differs(kwargs, mistake=mistake):
            right, wrong = grader._detections_variant(**kwargs), grader._detections_variant(**kwargs, mistake=mistake)
            return not all(grader._matches(w, r) for w, r in zip(wrong, right, strict=True))

        assert any(differs(kwargs) for kwargs in cases), mistake


def test_the_paste_engine_is_torchvision_and_every_mistake_shows():
    grader = load_grader()
    cases = list(grader._paste_cases())
    for _, masks, boxes, _, image_shape, padding in cases:
        ours = grader._paste_variant(masks, boxes, image_shape, padding)
        theirs = tv_roi_heads.paste_masks_in_image(torch.tensor(masks), torch.tensor(boxes), image_shape,
                                                   padding=padding).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)
    for kwargs, hint in grader.PASTE_HINTS:
        assert any(not grader._matches(grader._paste_variant(m, b, s, p, **kwargs), grader._paste_variant(m, b, s, p))
                   for _, m, b, _, s, p in cases), hint


def test_paste_cases_cover_the_rules():
    grader = load_grader()
    (_, masks, boxes, labels, image_shape, padding), *_ = grader._paste_cases()
    H, W = image_shape
    M = masks.shape[-1]
    scale = (M + 2 * padding) / M
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    grown = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) * 0.5 - half, (boxes[:, :2] + boxes[:, 2:]) * 0.5 + half], 1)
    assert ((grown < 0) & (grown != np.trunc(grown))).any()  # truncation and floor differ
    assert (grown[:, 2] > W).any() and (grown[:, 3] > H).any()  # partly outside, bottom-right
    assert ((boxes[:, 2] - boxes[:, 0]) < 1).any()  # tiny
    assert any("larger than the image" in label for label in labels)


def test_the_target_engine_is_torchvision_and_every_mistake_shows():
    grader = load_grader()
    cases = list(grader._target_cases())
    for _, gt_masks, proposals, _, matched, M in cases:
        ours = grader._targets_variant(gt_masks, proposals, matched, M)
        theirs = tv_roi_heads.project_masks_on_boxes(torch.tensor(gt_masks), torch.tensor(proposals),
                                                     torch.tensor(matched), M).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)
    for kwargs, hint in grader.TARGET_HINTS:
        assert any(not grader._matches(grader._targets_variant(g, p, i, M, **kwargs), grader._targets_variant(g, p, i, M))
                   for _, g, p, _, i, M in cases if len(p)), hint


def test_the_loss_cases_include_no_positives_and_extreme_logits():
    grader = load_grader()
    cases = list(grader._loss_cases())
    assert any(len(learner["labels"]) == 0 for _, learner, _ in cases)
    assert any(np.abs(learner["mask_logits"]).max() >= 50 for _, learner, _ in cases)
    for _, learner, lists in cases:
        assert (learner["labels"] >= 1).all()
        theirs = tv_roi_heads.maskrcnn_loss(torch.tensor(lists["mask_logits"]),
                                            *([torch.tensor(a) for a in lists[k]] for k in
                                              ("proposals", "gt_masks", "gt_labels", "mask_matched_idxs"))).item()
        solution = exercises.load_module(SOLUTION)
        assert abs(solution.mask_loss(**learner) - theirs) <= 1e-12 * max(abs(theirs), 1)
