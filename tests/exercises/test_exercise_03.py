"""Chapter 03 (the RPN): the grader fails the right task, with a helpful message.

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
from mrcnn_np.model.rpn import RegionProposalNetwork

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTER = "03_rpn"
SOLUTION = EXERCISES / "solutions" / f"{CHAPTER}.py"
TASK_NAMES = ["flatten_head_outputs", "decode_proposals", "select_proposals", "rpn_loss"]


def by_name(results):
    return {r.name: r for r in results}


def grade_text(tmp_path, text, name="broken.py"):
    path = tmp_path / name
    path.write_text(text)
    return by_name(exercises.grade("03", path, exercises_dir=EXERCISES))


# name: (text in the solution, replacement, the task that must fail, texts its message must contain)
BUGS = {
    # --- (a) flatten_head_outputs
    "logits flattened anchor first, then location": (
        "flat_logits.append(level_logits.transpose(0, 2, 3, 1).reshape(N, H * W * A))",
        "flat_logits.append(level_logits.reshape(N, A * H * W))",
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "vs mrcnn_np.model.rpn.concat_box_prediction",
                                 "(compared exactly)", "first at index (0, 1) (image 0, level 0, location y=0, x=0, "
                                 "anchor 1): expected logits[0][0, 1, 0, 0]", "got logits[0][0, 0, 0, 1]",
                                 "hint: within a level, locations go outer and anchors inner"],
    ),
    "deltas flattened anchor first, then location": (
        "flat_deltas.append(level_deltas.transpose(0, 3, 4, 1, 2).reshape(N, H * W * A, 4))",
        "flat_deltas.append(level_deltas.transpose(0, 1, 3, 4, 2).reshape(N, H * W * A, 4))",
        "flatten_head_outputs", ["deltas of flatten_head_outputs", "anchor 1, dx): expected deltas[0][0, 4, 0, 0]",
                                 "hint: within a level, locations go outer and anchors inner"],
    ),
    "delta channels split as (4, A)": (
        "level_deltas = level_deltas.reshape(N, A, 4, H, W)",
        "level_deltas = level_deltas.reshape(N, 4, A, H, W).transpose(0, 2, 1, 3, 4)",
        "flatten_head_outputs", ["deltas of flatten_head_outputs", "hint: the 4A delta channels are anchor-major"],
    ),
    "locations column-major": (
        "flat_logits.append(level_logits.transpose(0, 2, 3, 1).reshape(N, H * W * A))",
        "flat_logits.append(level_logits.transpose(0, 3, 2, 1).reshape(N, H * W * A))",
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "hint: locations are row-major"],
    ),
    "levels concatenated in reverse": (
        "return np.concatenate(flat_logits, axis=1), np.concatenate(flat_deltas, axis=1)",
        "return np.concatenate(flat_logits[::-1], axis=1), np.concatenate(flat_deltas, axis=1)",
        "flatten_head_outputs", ["objectness of flatten_head_outputs", "first at index (0, 0) (image 0, level 0, "
                                 "location y=0, x=0, anchor 0): expected logits[0][0, 0, 0, 0]", "got logits[2]"],
    ),
    "objectness left as (N, total, 1)": (
        "return np.concatenate(flat_logits, axis=1), np.concatenate(flat_deltas, axis=1)",
        "return np.concatenate(flat_logits, axis=1)[..., None], np.concatenate(flat_deltas, axis=1)",
        "flatten_head_outputs", ["expected shape (2, 81), got (2, 81, 1)"],
    ),
    # --- (b) decode_proposals
    "decode without the clamp": (
        "dw = np.minimum(deltas[..., 2], BBOX_XFORM_CLIP)  # clamped from above only\n"
        "    dh = np.minimum(deltas[..., 3], BBOX_XFORM_CLIP)",
        "dw = deltas[..., 2]\n    dh = deltas[..., 3]",
        "decode_proposals", ["vs mrcnn_np BoxCoder((1, 1, 1, 1)).decode: values differ", "hint: no clamp"],
    ),
    "decode clamping dh only": (
        "dw = np.minimum(deltas[..., 2], BBOX_XFORM_CLIP)  # clamped from above only",
        "dw = deltas[..., 2]",
        "decode_proposals", ["hint: no clamp"],
    ),
    "decode clamping from both sides": (
        "dh = np.minimum(deltas[..., 3], BBOX_XFORM_CLIP)",
        "dh = np.clip(deltas[..., 3], -BBOX_XFORM_CLIP, BBOX_XFORM_CLIP)",
        "decode_proposals", ["hint: dw and dh are clamped from above only"],
    ),
    "decode with widths x2 - x1 + 1": (
        "widths = anchors[:, 2] - anchors[:, 0]  # (total,)",
        "widths = anchors[:, 2] - anchors[:, 0] + 1  # (total,)",
        "decode_proposals", ["hint: width = x2 - x1, no + 1"],
    ),
    "decode with the full width on either side": (
        "half_w = 0.5 * (np.exp(dw) * widths)", "half_w = np.exp(dw) * widths",
        "decode_proposals", ["hint: the box reaches half its width on either side of its centre"],
    ),
    "decode flattening the images together": (
        "return np.stack(corners, axis=-1)  # 4 x (N, total) -> (N, total, 4)",
        "return np.stack(corners, axis=-1).reshape(-1, 4)",
        "decode_proposals", ["expected shape (2, 1536, 4), got (3072, 4)", "hint: return one (total, 4) block"],
    ),
    # --- (c) select_proposals
    "top-n over all levels together": (
        "picks, levels = top_n_per_level(objectness, num_anchors_per_level, pre_nms_top_n)",
        "picks = np.argsort(-objectness, kind='stable')[:pre_nms_top_n]\n"
        "    levels = np.repeat(np.arange(len(num_anchors_per_level)), num_anchors_per_level)[picks]",
        "select_proposals", ["boxes of select_proposals", "vs mrcnn_np RegionProposalNetwork.filter_proposals",
                             "expected 457 proposals, shape (457, 4); got shape (244, 4) (244 proposals)",
                             "hint: pre_nms_top_n is taken per level"],
    ),
    "NMS across levels": (
        "    for level in np.unique(levels):  # NMS within each level, never across\n"
        "        members = np.nonzero(levels == level)[0]\n",
        "    for _ in range(1):  # one NMS over every level\n"
        "        members = np.arange(len(levels))\n",
        "select_proposals", ["expected 457 proposals", "got shape (388, 4)", "hint: NMS runs within each level"],
    ),
    "no NMS": (
        "kept.append(members[nms(boxes[members], scores[members], nms_thresh)])",
        "kept.append(members)",
        "select_proposals", ["hint: no boxes were suppressed"],
    ),
    "survivors ordered level by level": (
        'kept = kept[np.argsort(-scores[kept], kind="stable")][:post_nms_top_n]',
        "kept = kept[:post_nms_top_n]",
        "select_proposals", ["(compared exactly)", "first at row ", "hint: after NMS per level, order the "
                             "survivors of all levels together by decreasing score"],
    ),
    "post_nms_top_n before NMS": (
        "    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]\n",
        "    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]\n"
        '    first = np.sort(np.argsort(-scores, kind="stable")[:post_nms_top_n])\n'
        "    boxes, scores, levels = boxes[first], scores[first], levels[first]\n",
        "select_proposals", ["post_nms_top_n=50", "hint: keep post_nms_top_n after NMS, not before"],
    ),
    "score threshold strict": (
        "(scores >= score_thresh)", "(scores > score_thresh)",
        "select_proposals", ["score_thresh=0.5) on 3 levels (477 anchors; 360, 90, 27 per level), image (37, 45), "
                             "one score exactly score_thresh", "expected 109 proposals, shape (109, 4); got shape (108, 4)",
                             "hint: score_thresh is inclusive"],
    ),
    "logits as scores": (
        "boxes, scores = proposals[picks], sigmoid(objectness[picks])",
        "boxes, scores = proposals[picks], objectness[picks]",
        "select_proposals", ["hint: the scores are probabilities, sigmoid(logit)"],
    ),
    "logits returned as scores, threshold on probabilities": (
        "    return boxes[kept], scores[kept]\n",
        "    return boxes[kept], np.log(scores[kept] / (1 - scores[kept]))\n",
        "select_proposals", ["scores of select_proposals", "values differ",
                             "hint: the scores are probabilities, sigmoid(logit), not the logits"],
    ),
    "no clipping": (
        "    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)  # x1, x2\n"
        "    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)  # y1, y2\n",
        "",
        "select_proposals", ["hint: clip the boxes to the image"],
    ),
    "image size read as (width, height)": (
        "height, width = image_size", "width, height = image_size",
        "select_proposals", ["hint: image_size is (height, width)"],
    ),
    "small boxes kept": (
        "keep = (widths >= min_size) & (heights >= min_size) & (scores >= score_thresh)",
        "keep = scores >= score_thresh",
        "select_proposals", ["hint: drop the boxes narrower or lower than min_size"],
    ),
    "small boxes removed before clipping": (
        "    height, width = image_size\n"
        "    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)  # x1, x2\n"
        "    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)  # y1, y2\n\n"
        "    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]\n",
        "    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]\n"
        "    height, width = image_size\n"
        "    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)  # x1, x2\n"
        "    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)  # y1, y2\n",
        "select_proposals", ["hint: clip first, then drop small boxes"],
    ),
    "equal logits taken highest index first": (
        'order = np.argsort(-objectness[offset : offset + n], kind="stable")[:top_n]',
        "order = np.argsort(objectness[offset : offset + n])[::-1][:top_n]",
        "select_proposals", ["logits tied in steps of 0.5", "hint: this case has equal logits"],
    ),
    "nothing survives: a list instead of an empty array": (
        "    return boxes[kept], scores[kept]\n",
        "    return (boxes[kept], scores[kept]) if len(kept) else ([], [])\n",
        "select_proposals", ["no proposal survives", "expected 0 proposals, shape (0, 4); got shape (0,)"],
    ),
    # --- (d) rpn_loss
    "box loss divided by the positives": (
        "/ len(sampled)", "/ len(pos)",
        "rpn_loss", ["loss_box of rpn_loss", "vs mrcnn_np RegionProposalNetwork.compute_loss: values differ",
                     "hint: divide the box loss by the number of sampled anchors (positives and negatives), "
                     "not by the number of positives"],
    ),
    "box loss a mean": (
        "smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9).sum() / len(sampled)",
        "smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9).mean()",
        "rpn_loss", ["loss_box", "hint: sum the smooth L1 over the positives and their 4 coordinates"],
    ),
    "smooth L1 with beta 1": (
        "beta=1 / 9)", "beta=1.0)",
        "rpn_loss", ["loss_box", "hint: beta = 1/9, not 1"],
    ),
    "smooth L1 without the division by beta": (
        "0.5 * d * d / beta", "0.5 * d * d",
        "rpn_loss", ["loss_box", "hint: the quadratic part is 0.5 d^2 / beta"],
    ),
    "box loss over every positive": (
        "smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9)",
        "smooth_l1(deltas[labels == 1] - regression_targets[labels == 1], beta=1 / 9)",
        "rpn_loss", ["about 210 positives each (128 sampled)", "hint: only the sampled positives count"],
    ),
    "objectness loss over every labelled anchor": (
        "binary_cross_entropy_with_logits(objectness[sampled], labels[sampled]).mean()",
        "binary_cross_entropy_with_logits(objectness[labels >= 0], labels[labels >= 0]).mean()",
        "rpn_loss", ["loss_objectness of rpn_loss", "hint: the objectness loss averages over the sampled anchors only"],
    ),
    "objectness loss by the naive formula": (
        "return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))",
        "return -(t * np.log(sigmoid(x)) + (1 - t) * np.log(1 - sigmoid(x)))",
        "rpn_loss", ["loss_objectness", "logits as large as +-45", "hint: the loss is not finite"],
    ),
    "rpn_loss without a return": (
        "    return float(loss_objectness), float(loss_box)\n", "    float(loss_objectness), float(loss_box)\n",
        "rpn_loss", ["expected a tuple (loss_objectness, loss_box), got NoneType"],
    ),
    "loss returned as a 1-element array": (
        "return float(loss_objectness), float(loss_box)", "return np.array([loss_objectness]), float(loss_box)",
        "rpn_loss", ["loss_objectness", "expected shape (), got (1,)"],
    ),
    "select_proposals imported from the library": (
        "# --- task (d)", "from mrcnn_np.model.rpn import top_n_per_level as select_proposals  # noqa: E402, F811\n\n\n"
                         "# --- task (d)",
        "select_proposals", ["imported from elsewhere"],
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # broken copies divide by zero (zero-area IoU, log(0))
@pytest.mark.parametrize("bug", BUGS)
def test_a_broken_solution_fails_its_task(bug, tmp_path):
    old, new, task, texts = BUGS[bug]
    source = SOLUTION.read_text()
    assert source.count(old) == 1, "the solution changed: update this test's bug"
    result = grade_text(tmp_path, source.replace(old, new))[task]
    assert result.status == FAIL, exercises.format_report([result])
    for text in texts:
        assert text in result.message, result.message


@pytest.mark.parametrize(("bug", "failing"), [
    ("top-n over all levels together", ["select_proposals"]),
    ("box loss divided by the positives", ["rpn_loss"]),
    ("decode without the clamp", ["decode_proposals"]),
    ("logits flattened anchor first, then location", ["flatten_head_outputs"]),
])
def test_a_bug_in_one_task_leaves_the_others_passing(bug, failing, tmp_path):
    old, new, *_ = BUGS[bug]
    results = grade_text(tmp_path, SOLUTION.read_text().replace(old, new))
    assert [r.name for r in results.values() if r.status != PASS] == failing
    assert all(r.status == PASS for r in results.values() if r.name not in failing)


def test_select_proposals_needs_the_helpers_it_calls(tmp_path):
    source = SOLUTION.read_text().replace(
        '    order = np.argsort(-scores, kind="stable")\n    keep = []\n',
        '    raise NotImplementedError("helper for task (c): write nms")\n', 1)
    results = grade_text(tmp_path, source)
    assert results["select_proposals"].status == TODO and "write nms" in results["select_proposals"].message
    assert all(results[name].status == PASS for name in ("flatten_head_outputs", "decode_proposals", "rpn_loss"))


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def load_grader():
    return exercises.load_grader(EXERCISES / CHAPTER)


def select_cases():
    return [(label, kwargs) for label, kwargs, *_ in load_grader()._select_cases()]


def reference_selection(kwargs):
    rpn = RegionProposalNetwork(None, None, nms_thresh=kwargs["nms_thresh"], score_thresh=kwargs["score_thresh"],
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
    assert kwargs["objectness"][load_grader().EXACT_SCORE_INDEX] == 0.0


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


def test_every_select_mistake_is_caught_with_its_own_hint():
    """For each mistake, the first case it changes recognises it (no other hint comes first)."""
    grader = load_grader()
    for mistake, hint in grader.SELECT_HINTS:
        for _, kwargs in select_cases():
            expected, _ = grader._select_variant(**kwargs)
            wrong, _ = grader._select_variant(**kwargs, mistake=mistake)
            if wrong.shape != expected.shape or not np.array_equal(wrong, expected):
                assert grader._select_hint(wrong, expected, kwargs) == hint, mistake
                break
        else:
            pytest.fail(f"no case catches {mistake}")


def test_every_loss_mistake_is_caught_with_its_own_hint():
    """For each wrong loss, the first case where it differs from the right one names it."""
    grader = load_grader()
    solution = exercises.load_module(SOLUTION)
    cases = [c for _, c in grader._loss_cases()]
    for which in (0, 1):  # loss_objectness, loss_box
        for index in range(len(grader._loss_variants(cases[0])[which])):
            for c in cases:
                variants = grader._loss_variants(c)[which]
                value, hint = variants[index]
                right = solution.rpn_loss(*(v.copy() for v in c.values()))[which]
                if np.isfinite(value) and not np.isclose(value, right, rtol=1e-9, atol=0):
                    assert grader._loss_hint(value, right, variants) == hint
                    break
            else:
                pytest.fail(f"no case catches: {hint}")


def test_decode_cases_reach_beyond_the_clamp_on_both_sides():
    grader = load_grader()
    for _, deltas, _ in list(grader._decode_cases())[:2]:
        assert deltas[..., 2:].max() > grader.CLIP and deltas[..., 2:].min() < -grader.CLIP


def test_loss_cases():
    cases = list(load_grader()._loss_cases())
    (_, many), (_, extreme), (_, background), (_, one_image) = cases
    per_image = many["labels"].reshape(2, -1)
    assert ((per_image == 1).sum(axis=1) > 128).all()  # more positives than the sampler takes
    assert many["sampled_pos"].sum() == 256 and many["sampled_neg"].sum() == 256
    assert (np.abs(extreme["objectness"][extreme["sampled_neg"]]) > 37).any()
    assert background["sampled_pos"].sum() == 0 and background["sampled_neg"].sum() == 512
    assert one_image["sampled_pos"].reshape(3, -1).sum(axis=1).tolist()[::2] == [0, 0]
    d = np.abs(many["deltas"] - many["regression_targets"])[many["sampled_pos"]]
    assert (d < 1 / 9).mean() > 0.2 and (d > 1 / 9).mean() > 0.2  # both pieces of the smooth L1
