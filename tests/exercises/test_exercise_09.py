"""Chapter 09 (what the tutorials get wrong): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution fail with a message of
their own, and the grader's crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from mrcnn_np import exercises
from mrcnn_np.exercises import PASS
from tests.exercises import support

CHAPTER = "09_misconceptions"
TASK_NAMES = ["roi_pool", "proposal_recall", "roi_pool_misalignment"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "halves rounded to even (np.round)": ["vs mrcnn_np.ops.roi_pool: values differ", "corners on halves"],
    "no + 1 in the size of the rounded box": ["[7 x 7 bins, spatial_scale 1/4 (P2)] vs mrcnn_np.ops.roi_pool"],
    "the mean of each bin instead of the max": ["the largest error is in rois["],
    "strict > at the threshold": ["[proposals at IoU exactly 0.5 with two of three boxes]", "expected 0.6666666667"],
    "the fraction of proposals instead of ground-truth boxes": ["proposal_recall(proposals (50, 4), gt_boxes (6, 4)"],
    "the end of a RoIPool bin taken as its last pixel": ["[a box on P2, 7 x 7 bins]", "dy (one per row of bins)"],
    "no minimum size of RoIAlign's box": ["[a box smaller than one feature pixel on P4]"],
    "offsets left in feature pixels": ["vs mrcnn_np.ops.roi_pool and roi_align on ramp maps"],
}

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "roi_pool with output_size read as (pw, ph)": (
        [("    ph, pw = output_size\n    out = np.zeros", "    pw, ph = output_size\n    out = np.zeros")],
        "roi_pool", ["[3 x 5 bins (ph != pw), spatial_scale 1/4]", "expected shape (16, 4, 3, 5), got (16, 4, 5, 3)"],
    ),
    "roi_pool with bins transposed": (
        [("out[r, :, p, q] = feature", "out[r, :, q, p] = feature")],
        "roi_pool", ["values differ", "the largest error is in rois["],
    ),
    "roi_pool without clamping to the map": (
        [("    return min(max(lo, 0), size), min(max(hi, 0), size)\n", "    return lo, hi\n")],
        "roi_pool", ["roi_pool(features (3, 4, 23, 31)"],
    ),
    "roi_pool imported from the library": (
        [("# --- task (b)", "from mrcnn_np.ops.roi_pool import roi_pool  # noqa: E402\n\n\n# --- task (b)")],
        "roi_pool", ["imported from elsewhere"],
    ),
    "proposal_recall crashes without proposals": (
        [("    if len(proposals) == 0:\n        return 0.0\n", "")],
        "proposal_recall", ["[no proposals: nothing is recalled]", "raised ValueError",
                            "hint: with no proposals no box is recalled: return 0.0"],
    ),
    "proposal_recall returns the count": (
        [("return float(np.mean(best >= iou_threshold))", "return float(np.sum(best >= iou_threshold))")],
        "proposal_recall", ["values differ"],
    ),
    "proposal_recall returns an array": (
        [("return float(np.mean(best >= iou_threshold))", "return best >= iou_threshold")],
        "proposal_recall", ["expected a float (one number), got an array of shape (6,)"],
    ),
    "misalignment as one array": (
        [("return offsets[0], offsets[1]", "return np.concatenate(offsets)")],
        "roi_pool_misalignment", ["expected a tuple (dy, dx), got ndarray"],
    ),
    "misalignment with dy and dx swapped": (
        [("return offsets[0], offsets[1]", "return offsets[1], offsets[0]")],
        "roi_pool_misalignment", ["dy (one per row of bins)"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS, every_mistake_shown=True, task_names_are_graded=True)


def test_a_bug_in_one_task_leaves_the_other_tasks_passing(tmp_path):
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES["strict > at the threshold"].changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == ["proposal_recall"]
    # the misalignment shares round_half_away with roi_pool: breaking the rounding breaks both
    changes = [("return int(math.copysign(math.floor(abs(v) + 0.5), v))", "return round(v)")]
    results = support.grade(CHAPTER, support.broken(CHAPTER, changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == ["roi_pool", "roi_pool_misalignment"]


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def test_roi_pool_cases_have_halves_empty_bins_and_no_boxes():
    cases = list(GRADER._roi_pool_cases())
    label, features, rois, labels, output_size, scale = cases[0]
    scaled = rois[:, 1:] * scale
    halves = [labels[i] for i in range(len(rois)) if (np.abs(scaled[i] - np.floor(scaled[i])) == 0.5).any()]
    assert {"corners on halves: 10 x 1/4 = 2.5 ... rounded away from zero",
            "negative corners on halves: -10 x 1/4 = -2.5"} <= set(halves)
    assert (np.round(scaled) != np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).any()  # np.round differs there
    pooled = torchvision.ops.roi_pool(torch.tensor(features), torch.tensor(rois), output_size, scale).numpy()
    outside = labels.index("wholly outside the map (above, left): every bin empty")
    assert not pooled[outside].any() and pooled[labels.index("the whole image")].all()
    assert any(len(c[2]) == 0 for c in cases) and {c[4][0] != c[4][1] for c in cases} == {False, True}


def test_recall_cases_hit_the_threshold_exactly_and_tell_recall_from_precision():
    cases = {label: (proposals, gt, t) for label, proposals, gt, t in GRADER._recall_cases()}
    proposals, gt, t = cases["proposals at IoU exactly 0.5 with two of three boxes"]
    best = torchvision.ops.box_iou(torch.tensor(gt), torch.tensor(proposals)).numpy().max(axis=1)
    assert best.tolist()[:2] == [0.5, 0.5] and best[2] < 0.5 and t == 0.5
    proposals, gt, t = cases["many proposals on one box, one on another, none on the third"]
    iou = torchvision.ops.box_iou(torch.tensor(gt), torch.tensor(proposals)).numpy()
    assert (iou.max(axis=1) >= t).mean() != (iou.max(axis=0) >= t).mean()
    recalls = [GRADER._recall_of(torchvision.ops.box_iou(torch.tensor(g), torch.tensor(p)).numpy(), t)
               for label, (p, g, t) in cases.items() if label.startswith(("jittered", "the same"))]
    assert recalls == sorted(recalls, reverse=True) and 0 < recalls[-1] < recalls[0] <= 1  # stricter, fewer found


def test_misalignment_reference_reads_unclamped_windows():
    """The ramps leave room past every box: RoIPool's windows and RoIAlign's samples stay on the map, so the
    pooled ramps are the windows' ends and the bins' centres (checked against the solution's closed form)."""
    solution = exercises.load_module(support.solution(CHAPTER))
    for label, box, output_size, scale in GRADER._misalignment_cases():
        side = int(np.ceil(box.max() * scale)) + 4
        assert np.ceil(box[2:] * scale).max() + 2 <= side - 1, label
        expected = GRADER._torch_offsets(torch, torchvision.ops, box, output_size, scale)
        got = solution.roi_pool_misalignment(box, output_size, scale)
        assert np.abs(np.concatenate(got) - np.concatenate(expected)).max() < 1e-9, label


def test_misalignment_grows_with_the_stride():
    """What chapter 9.2 shows: the same box pooled on a coarser level is off by more image pixels."""
    solution = exercises.load_module(support.solution(CHAPTER))
    rng = np.random.default_rng(0)
    boxes = np.concatenate([xy := rng.uniform(0, 300, (200, 2)), xy + rng.uniform(100, 400, (200, 2))], axis=1)
    means = [np.mean([np.abs(np.concatenate(solution.roi_pool_misalignment(b, (7, 7), 2.0 ** -k))).mean()
                      for b in boxes]) for k in (2, 3, 4, 5)]
    assert means == sorted(means) and means[-1] > 4 * means[0]
