"""Chapter 04 (RoIAlign): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here each mistake of the chapter's table (mistakes.py) proves that the grader
fails its task with its hint, other broken copies of the solution that the message explains
in its own words, and the grader's crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from mrcnn_np import exercises
from mrcnn_np.exercises import PASS, TODO, assert_gradient
from tests.exercises import support

CHAPTER = "04_roi_align"
TASK_NAMES = ["bilinear_interpolate", "roi_align", "roi_align_backward", "map_levels"]
GRADER = support.grader(CHAPTER)
TABLE = exercises.load_module(support.EXERCISES / CHAPTER / "mistakes.py")
MISTAKES = {m.name: m for m in GRADER.MISTAKES}

# texts the message of a tabled mistake holds besides its hint (the case that catches it, ...)
SHOWS = {
    "no -1 margin: points between -1 and 0 read 0": [
        "vs mrcnn_np.ops.roi_align (a zero-size box sampled once at (y, x)): values differ",
        "the point is between -1 and 0 (clamped to 0)"],
    "the limits -1 and H taken as outside": ["y=-1.0, x=-1.0", "the point is on the limit -1 (still inside: clamped "
                                                               "to 0)"],
    "negative coordinates not clamped (int truncates to 0: extrapolation)": ["between -1 and 0"],
    "rounding instead of flooring": ["the point is inside"],
    "no -0.5 shift when aligned": ["aligned=True, sampling_ratio=2] vs mrcnn_np.ops.roi_align: values differ",
                                   "the largest error is in rois["],
    "the -0.5 shift also when not aligned": ["aligned=False, sampling_ratio=2 (Mask R-CNN's box head)]"],
    "shift before scaling": ["aligned=True"],
    "no max(size, 1) when not aligned": ["aligned=False, sampling_ratio=2", "(thin: less than a feature pixel high)"],
    "max(size, 1) also when aligned": ["aligned=True, sampling_ratio=2"],
    "averaging over the points inside the map only": ["the largest error is in rois["],
    "count without max(., 1): 0 / 0 for a box without sample points": ["aligned=True, sampling_ratio=-1 (adaptive)",
                                                                       "(zero width (x1 == x2))"],
    "adaptive grid rounded to the nearest": ["sampling_ratio=0 (adaptive)"],
    "sampling_ratio <= 0 taken literally": ["sampling_ratio=0 (adaptive)"],
    "every box read from the first image": ["image 2, box"],
    "the gradient not divided by the sample count": [
        "roi_align_backward(grad_output (16, 4, 7, 7), rois (16, 5), input_shape=(3, 4, 23, 31), spatial_scale=0.25, "
        "sampling_ratio=2, aligned=False) [aligned=False, sampling_ratio=2 (Mask R-CNN's box head)] vs "
        "mrcnn_np.ops.roi_align (autograd): values differ"],
    "points outside the map send gradient to the edge": ["vs mrcnn_np.ops.roi_align (autograd): values differ"],
    "every box's gradient into the first image": ["max abs error"],
    "levels without eps": ["whose float corners make them a hair (< 1e-12 px) smaller", "5 of 5 levels differ",
                           "sqrt(area) = 111.99999999999994: expected level 3, got 2"],
    "levels rounded instead of floored": ["random boxes"],
    "defaults written in instead of the arguments": ["k_min=3, k_max=6, canonical_scale=200, canonical_level=5, "
                                                     "eps=0.01"],
}

# broken copies the message explains in its own words: ([(old, new), ...], the task that fails, texts of its message)
BUGS = {
    "no special case at the last row and column": (
        [("    if low >= size - 1:  # at (or past) the last pixel: no pixel after it to blend with\n"
          "        low = high = size - 1\n"
          "        t = float(low)\n"
          "    else:\n"
          "        high = low + 1\n", "    high = low + 1\n")],
        "bilinear_interpolate", ["bilinear_interpolate(feature (3, 5, 7), y=",
                                 "[past the last row or column (low = high = size - 1)]",
                                 "raised IndexError", "at broken.py, line", "in bilinear_interpolate",
                                 "hint: at the last row (y_low >= H - 1) there is no row after it"],
    ),
    "points outside read the edge instead of 0": (
        [("    " + TABLE.OUTSIDE + "  # more than one pixel outside: reads 0\n"
          "        return np.zeros(feature.shape[0], dtype=feature.dtype)\n", "")],
        "bilinear_interpolate", ["the point is outside the margin (reads 0): expected [0, 0, 0]"],
    ),
    "a scalar instead of a (C,) vector": (
        [("+ ly * lx * feature[:, y_high, x_high])", "+ ly * lx * feature[:, y_high, x_high]).sum()")],
        "bilinear_interpolate", ["[inside]:\nexpected shape (3,), got ()"],
    ),
    "count without max(., 1), in Python floats: ZeroDivisionError": (
        [("count = max(g_h * g_w, 1)", "count = g_h * g_w"),
         ("out[r, :, p, q] = total / count", "out[r, :, p, q] = total / float(count) if count else 1 / count")],
        "roi_align", ["aligned=True, sampling_ratio=-1 (adaptive)]:\nraised ZeroDivisionError", "at broken.py, line",
                      "hint: count = max(g_h * g_w, 1)"],
    ),
    "bins transposed": (
        [("out[r, :, p, q] = total / count", "out[r, :, q, p] = total / count")],
        "roi_align", ["(7, 7)", "hint: the bins are transposed"],
    ),
    "output_size read as (pw, ph)": (
        [("    ph, pw = output_size\n", "    pw, ph = output_size\n")],
        "roi_align", ["output_size=(5, 3)", "expected shape (16, 4, 5, 3), got (16, 4, 3, 5)",
                      "hint: the output is (R, C, ph, pw): ph bins along y (rows), pw along x (columns)"],
    ),
    "output channels last": (
        [("out = np.zeros((len(rois), C, ph, pw), dtype=features.dtype)",
          "out = np.zeros((len(rois), ph, pw, C), dtype=features.dtype)"),
         ("out[r, :, p, q] = total / count", "out[r, p, q, :] = total / count")],
        "roi_align", ["expected shape (16, 4, 7, 7), got (16, 7, 7, 4)", "hint: the output is (R, C, ph, pw): channels "
                                                                       "before the bins"],
    ),
    "roi_align on a broken bilinear_interpolate": (
        [("return low, high, 1.0 - frac, frac", "return low, high, frac, 1.0 - frac")],
        "roi_align", ["hint: your bilinear_interpolate is wrong (task (a)): if roi_align uses it, fix it first"],
    ),
    "roi_align imported from the library": (
        [("# --- task (c)", "from mrcnn_np.ops.roi_align import roi_align  # noqa: E402\n\n\n# --- task (c)")],
        "roi_align", ["imported from elsewhere"],
    ),
    "roi_align without a return": (
        [("    return out\n", "    out\n")],
        "roi_align", ["got None (a missing return?)"],
    ),
    "a gradient for the first image only": (
        [("grad_input = np.zeros(input_shape, dtype=grad_output.dtype)",
          "grad_input = np.zeros((1, *input_shape[1:]), dtype=grad_output.dtype)"),
         ("grad_input[int(rois[r, 0])]", "grad_input[0]")],
        "roi_align_backward", ["expected shape (3, 4, 23, 31), got (1, 4, 23, 31)",
                               "hint: the gradient has the features' shape input_shape (N, C, H, W)"],
    ),
    "a gradient that crashes on the adaptive zero-width box": (
        [(TABLE.SHARE, "share = 1.0 / (n_y * n_x)")],
        "roi_align_backward", ["aligned=True, sampling_ratio=-1 (adaptive)]:\nraised ZeroDivisionError",
                               "hint: count = max(g_h * g_w, 1)"],
    ),
    "float levels": (
        [(TABLE.CLIP, "return np.clip(k, k_min, k_max)")],
        "map_levels", ["expected int64 levels, got dtype float64", "hint: np.floor returns floats"],
    ),
    "int32 levels": (
        [(TABLE.CLIP, "return np.clip(k, k_min, k_max).astype(np.int32)")],
        "map_levels", ["expected int64 levels, got dtype int32"],
    ),
}


test_each_mistake_is_recognised_with_its_hint, test_a_broken_solution_fails_its_task, test_the_tables_agree = \
    support.chapter_tests(CHAPTER, TASK_NAMES, SHOWS, BUGS,  # 0 / 0 of a broken copy:
                          mistake_warnings="ignore:invalid value encountered in divide:RuntimeWarning")


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    changes = MISTAKES["no max(size, 1) when not aligned"].changes
    results = support.grade(CHAPTER, support.broken(CHAPTER, changes), tmp_path)
    assert [name for name, r in results.items() if r.status != PASS] == ["roi_align"]
    results = support.grade(CHAPTER, support.broken(CHAPTER, MISTAKES["rounding instead of flooring"].changes), tmp_path)
    # the solution's roi_align_backward shares bilinear_interpolate's neighbour rule (_neighbours)
    assert [name for name, r in results.items() if r.status != PASS] == ["bilinear_interpolate", "roi_align",
                                                                         "roi_align_backward"]


def test_roi_align_needs_bilinear_interpolate_when_it_uses_it(tmp_path):
    source = support.broken(CHAPTER, [("    _, H, W = feature.shape\n    if y < -1.0",
                                       '    raise NotImplementedError("task (a): write bilinear_interpolate")\n'
                                       "    if y < -1.0")])
    results = support.grade(CHAPTER, source, tmp_path)
    assert results["bilinear_interpolate"].status == TODO
    assert results["roi_align"].status == TODO and "write bilinear_interpolate" in results["roi_align"].message
    assert results["map_levels"].status == PASS


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def test_bilinear_points_are_read_exactly_where_they_are():
    for feature, points in GRADER._bilinear_cases():
        _, H, W = feature.shape
        wheres = {where for where, _, _ in points}
        assert {"between -1 and 0 (clamped to 0)", "on the limit -1 (still inside: clamped to 0)",
                "on the limit H or W (still inside: reads the last row or column)",
                "past the last row or column (low = high = size - 1)", "outside the margin (reads 0)"} <= wheres
        if H > 1 and W > 1:
            assert {"inside", "on a pixel"} <= wheres
        for where, y, x in points:
            assert (y + 0.5) - 0.5 == y and (x + 0.5) - 0.5 == x  # the zero-size box samples (y, x) exactly
            assert (y < -1 or y > H or x < -1 or x > W) == ("outside" in where), (where, y, x)
        just_outside = [(y, x) for _, y, x in points if -1 - 1e-3 < min(y, x) < -1 or H < y < H + 1e-3
                        or W < x < W + 1e-3]
        assert len(just_outside) == 4


def without_samples(rois, output_size, spatial_scale, sampling_ratio, aligned):
    """(R,) bool: the boxes whose bins hold no sample point -- aligned, sampling_ratio <= 0 and a
    box of zero width or height, so that g = ceil(0 / bins) = 0. Their bins read 0."""
    if aligned and sampling_ratio <= 0 and len(rois):
        ph, pw = output_size
        x1, y1, x2, y2 = (rois[:, k] * spatial_scale - 0.5 for k in range(1, 5))
        return (np.ceil((y2 - y1) / ph) == 0) | (np.ceil((x2 - x1) / pw) == 0)
    return np.zeros(len(rois), dtype=bool)


def test_roi_align_cases_reach_every_rule():
    cases = list(GRADER._roi_align_cases())
    assert {aligned for *_, aligned in cases} == {False, True}
    assert {sampling > 0 for *_, sampling, _ in cases} == {False, True}
    assert any(len(c[2]) and len(np.unique(c[2][:, 0])) == 3 for c in cases)  # boxes on several images
    assert any(len(c[2]) == 0 for c in cases)
    assert any(without_samples(*c[2:3], *c[4:]).any() for c in cases)  # aligned, adaptive, zero width

def test_boxes_without_sample_points_read_zero_in_torchvision():
    cases = [c for c in GRADER._roi_align_cases() if without_samples(c[2], *c[4:]).any()]
    assert len(cases) == 2
    for _, features, rois, labels, *args in cases:
        empty = without_samples(rois, *args)
        assert {labels[i] for i in np.flatnonzero(empty)} == {"zero width (x1 == x2)"}
        theirs = torchvision.ops.roi_align(torch.tensor(features), torch.tensor(rois), *args).numpy()
        assert not theirs[empty].any() and theirs[~empty].any()


def test_level_cases_need_the_eps_and_hit_the_powers_of_two():
    cases = {label: (boxes, kwargs) for label, boxes, kwargs in GRADER._level_cases()}
    (eps_label,) = [label for label in cases if "float corners" in label]
    boxes, _ = cases[eps_label]
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert (sides < np.array([112.0, 224.0, 448.0, 112.0, 448.0])).all() and (sides > [111.99, 223.99, 447.99,
                                                                                       111.99, 447.99]).all()
    with_eps = exercises.load_module(support.solution(CHAPTER)).map_levels(boxes)
    without = exercises.broken_solution(support.solution(CHAPTER), MISTAKES["levels without eps"].changes).map_levels(boxes)
    assert with_eps.tolist() == [3, 4, 5, 3, 5] and (without == with_eps - 1).all()
    (exact_label,) = [label for label in cases if label.startswith("boxes of exactly")]
    boxes, _ = cases[exact_label]
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert {112.0, 224.0, 448.0} <= set(sides.tolist())
    for side in (112.0, 224.0, 448.0):
        assert 4 + math.log2(side / 224) == int(4 + math.log2(side / 224))  # exactly on a level boundary


# --- the backward pass: its cases, and its third judge -------------------------------------------------
def test_backward_cases_are_the_forward_cases_with_a_gradient():
    forward, backward = list(GRADER._roi_align_cases()), list(GRADER._backward_cases())
    assert [c[0] for c in forward] == [c[0] for c in backward]
    for case, (*same, grad_output) in zip(forward, backward, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(case[1:3], same[1:3], strict=True)) and case[3:] == tuple(same[3:])
        assert grad_output.shape == (len(case[2]), case[1].shape[1], *case[4]) and grad_output.dtype == np.float64


def test_the_gradient_is_the_adjoint_of_the_forward():
    """<g, roi_align(f)> = <roi_align_backward(g), f> for the solution, on every case: the grader's
    references (torch and mrcnn_np autograd) compute the same map."""
    solution = exercises.load_module(support.solution(CHAPTER))
    rng = np.random.default_rng(0)
    for _, features, rois, _, output_size, scale, sampling, aligned, grad_output in GRADER._backward_cases():
        f = rng.standard_normal(features.shape)
        forward = solution.roi_align(f, rois, output_size, scale, sampling, aligned)
        backward = solution.roi_align_backward(grad_output, rois, features.shape, scale, sampling, aligned)
        assert math.isclose((grad_output * forward).sum(), (backward * f).sum(), rel_tol=1e-12, abs_tol=1e-12)
        theirs = torch.tensor(features, requires_grad=True)
        torchvision.ops.roi_align(theirs, torch.tensor(rois), output_size, scale, sampling, aligned).backward(
            torch.tensor(grad_output))
        assert np.abs(theirs.grad.numpy() - backward).max() <= 1e-12 * max(np.abs(backward).max(), 1.0)


@pytest.mark.parametrize("name", [m.name for m in GRADER.MISTAKES if m.task == "roi_align_backward"])
def test_central_differences_alone_reject_each_backward_mistake(name):
    """The third judge is not a formality: on the first case where a tabled mistake's gradient
    differs, central differences of sum(grad_output * roi_align(features)) reject it."""
    broken = exercises.broken_solution(support.solution(CHAPTER), MISTAKES[name].changes)
    solution = exercises.load_module(support.solution(CHAPTER))
    for _, features, rois, _, output_size, scale, sampling, aligned, grad_output in GRADER._backward_cases():
        args = (grad_output, rois, features.shape, scale, sampling, aligned)
        right, wrong = solution.roi_align_backward(*args), broken.roi_align_backward(*args)
        if not exercises.matches(wrong, right):
            def f(x, rest=(rois, output_size, scale, sampling, aligned), grad_output=grad_output):
                return float((grad_output * GRADER._library_roi_align(x, *rest)).sum())
            assert_gradient(right, f, features, "the solution", probes=96)
            with pytest.raises(AssertionError, match="vs central differences"):
                assert_gradient(wrong, f, features, name, probes=96)
            return
    raise AssertionError(f"{name}: no case tells it from the solution")
