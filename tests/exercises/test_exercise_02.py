"""Chapter 02 (anchors and matching): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution that the message explains
in its own words, and the grader's crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import numpy as np

from mrcnn_np import exercises
from mrcnn_np.exercises import PASS, TODO
from mrcnn_np.ops.boxes import box_iou
from mrcnn_np.ops.nms import nms
from tests.exercises import support

CHAPTER = "02_anchors_and_matching"
TASK_NAMES = ["box_iou", "cell_anchors", "grid_anchors", "encode", "decode", "nms"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "IoU union without subtracting the intersection": ["vs mrcnn_np.ops.box_iou: values differ"],
    "IoU without clamping the overlap at 0": ["values differ"],
    "anchors rounded half up": ["anchors differ (compared exactly)", "ratio 0.25, size 90",
                                "expected [-90.0, -22.0, 90.0, 22.0], got [-90.0, -22.0, 90.0, 23.0]"],
    "anchors computed in float64": ["cell_anchors(sizes=(10, 90, 170), aspect_ratios=(0.49, 1.69))"],
    "anchors with sizes outer, ratios inner": ["cell_anchors(sizes=(128, 256, 512)"],
    "grid anchors ordered anchor first, then location": ["vs mrcnn_np.model.anchors.AnchorGenerator",
                                                         "level 0, location y=0, x=0, anchor 1"],
    "stride by true division": ["image_size=(75, 100)"],
    "decode without the clamp": ["vs mrcnn_np BoxCoder.decode: values differ"],
    "decode clamping before dividing by the weight": ["weights=(10.0, 10.0, 5.0, 5.0)"],
}

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "IoU transposed": (
        [("return inter / union", "return (inter / union).T")],
        "box_iou", ["expected shape (7, 9), got (9, 7)", "hint: the result is transposed"],
    ),
    "grid anchors after a broken cell_anchors": (
        [("return np.round(corners)", "return np.floor(corners + 0.5)")],
        "grid_anchors", ["hint: your cell_anchors((45, 90), (0.25, 1.0, 4.0)) is wrong"],
    ),
    "encode with the centre offset reversed": (
        [("wx * (gx - px) / pw", "wx * (px - gx) / pw")],
        "encode", ["vs mrcnn_np BoxCoder.encode: values differ", "at index (7, 0)"],
    ),
    "encode forgetting the weights of the sizes": (
        [("ww * np.log(gw / pw)", "np.log(gw / pw)")],
        "encode", ["weights=(10.0, 10.0, 5.0, 5.0)", "values differ"],
    ),
    "decode clamping dw only": (
        [(TABLE.DW, "dw = deltas[:, 2] / ww")],
        "decode", ["hint: no clamp"],
    ),
    "decode ignoring the clip argument": (
        [(TABLE.DW, "dw = np.minimum(deltas[:, 2] / ww, BBOX_XFORM_CLIP)"),
         (TABLE.DH, "dh = np.minimum(deltas[:, 3] / wh, BBOX_XFORM_CLIP)")],
        "decode", ["clip=1.0) vs mrcnn_np BoxCoder.decode"],
    ),
    "decode that does not invert encode (half sizes from the corner)": (
        [("return np.stack([pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,",
          "return np.stack([pred_cx - pred_w, pred_cy - 0.5 * pred_h,")],
        "decode", ["values differ"],
    ),
    "NMS suppressing at IoU == threshold": (
        [("suppressed = ious > iou_threshold", "suppressed = ious >= iou_threshold")],
        "nms", ["IoU exactly the threshold", "expected [0, 1] (2 kept)", "got      [0] (1 kept)",
                "exactly the threshold: suppress only when IoU > iou_threshold, strictly"],
    ),
    "NMS visiting equal scores backwards": (
        [('order = np.argsort(-scores, kind="stable")', "order = np.argsort(scores)[::-1]")],
        "nms", ["60 disjoint boxes, all with score 0.5", "hint: the same boxes are kept, in a different order"],
    ),
    "NMS returning positions in the score order": (
        [("return np.array(keep, dtype=np.int64)",
          'return np.argsort(np.argsort(-scores, kind="stable"), kind="stable")[np.array(keep, dtype=np.int64)]')],
        "nms", ["kept indices differ", "hint: these are positions in the score order, not indices"],
    ),
    "NMS returning float64 for no boxes": (
        [("return np.array(keep, dtype=np.int64)", "return np.array(keep)")],
        "nms", ["no boxes", "expected int64 indices, got dtype float64", "pass dtype=np.int64"],
    ),
    "NMS that never suppresses": (
        [("order = rest[~suppressed]", "order = rest")],
        "nms", ["kept indices differ", "which is suppressed: its IoU with box"],
    ),
    "NMS imported from the library": (
        [("    return np.array(keep, dtype=np.int64)  # dtype matters when keep is empty\n",
          "    return np.array(keep, dtype=np.int64)  # dtype matters when keep is empty\n\n\n"
          "from mrcnn_np.ops.nms import nms  # noqa: E402\n")],
        "nms", ["imported from elsewhere"],
    ),
    "box_iou without a return": (
        [("    return inter / union\n", "    inter / union\n")],
        "box_iou", ["got None (a missing return?)"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS, every_task_has_a_mistake=False,
                          mistake_warnings="ignore::RuntimeWarning")  # broken copies divide 0 by 0 (disjoint boxes)


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES["anchors rounded half up"].changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == ["cell_anchors", "grid_anchors"]


def test_nms_hint_points_at_a_broken_box_iou(tmp_path):
    changes = MISTAKES["IoU union without subtracting the intersection"].changes
    result = support.grade(CHAPTER, support.broken(CHAPTER, changes), tmp_path, "nms")["nms"]
    assert "hint: your box_iou is wrong on these boxes: if nms uses it, fix task (a) first" in result.message


def test_decode_needs_encode_for_the_round_trip(tmp_path):
    source = support.broken(CHAPTER, [("    wx, wy, ww, wh = weights\n    px, py, pw, ph = _centres_and_sizes(proposals)\n",
                                       '    raise NotImplementedError("task (c): write encode")\n')])
    results = support.grade(CHAPTER, source, tmp_path)
    assert results["encode"].status == TODO
    assert results["decode"].status == TODO and "write encode" in results["decode"].message


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def test_nms_cases_hit_the_threshold_exactly_and_suppress_all_but_one():
    cases = {label: (boxes, scores, t) for label, boxes, scores, t in GRADER._nms_cases()}
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
    grader = GRADER
    sizes_ratios = grader.CELL_CASES + [(s, r) for _, _, sizes, ratios in grader.GRID_CASES
                                        for s, r in zip(sizes, ratios, strict=True)]
    right = exercises.load_module(support.solution(CHAPTER)).cell_anchors
    for name in ("anchors rounded half up", "anchors computed in float64"):
        wrong = exercises.broken_solution(support.solution(CHAPTER), MISTAKES[name].changes).cell_anchors
        assert sum(not np.array_equal(right(s, r), wrong(s, r)) for s, r in sizes_ratios) >= 3, name

def test_decode_cases_reach_beyond_the_clamp_on_both_sides():
    grader = GRADER
    rng = np.random.default_rng(0)
    for weights in grader.CODER_WEIGHTS:
        scaled = grader._coder_deltas(rng, 3, weights)[:, 2:] / np.asarray(weights[2:])
        assert scaled.max() > grader.DEFAULT_CLIP and scaled.min() < -grader.DEFAULT_CLIP
