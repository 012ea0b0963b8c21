"""Chapter 05 (the box and mask heads): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution that the message explains
in its own words, and the grader's crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection import roi_heads as tv_roi_heads

from mrcnn_np import exercises
from mrcnn_np.exercises import PASS, TODO, assert_gradient
from tests.exercises import support

CHAPTER = "05_heads"
TASK_NAMES = ["postprocess_detections", "paste_masks_in_image", "mask_targets", "mask_loss", "box_loss_backward",
              "mask_loss_backward"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
EXACT = "exact coordinates, 8 proposals"

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    ">= in NMS": [EXACT, "expected 11 detections, got 9"],
    "no clamp": ["4 tiny proposals with dw or dh beyond the clamp", "3 of 100 detections differ"],
    "background kept": ["label 0"],
    "labels counted from 0": ["expected label 1", "got label 0"],
    "scores >= score_thresh": [EXACT],
    "no detections_per_img": ["expected 100 detections, got"],
    "ties class-major (kept indices not sorted)": [EXACT, "first at detection 2"],
    "ties reversed": [EXACT],
    "no padding, no expansion": ["vs mrcnn_np.model.transform.paste_masks_in_image: values differ",
                                 "the largest error is in mask"],
    "padding argument ignored": ["padding=2"],
    "targets aligned=True": ["vs mrcnn_np.model.roi_heads.project_masks_on_boxes: values differ"],
    "targets without the minimum size": ["(tiny: 0.4 x 0.3 px, on its object's edge)"],
    "every class's mask in the loss": ["vs mrcnn_np.model.roi_heads.maskrcnn_loss: values differ"],
    "not divided by the number of sampled RoIs": [
        "box_loss_backward(box_regression (32, 20), labels (32,), regression_targets (32, 4)) [2 images, 16 + 16 "
        "sampled RoIs", "vs mrcnn_np.model.roi_heads.fastrcnn_loss (autograd): values differ"],
    "background RoIs trained too": ["vs mrcnn_np.model.roi_heads.fastrcnn_loss (autograd): values differ"],
    "not divided by the number of elements": [
        "mask_loss_backward(mask_logits (12, 4, 28, 28), labels (12,), mask_targets (12, 28, 28)) [2 images",
        "vs mrcnn_np.model.roi_heads.maskrcnn_loss (autograd): values differ"],
}

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "float labels": (
        [(TABLE.RETURN_A, TABLE.RETURN_A.replace("np.int64", "np.float64"))],
        "postprocess_detections", ["expected int64 labels, got float64", "hint: labels are class indices: "
                                                                         ".astype(np.int64)"],
    ),
    "a list instead of a tuple of three": (
        [(TABLE.RETURN_A, "return boxes[kept], scores[kept]")],
        "postprocess_detections", ["expected a tuple (boxes (D, 4), scores (D,), labels (D,)), got tuple of length 2"],
    ),
    "no + 1: a pixel short": (
        [("w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)", "w, h = max(x2 - x1, 1), max(y2 - y1, 1)")],
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
    "masks indexed by the proposal": (
        [(TABLE.MATCHED, "mask = gt_masks[r].astype(np.float64)")],
        "mask_targets", ["raised IndexError", "hint: gt_masks holds one mask per object"],
    ),
    "M ignored": (
        [("    _, H, W = gt_masks.shape\n", "    _, H, W = gt_masks.shape\n    M = 28\n")],
        "mask_targets", ["M=14", "expected shape (6, 14, 14), got (6, 28, 28)", "hint: use the argument M"],
    ),
    "the naive BCE overflows": (
        [(TABLE.BCE, "p = 1 / (1 + np.exp(-x))\n"
                     "    loss = -(mask_targets * np.log(p) + (1 - mask_targets) * np.log(1 - p))")],
        "mask_loss", ["mask logits as large as +-50", "hint: the loss is not finite"],
    ),
    "no positive RoI: mean of nothing": (
        [("    if len(labels) == 0:\n        return 0.0", "    if False:\n        return 0.0")],
        "mask_loss", ["without positive RoIs", "got nan", "hint: with no positive RoI the loss is 0"],
    ),
    "the box gradient of the picked columns only": (
        [(TABLE.PER_ROI, "return d_loss / max(R, 1)")],
        "box_loss_backward", ["expected shape (32, 20), got", "hint: the gradient has the input's shape (32, 20)"],
    ),
    "the mask gradient of the picked channel only": (
        [(TABLE.SIGMOID_GRAD, "return (sigmoid - mask_targets) / max(x.size, 1)")],
        "mask_loss_backward", ["expected shape (12, 4, 28, 28), got (12, 28, 28)",
                               "hint: the gradient has the input's shape (12, 4, 28, 28)"],
    ),
    "an array, not a float": (
        [(TABLE.MEAN, "return loss.mean(axis=(1, 2))")],
        "mask_loss", ["expected a float (one number), got an array of shape (12,)"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS,
                          # broken copies overflow, log(0), take the mean of nothing
                          mistake_warnings="ignore::RuntimeWarning", bug_warnings="ignore::RuntimeWarning")


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    (rounded,) = [m for m in GRADER.MISTAKES if m.name == "corners rounded"]
    results = support.grade(CHAPTER, support.broken(CHAPTER, rounded.changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == ["paste_masks_in_image"]


def test_the_helpers_are_needed_when_they_are_used(tmp_path):
    source = support.broken(CHAPTER, [("    order = np.argsort(-scores, kind=\"stable\")\n",
                                       '    raise NotImplementedError("helper for task (a): write nms")\n')])
    result = support.grade(CHAPTER, source, tmp_path, "postprocess_detections")["postprocess_detections"]
    assert result.status == TODO and "write nms" in result.message
    source = support.broken(CHAPTER, [("    x_low, x_high, fx = source_taps(image.shape[1], out_w)\n",
                                       '    raise NotImplementedError("helper for task (b): write resize_bilinear")\n')])
    result = support.grade(CHAPTER, source, tmp_path, "paste_masks_in_image")["paste_masks_in_image"]
    assert result.status == TODO and "write resize_bilinear" in result.message


# --- the grader's crafted cases ----------------------------------------------------------------------
def detection_cases():
    return {label: kwargs for label, kwargs in GRADER._detection_cases()}


def test_detection_cases_stay_on_torchvisions_coordinate_trick_path():
    for label, kwargs in detection_cases().items():
        R, K = kwargs["class_logits"].shape
        assert R * (K - 1) <= 1000, label  # batched_nms: boxes.numel() <= 4000 on CPU
        assert kwargs["box_regression"].shape == (R, 4 * K) and kwargs["proposals"].shape == (R, 4)


def test_the_exact_case_is_exact():
    """IoU exactly 0.5, tied scores across classes and proposals, scores exactly score_thresh."""
    (exact,) = [kw for label, kw in detection_cases().items() if label.startswith("exact")]
    boxes, scores, labels = GRADER._torch_detections(torch, tv_roi_heads, exact)
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


def test_paste_cases_cover_the_rules():
    (_, masks, boxes, labels, image_shape, padding), *_ = GRADER._paste_cases()
    H, W = image_shape
    M = masks.shape[-1]
    scale = (M + 2 * padding) / M
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    grown = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) * 0.5 - half, (boxes[:, :2] + boxes[:, 2:]) * 0.5 + half], 1)
    assert ((grown < 0) & (grown != np.trunc(grown))).any()  # truncation and floor differ
    assert (grown[:, 2] > W).any() and (grown[:, 3] > H).any()  # partly outside, bottom-right
    assert ((boxes[:, 2] - boxes[:, 0]) < 1).any()  # tiny
    assert any("larger than the image" in label for label in labels)


def test_the_loss_cases_include_no_positives_and_extreme_logits():
    cases = list(GRADER._loss_cases())
    assert any(len(learner["labels"]) == 0 for _, learner, _ in cases)
    assert any(np.abs(learner["mask_logits"]).max() >= 50 for _, learner, _ in cases)
    for _, learner, lists in cases:
        assert (learner["labels"] >= 1).all()
        theirs = tv_roi_heads.maskrcnn_loss(torch.tensor(lists["mask_logits"]),
                                            *([torch.tensor(a) for a in lists[k]] for k in
                                              ("proposals", "gt_masks", "gt_labels", "mask_matched_idxs"))).item()
        solution = exercises.load_module(support.solution(CHAPTER))
        assert abs(solution.mask_loss(**learner) - theirs) <= 1e-12 * max(abs(theirs), 1)


# --- the gradients of the losses: their cases, and the third judge ------------------------------------
def test_the_box_loss_cases_reach_both_branches_and_exact_predictions():
    beta, reached = 1 / 9, set()
    for label, learner, lists in GRADER._box_loss_cases():
        labels = learner["labels"]
        assert np.array_equal(np.concatenate(lists["labels"]), labels) and lists["box_regression"] is learner[
            "box_regression"]
        pos = np.flatnonzero(labels > 0)
        cols = 4 * labels[pos][:, None] + np.arange(4)
        d = np.abs(learner["box_regression"][pos[:, None], cols] - learner["regression_targets"][pos])
        reached |= {"quadratic"} if (d < beta).any() else set()
        reached |= {"linear"} if (d >= beta).any() else set()
        reached |= {"d = 0"} if (d == 0).any() else set()
        reached |= {"no positive"} if not len(pos) else set()
        assert (np.abs(d - beta) > 1e-4).all(), label  # central differences (eps 1e-6) never straddle the kink
    assert reached == {"quadratic", "linear", "d = 0", "no positive"}


def backward_cases(task):
    if task == "box_loss_backward":
        for _, learner, lists in GRADER._box_loss_cases():
            yield learner, (lambda x, lists=lists: GRADER._library_box_loss(lists, x)[0].item()), "box_regression", {
                "probes": None}
    else:
        for _, learner, _ in GRADER._loss_cases():
            yield learner, GRADER._bce_of_the_true_class(learner), "mask_logits", {"probes": 256, "eps": 1e-4}


@pytest.mark.parametrize("task", ["box_loss_backward", "mask_loss_backward"])
def test_the_solutions_gradient_matches_torchvision_and_central_differences(task):
    solution = exercises.load_module(support.solution(CHAPTER))
    torch_grad = {"box_loss_backward": GRADER._torch_box_loss_grad, "mask_loss_backward": GRADER._torch_mask_loss_grad}
    cases = GRADER._box_loss_cases() if task == "box_loss_backward" else GRADER._loss_cases()
    for (_, learner, lists), (_, loss, name, options) in zip(cases, backward_cases(task), strict=True):
        mine = getattr(solution, task)(**learner)
        theirs = torch_grad[task](torch, tv_roi_heads, lists)
        assert mine.shape == learner[name].shape
        assert np.abs(mine - theirs).max(initial=0.0) <= 1e-12 * max(np.abs(theirs).max(initial=0.0), 1e-300)
        assert_gradient(mine, loss, learner[name], task, **options)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("mistake", [m for m in GRADER.MISTAKES if m.task.endswith("_backward")], ids=lambda m: m.name)
def test_central_differences_alone_reject_each_backward_mistake(mistake):
    """The third judge is not a formality: on the first case where a tabled mistake's gradient
    differs, central differences of the library's loss reject it."""
    broken = exercises.broken_solution(support.solution(CHAPTER), mistake.changes)
    solution = exercises.load_module(support.solution(CHAPTER))
    for learner, loss, name, options in backward_cases(mistake.task):
        right, wrong = (getattr(module, mistake.task)(**learner) for module in (solution, broken))
        if not exercises.matches(wrong, right):
            with pytest.raises(AssertionError, match="vs central differences"):
                assert_gradient(wrong, loss, learner[name], mistake.name, **options)
            return
    raise AssertionError(f"{mistake.name}: no case tells it from the solution")
