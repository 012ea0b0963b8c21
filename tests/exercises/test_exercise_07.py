"""Chapter 07 (training and evaluation): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution fail with a message of
their own, a legitimate variant passes, and the grader's crafted cases are checked to be
what their labels say.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pycocotools.cocoeval import COCOeval

from mrcnn_np import exercises
from mrcnn_np.exercises import PASS
from tests.exercises import support

CHAPTER = "07_training"
TASK_NAMES = ["sgd_momentum_step", "warmup_lr", "average_precision"]
GRADER = support.grader(CHAPTER)
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "the paper's momentum, lr inside the velocity": ["[first steps of a warm-up (no velocity yet)",
                                                     "velocities (the momentum buffers) after step 0 (lr 2e-05"],
    "weight decay added after the momentum": ["weight_decay=0.0001", "velocities (the momentum buffers) after step 0"],
    "dampened momentum: an average instead of a sum": ["params after step 1 (lr 0.004016; steps count from 0)"],
    "the warm-up counted from 1": ["vs mrcnn_np.nn.optim.WarmupMultiStepLR",
                                   "the first iteration that differs is 0: expected 5e-06, got 5.495e-05"],
    "the lr drops one iteration after a milestone": ["the first iteration that differs is 750: expected 0.0005, "
                                                     "got 0.005"],
    "the decay left out during the warm-up": ["[a milestone inside the warm-up]",
                                              "the first iteration that differs is 10"],
    "no precision envelope": ["vs pycocotools' COCOeval (bbox): values differ"],
    "strict > at the threshold": ["[by hand: IoU exactly 0.5 and 0.75", "iou_threshold=0.5)", "expected 0.75"],
    "a found object found again": ["[by hand: IoU exactly 0.5 and 0.75"],
    "detections on crowd regions counted as false positives": ["[crowd regions: detections inside them ignored",
                                                               "gt_iscrowd (2 crowd)"],
    "crowd regions counted in the recall": ["[crowd regions: detections inside them ignored"],
}

STABLE_SCORES = 'order = np.argsort(-np.concatenate(all_scores), kind="stable")'
PER_IMAGE = 'd = d[np.argsort(-scores[d], kind="stable")][:MAX_DETS]'
CROWD_UNION = "union = np.where(gt_iscrowd[None, :], area[:, None], area[:, None] + gt_area[None, :] - inter)"
RAMP = "progress = min(iteration, warmup_iters) / warmup_iters"

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "sgd_momentum_step returns the parameters only": (
        [("    return new_params, new_velocities\n", "    return new_params\n")],
        "sgd_momentum_step", ["step 0 (lr 2e-05)", "expected a tuple (params, velocities), got list of length 3"],
    ),
    "sgd_momentum_step returns flat velocities": (
        [("new_velocities.append(v)", "new_velocities.append(v.reshape(-1))")],
        "sgd_momentum_step", ["velocities[0]", "expected shape (4, 3, 3, 3), got (108,)"],
    ),
    "sgd_momentum_step forgets the given velocities": (
        [("v = d.copy() if velocities is None else", "v = d.copy() if True else")],
        "sgd_momentum_step", ["[first steps of a warm-up (no velocity yet)", "params after step 1"],
    ),
    "sgd_momentum_step imported from elsewhere": (
        [("# --- task (b)", "from mrcnn_np.nn.optim import SGD as sgd_momentum_step  # noqa: E402\n\n\n"
                            "# --- task (b)")],
        "sgd_momentum_step", ["imported from elsewhere"],
    ),
    "warmup_lr divides by zero without a warm-up": (
        [("    if warmup_iters > 0:\n", "    if True:\n")],
        "warmup_lr", ["[no warm-up (warmup_iters 0), gamma 0.5]", "raised ZeroDivisionError"],
    ),
    "warmup_lr returns a list": (
        [("    return base_lr * warm * gamma**passed", "    return [base_lr * warm * gamma**passed]")],
        "warmup_lr", ["warmup_lr(0, base_lr=0.005", "expected one float", "expected shape (), got (1,)"],
    ),
    "warmup_lr reaches the peak one iteration early": (
        [(RAMP, "progress = min(iteration, warmup_iters - 1) / (warmup_iters - 1)")],
        "warmup_lr", ["the largest error is in iteration "],
    ),
    "average_precision ranks tied scores the later image first": (
        [(STABLE_SCORES, "order = np.lexsort((-np.arange(sum(map(len, all_scores))), -np.concatenate(all_scores)))")],
        "average_precision", ["[tied scores, across images and within one]"],
    ),
    "average_precision without the limit of 100 detections per image": (
        [(PER_IMAGE, 'd = d[np.argsort(-scores[d], kind="stable")]')],
        "average_precision", ["[130 detections on one image: only its 100 best count]"],
    ),
    "average_precision with a plain IoU for crowd regions": (
        [(CROWD_UNION, "union = area[:, None] + gt_area[None, :] - inter")],
        "average_precision", ["[crowd regions: detections inside them ignored, IoU 0.5]"],
    ),
    "average_precision returns the interpolated precisions": (
        [("    return float(np.mean(interpolated))", "    return interpolated")],
        "average_precision", ["expected a float (one number), got an array of shape (101,)"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS, every_mistake_shown=True, task_names_are_graded=True)


def test_a_bug_in_one_task_leaves_the_other_tasks_passing(tmp_path):
    for name, task in (("weight decay added after the momentum", "sgd_momentum_step"),
                       ("the warm-up counted from 1", "warmup_lr"), ("no precision envelope", "average_precision")):
        results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES[name].changes), tmp_path)
        assert [n for n, r in results.items() if r.status != PASS] == [task]


def test_a_zero_first_buffer_is_torchs_first_buffer(tmp_path):
    """With dampening 0, starting the buffer at zeros and adding d is the same as starting it at d: it passes."""
    text = support.broken(CHAPTER, [("v = d.copy() if velocities is None else momentum * velocities[i] + d",
                                     "v = momentum * (np.zeros_like(p) if velocities is None else velocities[i]) + d")])
    assert support.grade(CHAPTER, text, tmp_path, "sgd_momentum_step")["sgd_momentum_step"].status == PASS


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def test_sgd_cases_tell_the_papers_momentum_only_where_the_lr_changes():
    """The README's claim: with a constant lr the papers' velocity takes torch's steps; with a changing one not."""
    solution = exercises.load_module(support.solution(CHAPTER))
    paper = exercises.broken_solution(support.solution(CHAPTER),
                                      MISTAKES["the paper's momentum, lr inside the velocity"].changes)
    for label, *case in GRADER._sgd_cases():
        lrs = case[3]
        ours, theirs = (GRADER._trajectory(m.sgd_momentum_step, *case)[0] for m in (solution, paper))
        assert np.allclose(ours, theirs, rtol=1e-12, atol=0) == (len(set(lrs)) == 1 and case[2] is None), label


def test_schedule_cases_cover_the_edges():
    cases = {label: case for label, *case in GRADER._schedule_cases()}
    iterations, base_lr, warmup_iters, warmup_factor, milestones, gamma = cases["a milestone inside the warm-up"]
    assert milestones[0] < warmup_iters < milestones[1] < iterations
    assert cases["no warm-up (warmup_iters 0), gamma 0.5"][2] == 0 and cases["a warm-up of one iteration"][2] == 1
    iterations, _, warmup_iters, _, milestones, _ = cases["a milestone where the warm-up ends, another after the run"]
    assert milestones == (warmup_iters, 100) and iterations < 100
    lrs = GRADER._torch_schedule(torch, *cases["TrainRecipe's defaults: lr 0.005, 100 warm-up iterations, "
                                               "milestones (750, 920)"])
    assert lrs[0] == pytest.approx(0.005 * 0.001) and lrs[100] == pytest.approx(0.005)
    assert lrs[749] == pytest.approx(0.005) and lrs[750] == pytest.approx(0.0005) and lrs[920] == pytest.approx(5e-5)


def _case(label):
    (case,) = [case for lab, *case in GRADER._ap_cases() if lab == label]
    return case


def test_hand_made_ap_case_has_ious_exactly_at_the_thresholds():
    boxes, scores, images, gt, gt_images, crowd, _ = _case(
        "by hand: IoU exactly 0.5 and 0.75, a duplicate, an image without objects, IoU 0.5")
    iou = torchvision.ops.box_iou(torch.tensor(boxes), torch.tensor(gt)).numpy()
    assert iou[0, 0] == 0.5 and iou[1, 1] == 0.75 and iou[2, 0] == 1.0  # d2 duplicates d0's object
    assert set(images) - set(gt_images) == {3} and not crowd.any()


def test_crowd_case_ignores_some_detections_and_is_not_trivial():
    """pycocotools ignores at least three of its detections (on crowd regions), and its AP is neither 0 nor 1."""
    case = _case("crowd regions: detections inside them ignored, IoU 0.5")
    ignored = []

    class CountIgnored(COCOeval):
        def accumulate(self, p=None):
            ignored.extend(int(e["dtIgnore"].sum()) for e in self.evalImgs if e and e["aRng"] == [0, 1e10])
            super().accumulate(p)

    assert 0 < GRADER._pycocotools_ap(*case, evaluator=CountIgnored) < 1
    assert sum(ignored) >= 3


def test_tied_case_depends_on_the_tie_rule():
    """Ranking image 2's detections before image 1's (relabelling the images) changes COCO's AP."""
    boxes, scores, images, gt, gt_images, crowd, t = _case("tied scores, across images and within one")
    assert len(scores) - len(set(scores.tolist())) >= 2
    swapped = {1: 2, 2: 1, 3: 3}
    relabelled = np.array([swapped[i] for i in images]), np.array([swapped[i] for i in gt_images])
    assert GRADER._pycocotools_ap(boxes, scores, images, gt, gt_images, crowd, t) != GRADER._pycocotools_ap(
        boxes, scores, relabelled[0], gt, relabelled[1], crowd, t)


def test_crowded_image_case_depends_on_the_limit_of_100():
    class MoreDetections(COCOeval):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.params.maxDets = [1, 10, 1000]

    case = _case("130 detections on one image: only its 100 best count")
    assert np.sum(case[2] == 1) == 130
    assert GRADER._pycocotools_ap(*case) < GRADER._pycocotools_ap(*case, evaluator=MoreDetections)


def test_random_ap_cases_are_neither_perfect_nor_empty():
    for label in ("random: 8 images, jittered and duplicate detections, clutter, two crowd regions, IoU 0.5",
                  "random: the same, IoU 0.75"):
        case = _case(label)
        assert 0.2 < GRADER._pycocotools_ap(*case) < 0.9 and case[5].sum() == 2, label
    assert GRADER._pycocotools_ap(*_case("every detection misses: AP 0")) == 0.0
