"""Grader of exercise 09: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases. roi_pool is compared with ``mrcnn_np.ops.roi_pool.roi_pool``
and ``torchvision.ops.roi_pool`` to 1e-10 of the reference's largest value; proposal_recall with
the recall computed from ``mrcnn_np.ops.box_iou`` and ``torchvision.ops.box_iou``; and
roi_pool_misalignment with what the operations themselves say: pooled from ramp maps (value =
column, -column, row, -row), RoIPool's maxima are the first and last pixels of each bin's window
and RoIAlign's averages the centres of its bins, in mrcnn_np's kernels and torchvision's. When a
result is wrong in a way the grader recognises (the mistakes in ``mistakes.py``), the message
ends with a hint.
"""

import numpy as np

from mrcnn_np.exercises import (
    Mistakes,
    Task,
    as_tuple,
    assert_close,
    assert_close_scalar,
    compare,
    for_each_case,
    function,
    references,
    shape_str,
)
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import fmt_vector as _fmt

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)


# --- task (a) ----------------------------------------------------------------------------------
def _roi_pool_cases():
    """(label, features, rois, labels of the rois, output_size, spatial_scale)."""
    rng = np.random.default_rng(90)
    features = rng.standard_normal((3, 4, 23, 31))  # P2-like: an image of 92 x 124 at spatial_scale 1/4
    crafted = [
        ("wholly outside the map (above, left): every bin empty", [-40.0, -30.0, -10.0, -9.0]),
        ("partly outside the map (bottom-right corner)", [100.0, 70.0, 150.0, 120.0]),
        ("corners on halves: 10 x 1/4 = 2.5 ... rounded away from zero", [10.0, 18.0, 26.0, 34.0]),
        ("negative corners on halves: -10 x 1/4 = -2.5", [-10.0, -2.0, 6.0, 2.0]),
        ("tiny: both corners round to one pixel", [41.0, 41.3, 41.2, 41.5]),
        ("the whole image", [0.0, 0.0, 124.0, 92.0]),
    ]
    xy = rng.uniform(-8, [118, 86], (10, 2))
    wh = np.exp(rng.uniform(np.log(3.0), np.log(80.0), (10, 2)))
    labels = [label for label, _ in crafted] + ["a random box"] * 10
    boxes = np.concatenate([np.array([b for _, b in crafted]), np.concatenate([xy, xy + wh], axis=1)])  # (16, 4)
    rois = np.concatenate([(np.arange(len(boxes)) % 3)[:, None].astype(np.float64), boxes], axis=1)  # (16, 5)
    yield "7 x 7 bins, spatial_scale 1/4 (P2)", features, rois, labels, (7, 7), 0.25
    yield "3 x 5 bins (ph != pw), spatial_scale 1/4", features, rois, labels, (3, 5), 0.25
    small = rng.standard_normal((2, 3, 12, 16))  # P3-like: an image of 96 x 128 at spatial_scale 1/8
    on_p3 = np.concatenate([(np.arange(len(boxes)) % 2)[:, None].astype(np.float64), boxes], axis=1)
    yield "14 x 14 bins (more bins than pixels), spatial_scale 1/8 (P3)", small, on_p3, labels, (14, 14), 0.125
    yield "2 x 2 bins, spatial_scale 1", small, np.concatenate([on_p3[:, :1], on_p3[:, 1:] / 8], axis=1), labels, \
        (2, 2), 1.0
    yield "no boxes: rois (0, 5)", small, np.zeros((0, 5)), [], (7, 7), 0.125


def check_roi_pool(ex, label, features, rois, labels, output_size, spatial_scale):
    from mrcnn_np.ops.roi_pool import roi_pool

    what = (f"roi_pool(features {shape_str(features.shape)}, rois {shape_str(rois.shape)}, output_size={output_size}, "
            f"spatial_scale={spatial_scale}) [{label}]")
    got = _call(ex, function(ex, "roi_pool"), (features.copy(), rois.copy(), output_size, spatial_scale), what)

    def row(i):
        return f"rois[{i}] = {_fmt(rois[i])} ({labels[i]})"

    refs, note = references(
        ("mrcnn_np.ops.roi_pool", roi_pool(features, rois, output_size, spatial_scale).data),
        ("torch", "torchvision.ops"),
        lambda torch, ops: ("torchvision.ops.roi_pool", ops.roi_pool(
            torch.tensor(features), torch.tensor(rois), output_size, spatial_scale).numpy()))
    compare(got, refs, lambda got, expected, name: assert_close(got, expected, f"{what} vs {name}", RTOL, row),
            lambda expected: MISTAKES.hint("roi_pool", got, expected, lambda f: f(
                features.copy(), rois.copy(), output_size, spatial_scale)))
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _recall_cases():
    """(label, proposals (P, 4), gt_boxes (G, 4), iou_threshold)."""
    rng = np.random.default_rng(91)
    xy = rng.uniform(0, 200, (6, 2))
    gt = np.concatenate([xy, xy + rng.uniform(20, 120, (6, 2))], axis=1)  # (6, 4)
    sides = np.concatenate([gt[:, 2:] - gt[:, :2]] * 2, axis=1)  # (6, 4) w, h, w, h
    near = rng.integers(0, 6, 30)  # the box each of 30 proposals is a noisy copy of
    jitter = gt[near] + rng.normal(0, 0.2, (30, 4)) * sides[near]  # (30, 4)
    xy = rng.uniform(0, 300, (20, 2))
    clutter = np.concatenate([xy, xy + rng.uniform(5, 100, (20, 2))], axis=1)
    low, high = np.minimum(jitter[:, :2], jitter[:, 2:] - 1), np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
    jitter = np.concatenate([low, high], axis=1)  # (30, 4) every box at least 1 px wide and high
    proposals = np.concatenate([jitter, clutter])  # (50, 4)
    yield "jittered copies of the boxes and clutter, IoU 0.5", proposals, gt, 0.5
    yield "the same, IoU 0.7", proposals, gt, 0.7
    yield "the same, IoU 0.8", proposals, gt, 0.8
    exact = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [60.0, 0.0, 80.0, 30.0]])
    halves = np.array([[0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 40.0, 30.0], [0.0, 50.0, 10.0, 60.0]])
    yield "proposals at IoU exactly 0.5 with two of three boxes", halves, exact, 0.5
    crowd = np.array([[1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.5], [0.5, 0.0, 10.0, 10.0], [0.0, 0.2, 9.8, 10.0],
                      [60.0, 0.0, 80.0, 31.0]])
    yield "many proposals on one box, one on another, none on the third", crowd, exact, 0.7
    yield "more boxes than proposals", proposals[:2], gt, 0.5
    yield "no proposals: nothing is recalled", np.zeros((0, 4)), gt, 0.5


def _recall_of(iou, threshold):
    """The recall from a (G, P) IoU matrix: the fraction of rows whose maximum is >= threshold."""
    return float((iou.max(axis=1) >= threshold).mean()) if iou.shape[1] else 0.0


def _recall_crash_hint(proposals):
    def hint(exc):
        if len(proposals) == 0:
            return "with no proposals no box is recalled: return 0.0 (a maximum over no proposals raises)"
        return None
    return hint


def check_proposal_recall(ex, label, proposals, gt_boxes, iou_threshold):
    from mrcnn_np.ops import box_iou

    what = (f"proposal_recall(proposals {shape_str(proposals.shape)}, gt_boxes {shape_str(gt_boxes.shape)}, "
            f"iou_threshold={iou_threshold}) [{label}]")
    got = _call(ex, function(ex, "proposal_recall"), (proposals.copy(), gt_boxes.copy(), iou_threshold), what,
                _recall_crash_hint(proposals))
    refs, note = references(
        ("the recall from mrcnn_np.ops.box_iou", _recall_of(box_iou(gt_boxes, proposals), iou_threshold)),
        ("torch", "torchvision.ops"),
        lambda torch, ops: ("the recall from torchvision.ops.box_iou", _recall_of(
            ops.box_iou(torch.tensor(gt_boxes), torch.tensor(proposals)).numpy(), iou_threshold)))
    compare(got, refs, lambda got, expected, name: assert_close_scalar(got, expected, f"{what} vs {name}", RTOL),
            lambda expected: MISTAKES.hint("proposal_recall", got, expected, lambda f: f(
                proposals.copy(), gt_boxes.copy(), iou_threshold)))
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _misalignment_cases():
    """(label, box (4,), output_size, spatial_scale): boxes inside the image, x1 <= x2, y1 <= y2."""
    rng = np.random.default_rng(92)
    yield "a box on P2, 7 x 7 bins", np.array([10.3, 20.7, 90.2, 60.1]), (7, 7), 0.25
    yield "corners on halves on P2 (rounded away from zero)", np.array([10.0, 18.0, 26.0, 34.0]), (7, 7), 0.25
    for level in (3, 4, 5):
        xy = rng.uniform(0, 300, 2)
        wh = rng.uniform(56 * 2 ** (level - 2), 112 * 2 ** (level - 2), 2)
        yield f"a random box of P{level}'s size on P{level}", np.concatenate([xy, xy + wh]), (7, 7), 2.0 ** -level
    yield "14 x 14 bins (the mask head's) on P3", np.array([33.3, 41.9, 180.6, 150.2]), (14, 14), 0.125
    yield "3 x 5 bins (ph != pw) on P4", np.array([3.0, 7.0, 500.5, 301.0]), (3, 5), 1 / 16
    yield "a box smaller than one feature pixel on P4", np.array([100.0, 50.0, 100.2, 50.1]), (7, 5), 1 / 16


def _ramps(height, width):
    """(1, 4, height, width) maps x, -x, y, -y."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)  # (H, W) each
    return np.stack([x, -x, y, -y])[None]  # (1, 4, H, W)


def _offsets_from_pooled_ramps(pooled, aligned, spatial_scale):
    """(dy, dx) in image pixels from RoIPool's (4, ph, pw) and RoIAlign's (4, ph, pw) pooled ramps."""
    pool_x = (pooled[0, 0] - pooled[0, 1]) / 2  # (pw,): (last + first) / 2 of each column bin
    pool_y = (pooled[0, 2] - pooled[0, 3]) / 2  # (ph,)
    dx = (pool_x[0, :] - aligned[0][0, :]) / spatial_scale
    dy = (pool_y[:, 0] - aligned[2][:, 0]) / spatial_scale
    return dy, dx


def _library_offsets(box, output_size, spatial_scale):
    from mrcnn_np.ops.roi_align import roi_align
    from mrcnn_np.ops.roi_pool import roi_pool

    side = int(np.ceil(box.max() * spatial_scale)) + 4  # room past the box: no bin is clipped
    maps, rois = _ramps(side, side), np.concatenate([[0.0], box])[None]  # (1, 4, side, side), (1, 5)
    pooled = roi_pool(maps, rois, output_size, spatial_scale).data
    aligned = roi_align(maps, rois, output_size, spatial_scale, 2, False, impl="numpy").data[0]
    return _offsets_from_pooled_ramps(pooled, aligned, spatial_scale)


def _torch_offsets(torch, ops, box, output_size, spatial_scale):
    side = int(np.ceil(box.max() * spatial_scale)) + 4
    maps, rois = torch.tensor(_ramps(side, side)), torch.tensor(np.concatenate([[0.0], box])[None])
    pooled = ops.roi_pool(maps, rois, output_size, spatial_scale).numpy()
    aligned = ops.roi_align(maps, rois, output_size, spatial_scale, 2, False).numpy()[0]
    return _offsets_from_pooled_ramps(pooled, aligned, spatial_scale)


def check_roi_pool_misalignment(ex, label, box, output_size, spatial_scale):
    what = f"roi_pool_misalignment(box={_fmt(box)}, output_size={output_size}, spatial_scale={spatial_scale}) [{label}]"
    got = _call(ex, function(ex, "roi_pool_misalignment"), (box.copy(), output_size, spatial_scale), what)
    got = as_tuple(got, 2, what, "(dy, dx)")

    def check(got, expected, name):
        assert_close(got[0], expected[0], f"{what} vs {name}: dy (one per row of bins)", RTOL)
        assert_close(got[1], expected[1], f"{what} vs {name}: dx (one per column of bins)", RTOL)

    refs, note = references(
        ("mrcnn_np.ops.roi_pool and roi_align on ramp maps", _library_offsets(box, output_size, spatial_scale)),
        ("torch", "torchvision.ops"),
        lambda torch, ops: ("torchvision.ops.roi_pool and roi_align on ramp maps",
                            _torch_offsets(torch, ops, box, output_size, spatial_scale)))
    compare(got, refs, check, lambda expected: MISTAKES.hint(
        "roi_pool_misalignment", got, expected, lambda f: f(box.copy(), output_size, spatial_scale)))
    return note


TASKS = [
    Task("roi_pool", "(a) RoIPool, as torchvision.ops.roi_pool", for_each_case(_roi_pool_cases, check_roi_pool)),
    Task("proposal_recall", "(b) the fraction of boxes a proposal finds",
         for_each_case(_recall_cases, check_proposal_recall)),
    Task("roi_pool_misalignment", "(c) where RoIPool's bins sit, image px",
         for_each_case(_misalignment_cases, check_roi_pool_misalignment)),
]
