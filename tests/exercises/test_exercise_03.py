"""Chapter 03 (the RPN): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution that the message explains
in its own words, and the grader's crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrcnn_np import exercises
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.exercises import PASS, TODO
from mrcnn_np.model.rpn import RegionProposalNetwork
from tests.exercises import support

CHAPTER = "03_rpn"
TASK_NAMES = ["flatten_head_outputs", "decode_proposals", "select_proposals", "rpn_loss"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "anchors before locations": ["objectness of flatten_head_outputs", "vs mrcnn_np.model.rpn.concat_box_prediction",
                                 "(compared exactly)", "first at index (0, 1) (image 0, level 0, location y=0, x=0, "
                                 "anchor 1): expected logits[0][0, 1, 0, 0]", "got logits[0][0, 0, 0, 1]"],
    "delta channels split as (4, A)": ["deltas of flatten_head_outputs"],
    "locations column-major": ["objectness of flatten_head_outputs"],
    "decode without the clamp": ["vs mrcnn_np BoxCoder((1, 1, 1, 1)).decode: values differ"],
    "top-n over all levels together": ["boxes of select_proposals", "vs mrcnn_np RegionProposalNetwork.filter_proposals",
                                       "expected 457 proposals, shape (457, 4); got shape (244, 4) (244 proposals)"],
    "NMS across levels": ["expected 457 proposals", "got shape (388, 4)"],
    "survivors ordered level by level": ["(compared exactly)", "first at row "],
    "post_nms_top_n before NMS": ["post_nms_top_n=50"],
    "score threshold strict": ["score_thresh=0.5) on 3 levels (477 anchors; 360, 90, 27 per level), image (37, 45), "
                               "one score exactly score_thresh",
                               "expected 109 proposals, shape (109, 4); got shape (108, 4)"],
    "box loss divided by the positives": ["loss_box of rpn_loss",
                                          "vs mrcnn_np RegionProposalNetwork.compute_loss: values differ"],
    "box loss a mean": ["loss_box"],
    "smooth L1 with beta 1": ["loss_box"],
    "smooth L1 without the division by beta": ["loss_box"],
    "box loss over every positive": ["about 210 positives each (128 sampled)"],
    "objectness loss over every labelled anchor": ["loss_objectness of rpn_loss"],
}

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "logits flattened anchor first, then location": (
        [(TABLE.LOGITS, "flat_logits.append(level_logits.reshape(N, A * H * W))")],
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "first at index (0, 1) (image 0, level 0, "
                                 "location y=0, x=0, anchor 1): expected logits[0][0, 1, 0, 0]",
                                 "got logits[0][0, 0, 0, 1]", "hint: within a level, locations go outer and anchors "
                                 "inner"],
    ),
    "deltas flattened anchor first, then location": (
        [(TABLE.DELTAS, TABLE.DELTAS.replace("(0, 3, 4, 1, 2)", "(0, 1, 3, 4, 2)"))],
        "flatten_head_outputs", ["deltas of flatten_head_outputs", "anchor 1, dx): expected deltas[0][0, 4, 0, 0]",
                                 "hint: within a level, locations go outer and anchors inner"],
    ),
    "logits column-major": (
        [(TABLE.LOGITS, TABLE.LOGITS.replace("(0, 2, 3, 1)", "(0, 3, 2, 1)"))],
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "hint: locations are row-major"],
    ),
    "levels concatenated in reverse": (
        [("np.concatenate(flat_logits, axis=1), np", "np.concatenate(flat_logits[::-1], axis=1), np")],
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "first at index (0, 0) (image 0, level 0, "
                                 "location y=0, x=0, anchor 0): expected logits[0][0, 0, 0, 0]", "got logits[2]"],
    ),
    "objectness left as (N, total, 1)": (
        [("np.concatenate(flat_logits, axis=1), np", "np.concatenate(flat_logits, axis=1)[..., None], np")],
        "flatten_head_outputs", ["expected shape (2, 81), got (2, 81, 1)"],
    ),
    "decode clamping dh only": (
        [(TABLE.DW, "dw = deltas[..., 2]")],
        "decode_proposals", ["hint: no clamp"],
    ),
    "decode flattening the images together": (
        [("return np.stack(corners, axis=-1)", "return np.stack(corners, axis=-1).reshape(-1, 4)")],
        "decode_proposals", ["expected shape (2, 1536, 4), got (3072, 4)", "hint: return one (total, 4) block"],
    ),
    "logits returned as scores, threshold on probabilities": (
        [("    return boxes[kept], scores[kept]\n", "    return boxes[kept], np.log(scores[kept] / (1 - scores[kept]))\n")],
        "select_proposals", ["scores of select_proposals", "values differ",
                             "hint: the scores are probabilities, sigmoid(logit), not the logits"],
    ),
    "equal logits taken highest index first": (
        [('np.argsort(-objectness[offset : offset + n], kind="stable")[:top_n]',
          "np.argsort(objectness[offset : offset + n])[::-1][:top_n]")],
        "select_proposals", ["logits tied in steps of 0.5", "hint: this case has equal logits"],
    ),
    "nothing survives: a list instead of an empty array": (
        [("    return boxes[kept], scores[kept]\n", "    return (boxes[kept], scores[kept]) if len(kept) else ([], [])\n")],
        "select_proposals", ["no proposal survives", "expected 0 proposals, shape (0, 4); got shape (0,)"],
    ),
    "objectness loss by the naive formula": (
        [("return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))",
          "return -(t * np.log(sigmoid(x)) + (1 - t) * np.log(1 - sigmoid(x)))")],
        "rpn_loss", ["loss_objectness", "logits as large as +-45", "hint: the loss is not finite"],
    ),
    "rpn_loss without a return": (
        [("    return float(loss_objectness), float(loss_box)\n", "    float(loss_objectness), float(loss_box)\n")],
        "rpn_loss", ["expected a tuple (loss_objectness, loss_box), got NoneType"],
    ),
    "loss returned as a 1-element array": (
        [("return float(loss_objectness), float(loss_box)", "return np.array([loss_objectness]), float(loss_box)")],
        "rpn_loss", ["loss_objectness", "expected a float (one number), got an array of shape (1,)"],
    ),
    "select_proposals imported from the library": (
        [("# --- task (d)", "from mrcnn_np.model.rpn import top_n_per_level as select_proposals  # noqa: E402, F811\n"
                            "\n\n# --- task (d)")],
        "select_proposals", ["imported from elsewhere"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS,
                          # broken copies divide by zero (zero-area IoU, log(0))
                          mistake_warnings="ignore::RuntimeWarning", bug_warnings="ignore::RuntimeWarning")


@pytest.mark.parametrize("mistake", ["top-n over all levels together", "box loss divided by the positives",
                                     "decode without the clamp", "anchors before locations"])
def test_a_bug_in_one_task_leaves_the_others_passing(mistake, tmp_path):
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES[mistake].changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == [MISTAKES[mistake].task]


def test_select_proposals_needs_the_helpers_it_calls(tmp_path):
    source = support.broken(CHAPTER, [('    order = np.argsort(-scores, kind="stable")\n    keep = []\n',
                                       '    raise NotImplementedError("helper for task (c): write nms")\n')])
    results = support.grade(CHAPTER, source, tmp_path)
    assert results["select_proposals"].status == TODO and "write nms" in results["select_proposals"].message
    assert all(results[name].status == PASS for name in ("flatten_head_outputs", "decode_proposals", "rpn_loss"))


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def select_cases():
    return [(label, kwargs) for label, kwargs, *_ in GRADER._select_cases()]


def reference_selection(kwargs):
    rpn = RegionProposalNetwork.from_config(MaskRCNNConfig(), anchor_generator=None, head=None,
                                            nms_thresh=kwargs["nms_thresh"], score_thresh=kwargs["score_thresh"],
                                            min_size=kwargs["min_size"])
    boxes, scores = rpn.filter_proposals(kwargs["proposals"][None], kwargs["objectness"][None],
                                         [kwargs["image_size"]], kwargs["num_anchors_per_level"],
                                         kwargs["pre_nms_top_n"], kwargs["post_nms_top_n"])
    return boxes[0], scores[0]


def test_select_case_1_puts_tiny_and_outside_boxes_in_the_top_n_and_levels_are_cut():
    label, kwargs = select_cases()[0]
    assert "6 tiny boxes and 6 boxes outside the image" in label
    proposals, logits, per_level = kwargs["proposals"], kwargs["objectness"], kwargs["num_anchors_per_level"]
    height, width = kwargs["image_size"]
    top = np.argsort(-logits)[:12]  # the 12 crafted boxes are the best of all
    sizes = proposals[top, 2:] - proposals[top, :2]
    assert (sizes.min(axis=1) < kwargs["min_size"]).sum() == 6
    assert (proposals[top, 0] > width).sum() == 6
    assert per_level[0] > kwargs["pre_nms_top_n"] > per_level[2]  # the finest levels are cut, the coarsest not
    boxes, _ = reference_selection(kwargs)
    assert (boxes[:, 2:] - boxes[:, :2]).min() >= kwargs["min_size"] and boxes[:, 2].max() <= width
    assert (proposals[:, 2] > width).any() and (proposals[:, 1] < 0).any()  # other boxes cross the border


def test_select_case_3_keeps_a_score_equal_to_the_threshold():
    label, kwargs = select_cases()[2]
    assert "one score exactly score_thresh" in label
    _, scores = reference_selection(kwargs)
    assert (scores == kwargs["score_thresh"]).sum() == 1
    assert kwargs["objectness"][GRADER.EXACT_SCORE_INDEX] == 0.0


def test_select_case_4_cuts_through_tied_logits():
    label, kwargs = select_cases()[3]
    assert "tied" in label
    logits, n = kwargs["objectness"], kwargs["pre_nms_top_n"]
    offset = 0
    for count in kwargs["num_anchors_per_level"]:
        level = np.sort(logits[offset : offset + count])[::-1]
        offset += count
        if count > n:
            assert level[n - 1] == level[n]  # the n-th and the (n+1)-th largest are equal: ties decide


def test_select_case_5_keeps_nothing():
    label, kwargs = select_cases()[4]
    assert "no proposal survives" in label
    boxes, scores = reference_selection(kwargs)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_decode_cases_reach_beyond_the_clamp_on_both_sides():
    for _, deltas, _ in list(GRADER._decode_cases())[:2]:
        assert deltas[..., 2:].max() > math.log(1000 / 16) and deltas[..., 2:].min() < -math.log(1000 / 16)


def test_loss_cases():
    cases = list(GRADER._loss_cases())
    (_, many), (_, extreme), (_, background), (_, one_image) = cases
    per_image = many["labels"].reshape(2, -1)
    assert ((per_image == 1).sum(axis=1) > 128).all()  # more positives than the sampler takes
    assert many["sampled_pos"].sum() == 256 and many["sampled_neg"].sum() == 256
    assert (np.abs(extreme["objectness"][extreme["sampled_neg"]]) > 37).any()
    assert background["sampled_pos"].sum() == 0 and background["sampled_neg"].sum() == 512
    assert one_image["sampled_pos"].reshape(3, -1).sum(axis=1).tolist()[::2] == [0, 0]
    d = np.abs(many["deltas"] - many["regression_targets"])[many["sampled_pos"]]
    assert (d < 1 / 9).mean() > 0.2 and (d > 1 / 9).mean() > 0.2  # both pieces of the smooth L1
