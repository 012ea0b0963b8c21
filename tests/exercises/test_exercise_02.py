"""Chapter 02 (anchors and matching): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here, deliberately broken copies of the reference solution prove that each
classic mistake fails the task it belongs to and that the message names it; the grader's
crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, PASS, TODO
from mrcnn_np.ops.boxes import box_iou
from mrcnn_np.ops.nms import nms

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTER = "02_anchors_and_matching"
SOLUTION = EXERCISES / "solutions" / f"{CHAPTER}.py"
TASK_NAMES = ["box_iou", "cell_anchors", "grid_anchors", "encode", "decode", "nms"]


def by_name(results):
    return {r.name: r for r in results}


def grade_text(tmp_path, text, name="broken.py"):
    path = tmp_path / name
    path.write_text(text)
    return by_name(exercises.grade("02", path, exercises_dir=EXERCISES))


# name: (text in the solution, replacement, the task that must fail, texts its message must contain)
BUGS = {
    "IoU union without subtracting the intersection": (
        "union = area1[:, None] + area2[None, :] - inter",
        "union = area1[:, None] + area2[None, :]",
        "box_iou", ["vs mrcnn_np.ops.box_iou: values differ", "hint: union = area1 + area2 counts the intersection"],
    ),
    "IoU without clamping the overlap at 0": (
        "wh = np.clip(bottom_right - top_left, 0, None)",
        "wh = bottom_right - top_left",
        "box_iou", ["values differ", "hint: boxes that do not overlap must have intersection 0"],
    ),
    "IoU transposed": (
        "return inter / union", "return (inter / union).T",
        "box_iou", ["expected shape (7, 9), got (9, 7)", "hint: the result is transposed"],
    ),
    "anchors rounded half up": (
        "return np.round(corners)", "return np.floor(corners + 0.5)",
        "cell_anchors", ["anchors differ (compared exactly)", "ratio 0.25, size 90",
                         "expected [-90.0, -22.0, 90.0, 22.0], got [-90.0, -22.0, 90.0, 23.0]",
                         "hint: round half to even"],
    ),
    "anchors computed in float64": (
        "scales = np.asarray(sizes, dtype=np.float32)  # (S,)\n"
        "    ratios = np.asarray(aspect_ratios, dtype=np.float32)",
        "scales = np.asarray(sizes, dtype=np.float64)  # (S,)\n"
        "    ratios = np.asarray(aspect_ratios, dtype=np.float64)",
        "cell_anchors", ["cell_anchors(sizes=(10, 90, 170), aspect_ratios=(0.49, 1.69))",
                         "hint: compute in float32"],
    ),
    "anchors with sizes outer, ratios inner": (
        "ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (K, S) -> (K*S,): ratio k, size s at k*S + s\n"
        "    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)",
        "ws = (scales[:, None] * w_ratios[None, :]).reshape(-1)\n"
        "    hs = (scales[:, None] * h_ratios[None, :]).reshape(-1)",
        "cell_anchors", ["cell_anchors(sizes=(128, 256, 512)", "hint: the anchors go ratios outer, sizes inner"],
    ),
    "aspect ratio taken as width / height": (
        "w_ratios = 1 / h_ratios  # w / size",
        "w_ratios, h_ratios = h_ratios, 1 / h_ratios  # w / size",
        "cell_anchors", ["hint: an aspect ratio is height / width"],
    ),
    "grid anchors ordered anchor first, then location": (
        "anchors = shifts.reshape(-1, 1, 4) + base[None, :, :]",
        "anchors = shifts.reshape(1, -1, 4) + base[:, None, :]",
        "grid_anchors", ["vs mrcnn_np.model.anchors.AnchorGenerator", "level 0, location y=0, x=0, anchor 1",
                         "hint: within a level, locations go outer and anchors inner"],
    ),
    "grid anchors in column-major order": (
        'indexing="ij")', 'indexing="xy")',
        "grid_anchors", ["hint: locations are row-major"],
    ),
    "stride by true division": (
        "stride_h, stride_w = height // h, width // w", "stride_h, stride_w = height / h, width / w",
        "grid_anchors", ["image_size=(75, 100)", "hint: stride = image size // feature size"],
    ),
    "grid anchors after a broken cell_anchors": (
        "return np.round(corners)", "return np.floor(corners + 0.5)",
        "grid_anchors", ["hint: your cell_anchors((45, 90), (0.25, 1.0, 4.0)) is wrong"],
    ),
    "encode with the centre offset reversed": (
        "wx * (gx - px) / pw", "wx * (px - gx) / pw",
        "encode", ["vs mrcnn_np BoxCoder.encode: values differ", "at index (7, 0)"],
    ),
    "encode forgetting the weights of the sizes": (
        "ww * np.log(gw / pw)", "np.log(gw / pw)",
        "encode", ["weights=(10.0, 10.0, 5.0, 5.0)", "values differ"],
    ),
    "decode without the clamp": (
        "dw = np.minimum(deltas[:, 2] / ww, clip)  # clamp after removing the weight, and only from above\n"
        "    dh = np.minimum(deltas[:, 3] / wh, clip)",
        "dw = deltas[:, 2] / ww\n    dh = deltas[:, 3] / wh",
        "decode", ["vs mrcnn_np BoxCoder.decode: values differ", "hint: no clamp"],
    ),
    "decode clamping dw only": (
        "dw = np.minimum(deltas[:, 2] / ww, clip)", "dw = deltas[:, 2] / ww",
        "decode", ["hint: no clamp"],
    ),
    "decode clamping before dividing by the weight": (
        "dw = np.minimum(deltas[:, 2] / ww, clip)", "dw = np.minimum(deltas[:, 2], clip) / ww",
        "decode", ["weights=(10.0, 10.0, 5.0, 5.0)", "hint: clamp dw / ww, after dividing by the weight"],
    ),
    "decode clamping from both sides": (
        "dh = np.minimum(deltas[:, 3] / wh, clip)", "dh = np.clip(deltas[:, 3] / wh, -clip, clip)",
        "decode", ["hint: dw and dh are clamped from above only"],
    ),
    "decode ignoring the clip argument": (
        "dw = np.minimum(deltas[:, 2] / ww, clip)  # clamp after removing the weight, and only from above\n"
        "    dh = np.minimum(deltas[:, 3] / wh, clip)",
        "dw = np.minimum(deltas[:, 2] / ww, BBOX_XFORM_CLIP)\n    dh = np.minimum(deltas[:, 3] / wh, BBOX_XFORM_CLIP)",
        "decode", ["clip=1.0) vs mrcnn_np BoxCoder.decode"],
    ),
    "decode that does not invert encode (half sizes from the corner)": (
        "return np.stack([pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,",
        "return np.stack([pred_cx - pred_w, pred_cy - 0.5 * pred_h,",
        "decode", ["values differ"],
    ),
    "NMS suppressing at IoU == threshold": (
        "suppressed = ious > iou_threshold", "suppressed = ious >= iou_threshold",
        "nms", ["IoU exactly the threshold", "expected [0, 1] (2 kept)", "got      [0] (1 kept)",
                "exactly the threshold: suppress only when IoU > iou_threshold, strictly"],
    ),
    "NMS visiting equal scores backwards": (
        'order = np.argsort(-scores, kind="stable")', "order = np.argsort(scores)[::-1]",
        "nms", ["60 disjoint boxes, all with score 0.5", "hint: the same boxes are kept, in a different order"],
    ),
    "NMS returning positions in the score order": (
        "return np.array(keep, dtype=np.int64)",
        'return np.argsort(np.argsort(-scores, kind="stable"), kind="stable")[np.array(keep, dtype=np.int64)]',
        "nms", ["kept indices differ", "hint: these are positions in the score order, not indices"],
    ),
    "NMS returning float64 for no boxes": (
        "return np.array(keep, dtype=np.int64)", "return np.array(keep)",
        "nms", ["no boxes", "expected int64 indices, got dtype float64", "pass dtype=np.int64"],
    ),
    "NMS that never suppresses": (
        "order = rest[~suppressed]", "order = rest",
        "nms", ["kept indices differ", "which is suppressed: its IoU with box"],
    ),
    "NMS imported from the library": (
        "    return np.array(keep, dtype=np.int64)  # dtype matters when keep is empty\n",
        "    return np.array(keep, dtype=np.int64)  # dtype matters when keep is empty\n\n\n"
        "from mrcnn_np.ops.nms import nms  # noqa: E402\n",
        "nms", ["imported from elsewhere"],
    ),
    "box_iou without a return": (
        "    return inter / union\n", "    inter / union\n",
        "box_iou", ["got None (a missing return?)"],
    ),
}


@pytest.mark.parametrize("bug", BUGS)
def test_a_broken_solution_fails_its_task(bug, tmp_path):
    old, new, task, texts = BUGS[bug]
    source = SOLUTION.read_text()
    assert source.count(old) == 1, "the solution changed: update this test's bug"
    result = grade_text(tmp_path, source.replace(old, new))[task]
    assert result.status == FAIL, exercises.format_report([result])
    for text in texts:
        assert text in result.message, result.message


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    old, new, *_ = BUGS["anchors rounded half up"]
    results = grade_text(tmp_path, SOLUTION.read_text().replace(old, new))
    assert [r.name for r in results.values() if r.status == FAIL] == ["cell_anchors", "grid_anchors"]
    assert all(results[name].status == PASS for name in ("box_iou", "encode", "decode", "nms"))


def test_nms_hint_points_at_a_broken_box_iou(tmp_path):
    old, new, *_ = BUGS["IoU union without subtracting the intersection"]
    result = grade_text(tmp_path, SOLUTION.read_text().replace(old, new))["nms"]
    assert result.status == FAIL
    assert "hint: your box_iou is wrong on these boxes: if nms uses it, fix task (a) first" in result.message


def test_decode_needs_encode_for_the_round_trip(tmp_path):
    source = SOLUTION.read_text()
    old = '    wx, wy, ww, wh = weights\n    px, py, pw, ph = _centres_and_sizes(proposals)\n'
    assert source.count(old) == 1
    results = grade_text(tmp_path, source.replace(old, '    raise NotImplementedError("task (c): write encode")\n'))
    assert results["encode"].status == TODO
    assert results["decode"].status == TODO and "write encode" in results["decode"].message


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def load_grader():
    return exercises.load_grader(EXERCISES / CHAPTER)


def test_nms_cases_hit_the_threshold_exactly_and_suppress_all_but_one():
    cases = {label: (boxes, scores, t) for label, boxes, scores, t in load_grader()._nms_cases()}
    exact = [label for label in cases if label.startswith("IoU exactly the threshold")]
    assert len(exact) == 2
    for label in exact:
        boxes, scores, threshold = cases[label]
        assert threshold in box_iou(boxes, boxes, impl="numpy"), label  # bit for bit
    (one,) = [label for label in cases if "all suppressed but one" in label]
    assert nms(*cases[one], impl="numpy").tolist() == [13]
    (empty,) = [label for label in cases if label.startswith("no boxes")]
    assert cases[empty][0].shape == (0, 4)


def test_anchor_cases_separate_the_rounding_and_the_precision():
    grader = load_grader()
    sizes_ratios = grader.CELL_CASES + [(s, r) for _, _, sizes, ratios in grader.GRID_CASES
                                        for s, r in zip(sizes, ratios, strict=True)]
    right = [grader._cell_variant(s, r) for s, r in sizes_ratios]
    half_up = [grader._cell_variant(s, r, rounding=grader._round_half_up) for s, r in sizes_ratios]
    float64 = [grader._cell_variant(s, r, dtype=np.float64) for s, r in sizes_ratios]
    assert sum(not np.array_equal(a, b) for a, b in zip(right, half_up, strict=True)) >= 3
    assert sum(not np.array_equal(a, b) for a, b in zip(right, float64, strict=True)) >= 3


def test_decode_cases_reach_beyond_the_clamp_on_both_sides():
    grader = load_grader()
    rng = np.random.default_rng(0)
    for weights in grader.CODER_WEIGHTS:
        scaled = grader._coder_deltas(rng, 3, weights)[:, 2:] / np.asarray(weights[2:])
        assert scaled.max() > grader.DEFAULT_CLIP and scaled.min() < -grader.DEFAULT_CLIP
