"""Chapter 04 (RoIAlign): the grader fails the right task, with a helpful message.

test_exercises.py already grades every chapter both ways (the solution passes, the stub is
all TODO). Here, deliberately broken copies of the reference solution prove that each
classic mistake fails the task it belongs to and that the message names it; the grader's
crafted cases are checked to be what their labels say.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from mrcnn_np import exercises
from mrcnn_np.exercises import FAIL, PASS, TODO

EXERCISES = Path(__file__).resolve().parents[2] / "exercises"
CHAPTER = "04_roi_align"
SOLUTION = EXERCISES / "solutions" / f"{CHAPTER}.py"
TASK_NAMES = ["bilinear_interpolate", "roi_align", "map_levels"]


def by_name(results):
    return {r.name: r for r in results}


def grade_text(tmp_path, text, name="broken.py"):
    path = tmp_path / name
    path.write_text(text)
    return by_name(exercises.grade("04", path, exercises_dir=EXERCISES))


def broken(replacements):
    """The solution with each (old, new) replacement made; every ``old`` must occur exactly once."""
    source = SOLUTION.read_text()
    for old, new in replacements:
        assert source.count(old) == 1, f"the solution changed: update this test's bug ({old!r})"
        source = source.replace(old, new)
    return source


CLAMP = "    t = max(t, 0.0)  # between -1 and 0: read the first pixel\n"
OUTSIDE = "    if y < -1.0 or y > H or x < -1.0 or x > W:  # more than one pixel outside: reads 0\n"
GRID_H = "g_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)"
GRID_W = "g_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)"
MIN_ONE = "        if not aligned:  # the original RoIAlign: a tiny box is read as at least 1 x 1 pixel\n"
SCALED = "x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)"
LEVEL = "k = np.floor(canonical_level + np.log2(scale / canonical_scale) + eps)"
CLIP = "return np.clip(k, k_min, k_max).astype(np.int64)"

# name: ([(text in the solution, replacement), ...], the task that must fail, texts its message must contain)
BUGS = {
    # --- (a) bilinear_interpolate
    "no -1 margin: points between -1 and 0 read 0": (
        [(OUTSIDE, "    if y < 0.0 or y > H or x < 0.0 or x > W:\n")],
        "bilinear_interpolate", ["vs mrcnn_np.ops.roi_align (a zero-size box sampled once at (y, x)): values differ",
                                 "the point is between -1 and 0 (clamped to 0)",
                                 "hint: a point reads 0 only when it is more than one pixel outside"],
    ),
    "the limits -1 and H taken as outside": (
        [(OUTSIDE, "    if y <= -1.0 or y >= H or x <= -1.0 or x >= W:\n")],
        "bilinear_interpolate", ["y=-1.0, x=-1.0", "the point is on the limit -1 (still inside: clamped to 0)",
                                 "hint: the limits are inside"],
    ),
    "negative coordinates not clamped (int truncates to 0: extrapolation)": (
        [(CLAMP, "")],
        "bilinear_interpolate", ["between -1 and 0", "hint: clamp a negative coordinate to 0 before taking int(y)"],
    ),
    "negative coordinates not clamped, floor (index -1: the last row)": (
        [(CLAMP, ""), ("    low = int(t)", "    low = math.floor(t)")],
        "bilinear_interpolate", ["hint: clamp a negative coordinate to 0 first", "feature[:, -1] is the *last* row"],
    ),
    "rounding instead of flooring": (
        [("    low = int(t)", "    low = round(t)")],
        "bilinear_interpolate", ["the point is inside", "hint: y_low = int(y), the pixel at or before the point"],
    ),
    "weights of the two neighbours swapped": (
        [("return low, high, 1.0 - frac, frac", "return low, high, frac, 1.0 - frac")],
        "bilinear_interpolate", ["hint: the nearer pixel weighs more"],
    ),
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
        [(OUTSIDE + "        return np.zeros(feature.shape[0], dtype=feature.dtype)\n", "")],
        "bilinear_interpolate", ["the point is outside the margin (reads 0): expected [0, 0, 0]"],
    ),
    "a scalar instead of a (C,) vector": (
        [("+ ly * lx * feature[:, y_high, x_high])", "+ ly * lx * feature[:, y_high, x_high]).sum()")],
        "bilinear_interpolate", ["[inside]:\nexpected shape (3,), got ()"],
    ),
    # --- (b) roi_align
    "no -0.5 shift when aligned": (
        [("offset = 0.5 if aligned else 0.0", "offset = 0.0")],
        "roi_align", ["aligned=True, sampling_ratio=2] vs mrcnn_np.ops.roi_align: values differ",
                      "the largest error is in rois[", "hint: aligned=True shifts the scaled box by half a pixel"],
    ),
    "the -0.5 shift also when not aligned": (
        [("offset = 0.5 if aligned else 0.0", "offset = 0.5")],
        "roi_align", ["aligned=False, sampling_ratio=2 (Mask R-CNN's box head)]",
                      "hint: shift by -0.5 only when aligned=True"],
    ),
    "shift before scaling": (
        [(SCALED, "x1, y1, x2, y2 = ((v - offset) * spatial_scale for v in box)")],
        "roi_align", ["aligned=True", "hint: scale first, then shift"],
    ),
    "no max(size, 1) when not aligned": (
        [(MIN_ONE, "        if False:\n")],
        "roi_align", ["aligned=False, sampling_ratio=2", "(thin: less than a feature pixel high)",
                      "hint: when aligned=False, a box smaller than one feature pixel is read as 1 pixel"],
    ),
    "max(size, 1) also when aligned": (
        [(MIN_ONE, "        if True:\n")],
        "roi_align", ["aligned=True, sampling_ratio=2", "hint: the minimum size of 1 pixel is for aligned=False only"],
    ),
    "averaging over the points inside the map only": (
        [("                total = np.zeros(C, dtype=features.dtype)\n",
          "                total = np.zeros(C, dtype=features.dtype)\n                count = 0\n"),
         ("total += bilinear_interpolate(feature, y, x)  # (C,); 0 outside the map\n",
          "total += bilinear_interpolate(feature, y, x)  # (C,); 0 outside the map\n"
          "                        count += -1 <= y <= feature.shape[1] and -1 <= x <= feature.shape[2]\n"),
         ("out[r, :, p, q] = total / count", "out[r, :, p, q] = total / max(count, 1)")],
        "roi_align", ["the largest error is in rois[", "hint: divide by the number of sample points, max(g_h * g_w, 1)"],
    ),
    "count without max(., 1): 0 / 0 for a box without sample points": (
        [("count = max(g_h * g_w, 1)", "count = g_h * g_w")],
        "roi_align", ["aligned=True, sampling_ratio=-1 (adaptive)", "(zero width (x1 == x2))",
                      "hint: count = max(g_h * g_w, 1)"],
    ),
    "count without max(., 1), in Python floats: ZeroDivisionError": (
        [("count = max(g_h * g_w, 1)", "count = g_h * g_w"),
         ("out[r, :, p, q] = total / count", "out[r, :, p, q] = total / float(count) if count else 1 / count")],
        "roi_align", ["aligned=True, sampling_ratio=-1 (adaptive)]:\nraised ZeroDivisionError", "at broken.py, line",
                      "hint: count = max(g_h * g_w, 1)"],
    ),
    "adaptive grid rounded to the nearest": (
        [(GRID_H, GRID_H.replace("math.ceil", "round")), (GRID_W, GRID_W.replace("math.ceil", "round"))],
        "roi_align", ["sampling_ratio=0 (adaptive)", "hint: the adaptive grid rounds up: g_h = ceil(roi_h / ph), "
                                                     "not round"],
    ),
    "adaptive grid rounded down": (
        [(GRID_H, GRID_H.replace("math.ceil", "int")), (GRID_W, GRID_W.replace("math.ceil", "int"))],
        "roi_align", ["hint: the adaptive grid rounds up: g_h = ceil(roi_h / ph), not floor or int()"],
    ),
    "sampling_ratio <= 0 taken literally": (
        [(GRID_H, "g_h = sampling_ratio"), (GRID_W, "g_w = sampling_ratio")],
        "roi_align", ["sampling_ratio=0 (adaptive)", "hint: sampling_ratio <= 0 means adaptive"],
    ),
    "samples at the sub-bins' corners": (
        [("(i + 0.5) * bin_h / g_h", "i * bin_h / g_h"), ("(j + 0.5) * bin_w / g_w", "j * bin_w / g_w")],
        "roi_align", ["hint: sample at the centres of the g_h x g_w sub-bins"],
    ),
    "no spatial_scale": (
        [(SCALED, "x1, y1, x2, y2 = (v - offset for v in box)")],
        "roi_align", ["hint: rois are in image pixels: multiply them by spatial_scale"],
    ),
    "every box read from the first image": (
        [("feature = features[int(batch_index)]", "feature = features[0]")],
        "roi_align", ["image 2, box", "hint: read each box from its own image"],
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
    "roi_align on a bilinear_interpolate without the -1 margin": (
        [(OUTSIDE, "    if y < 0.0 or y > H or x < 0.0 or x > W:\n")],
        "roi_align", ["hint: a sample point reads 0 only when it is more than one pixel outside the map"],
    ),
    "roi_align imported from the library": (
        [("# --- task (c)", "from mrcnn_np.ops.roi_align import roi_align  # noqa: E402\n\n\n# --- task (c)")],
        "roi_align", ["imported from elsewhere"],
    ),
    "roi_align without a return": (
        [("    return out\n", "    out\n")],
        "roi_align", ["got None (a missing return?)"],
    ),
    # --- (c) map_levels
    "levels without eps": (
        [(LEVEL, LEVEL.replace(" + eps)", ")"))],
        "map_levels", ["whose float corners make them a hair (< 1e-12 px) smaller", "5 of 5 levels differ",
                       "sqrt(area) = 111.99999999999994: expected level 3, got 2", "hint: add eps before the floor"],
    ),
    "levels rounded instead of floored": (
        [(LEVEL, LEVEL.replace("np.floor", "np.round"))],
        "map_levels", ["random boxes", "hint: floor, not round"],
    ),
    "levels not clamped": (
        [(CLIP, "return k.astype(np.int64)")],
        "map_levels", ["hint: clamp the level to [k_min, k_max]"],
    ),
    "level indices k - k_min instead of levels": (
        [(CLIP, CLIP + " - k_min")],
        "map_levels", ["hint: return the level k itself"],
    ),
    "level of the area instead of its square root": (
        [("scale = np.sqrt(area)", "scale = area")],
        "map_levels", ["hint: a box's scale is sqrt(area)"],
    ),
    "natural log": (
        [(LEVEL, LEVEL.replace("np.log2", "np.log"))],
        "map_levels", ["hint: log2, not the natural logarithm"],
    ),
    "defaults written in instead of the arguments": (
        [(LEVEL, "k = np.floor(4 + np.log2(scale / 224) + 1e-6)"), (CLIP, "return np.clip(k, 2, 5).astype(np.int64)")],
        "map_levels", ["k_min=3, k_max=6, canonical_scale=200, canonical_level=5, eps=0.01",
                       "hint: use the arguments k_min, k_max, canonical_scale, canonical_level and eps"],
    ),
    "float levels": (
        [(CLIP, "return np.clip(k, k_min, k_max)")],
        "map_levels", ["expected int64 levels, got dtype float64", "hint: np.floor returns floats"],
    ),
    "int32 levels": (
        [(CLIP, "return np.clip(k, k_min, k_max).astype(np.int32)")],
        "map_levels", ["expected int64 levels, got dtype int32"],
    ),
}


NAN_BUGS = {"count without max(., 1): 0 / 0 for a box without sample points"}  # the broken copy warns of 0 / 0


@pytest.mark.parametrize("bug", [pytest.param(bug, marks=pytest.mark.filterwarnings(
    "ignore:invalid value encountered in divide:RuntimeWarning")) if bug in NAN_BUGS else bug for bug in BUGS])
def test_a_broken_solution_fails_its_task(bug, tmp_path):
    replacements, task, texts = BUGS[bug]
    result = grade_text(tmp_path, broken(replacements))[task]
    assert result.status == FAIL, exercises.format_report([result])
    for text in texts:
        assert text in result.message, result.message


def test_a_bug_in_one_task_leaves_the_unrelated_tasks_passing(tmp_path):
    results = grade_text(tmp_path, broken(BUGS["no max(size, 1) when not aligned"][0]))
    assert [r.name for r in results.values() if r.status == FAIL] == ["roi_align"]
    assert results["bilinear_interpolate"].status == PASS and results["map_levels"].status == PASS
    results = grade_text(tmp_path, broken(BUGS["rounding instead of flooring"][0]))
    assert results["bilinear_interpolate"].status == FAIL and results["roi_align"].status == FAIL
    assert results["map_levels"].status == PASS


def test_roi_align_needs_bilinear_interpolate_when_it_uses_it(tmp_path):
    source = broken([("    _, H, W = feature.shape\n    if y < -1.0",
                      '    raise NotImplementedError("task (a): write bilinear_interpolate")\n    if y < -1.0')])
    results = grade_text(tmp_path, source)
    assert results["bilinear_interpolate"].status == TODO
    assert results["roi_align"].status == TODO and "write bilinear_interpolate" in results["roi_align"].message
    assert results["map_levels"].status == PASS


# --- the grader's crafted cases are what their labels say ---------------------------------------------
def load_grader():
    return exercises.load_grader(EXERCISES / CHAPTER)


def test_bilinear_points_are_read_exactly_where_they_are():
    grader = load_grader()
    for feature, points in grader._bilinear_cases():
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


def test_the_bilinear_reference_is_torchvisions_rule():
    """The grader's own bilinear read (its hint variants' base) equals the library's reference."""
    grader = load_grader()
    for feature, points in grader._bilinear_cases():
        mine = np.stack([grader._bilinear_variant(feature, y, x) for _, y, x in points])
        rois = grader._point_rois(points)
        library = grader._library_roi_align(feature[None], rois, (1, 1), 1.0, 1, True)[..., 0, 0]  # (P, C)
        np.testing.assert_allclose(mine, library, rtol=1e-14, atol=1e-15)


def test_roi_align_cases_reach_every_rule():
    """Each case set tells the right answer from the recognised mistakes it is meant to catch."""
    grader = load_grader()
    cases = list(grader._roi_align_cases())
    assert {aligned for *_, aligned in cases} == {False, True}
    assert {sampling > 0 for *_, sampling, _ in cases} == {False, True}
    assert any(len(c[2]) and len(np.unique(c[2][:, 0])) == 3 for c in cases)  # boxes on several images
    assert any(len(c[2]) == 0 for c in cases)

    def differs(case, **mistake):
        _, features, rois, _, *args = case
        right = grader._roi_align_variant(features, rois, *args)
        wrong = grader._roi_align_variant(features, rois, *args, **mistake)
        return not np.allclose(right, wrong, rtol=1e-9, atol=1e-12, equal_nan=True)

    for kwargs, _ in grader.ROI_ALIGN_HINTS:
        assert any(differs(case, **kwargs) for case in cases), kwargs
    # a box without sample points: aligned, adaptive, zero width
    assert any(grader._without_samples(*c[2:3], *c[4:]).any() for c in cases)


def test_the_roi_align_variant_engine_is_torchvision():
    grader = load_grader()
    for _, features, rois, _, output_size, scale, sampling, aligned in grader._roi_align_cases():
        ours = grader._roi_align_variant(features, rois, output_size, scale, sampling, aligned)
        theirs = torchvision.ops.roi_align(torch.tensor(features), torch.tensor(rois), output_size, scale, sampling,
                                           aligned).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_boxes_without_sample_points_read_zero_in_torchvision():
    grader = load_grader()
    cases = [c for c in grader._roi_align_cases() if grader._without_samples(c[2], *c[4:]).any()]
    assert len(cases) == 2
    for _, features, rois, labels, *args in cases:
        empty = grader._without_samples(rois, *args)
        assert {labels[i] for i in np.flatnonzero(empty)} == {"zero width (x1 == x2)"}
        theirs = torchvision.ops.roi_align(torch.tensor(features), torch.tensor(rois), *args).numpy()
        assert not theirs[empty].any() and theirs[~empty].any()


def test_level_cases_need_the_eps_and_hit_the_powers_of_two():
    grader = load_grader()
    cases = {label: (boxes, kwargs) for label, boxes, kwargs in grader._level_cases()}
    (eps_label,) = [label for label in cases if "float corners" in label]
    boxes, _ = cases[eps_label]
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert (sides < np.array([112.0, 224.0, 448.0, 112.0, 448.0])).all() and (sides > [111.99, 223.99, 447.99,
                                                                                       111.99, 447.99]).all()
    with_eps, without = grader._level_variant(boxes), grader._level_variant(boxes, eps=0.0)
    assert with_eps.tolist() == [3, 4, 5, 3, 5] and (without == with_eps - 1).all()
    (exact_label,) = [label for label in cases if label.startswith("boxes of exactly")]
    boxes, _ = cases[exact_label]
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert {112.0, 224.0, 448.0} <= set(sides.tolist())
    for side in (112.0, 224.0, 448.0):
        assert 4 + math.log2(side / 224) == int(4 + math.log2(side / 224))  # exactly on a level boundary
