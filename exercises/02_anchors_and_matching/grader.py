"""Grader of exercise 02: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed cases in float64 and compares with the library (NumPy
implementations) and torchvision: IoU to 1e-12 and the box coder to 1e-10 of the
reference's largest value; anchors and NMS indices exactly. When a result is wrong in a
way the grader recognises (round half up, sizes and ratios swapped: the mistakes in
``mistakes.py``; ``>=`` in NMS, ...), the message ends with a hint.
"""

import math

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, caller, compare, for_each_case, function, references, shape_str
from mrcnn_np.exercises import as_array as _as_array
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import wrong_on as _wrong_on

STUB = "exercise.py"
MISTAKES = Mistakes(__file__)
IOU_RTOL = 1e-12
CODER_RTOL = 1e-10
DEFAULT_CLIP = math.log(1000.0 / 16)
DEFAULT_RATIOS = (0.5, 1.0, 2.0)

# (sizes, aspect ratios) of one location. 45 and 13 with ratio 1 end in .5 (round half to
# even); 10, 90 with 1.69 = 1.3**2, 0.49 = 0.7**2, 1.96 = 1.4**2 round differently in float32
# and float64.
CELL_CASES = [
    ((32,), DEFAULT_RATIOS),
    ((128, 256, 512), DEFAULT_RATIOS),
    ((45, 90, 13), (0.25, 1.0, 4.0)),
    ((10, 90, 170), (0.49, 1.69)),
    ((45,), (1.96, 0.36, 3.24, 1.0)),
]
# (image size (H, W), feature sizes [(h, w)], sizes per level, aspect ratios per level)
GRID_CASES = [
    ((96, 128), [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)],
     ((32,), (64,), (128,), (256,), (512,)), (DEFAULT_RATIOS,) * 5),  # FPN defaults, P2..P6
    ((75, 100), [(19, 25), (10, 13)], ((45, 90), (10, 128, 45)), ((0.25, 1.0, 4.0), (0.49, 1.69, 2.0))),
    ((33, 47), [(5, 7)], ((13, 95),), ((0.36, 1.0, 1.96, 1.21),)),
    ((40, 24), [(10, 6), (5, 3), (3, 2)], ((16,), (33,), (45, 21)), (DEFAULT_RATIOS, (1.0,), (2.0, 0.5))),
]
CODER_WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (1.0, 2.0, 3.0, 4.0)]


def _fmt(values, limit=12):
    """``[3, 0, 7]``, shortened to the first ``limit`` entries with a count."""
    values = [round(float(v), 6) if isinstance(v, float | np.floating) else int(v) for v in values]
    text = ", ".join(str(v) for v in values[:limit])
    return f"[{text}, ... ({len(values)} in all)]" if len(values) > limit else f"[{text}]"


# --- boxes for the cases ---------------------------------------------------------------------------
def _random_boxes(rng, n, extent=50.0, min_size=1.0, max_size=30.0):
    """(n, 4) xyxy boxes with corners in [0, extent + max_size] and sides in [min_size, max_size]."""
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(min_size, max_size, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _crafted_boxes():
    """Boxes whose IoUs are special: identical, nested, touching at an edge or a corner, disjoint."""
    return np.array([
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],  # identical to 0: IoU 1
        [2.0, 3.0, 5.0, 7.0],  # inside 0: IoU 12 / 100
        [10.0, 0.0, 20.0, 10.0],  # shares the edge x = 10 with 0: IoU 0
        [10.0, 10.0, 13.0, 12.0],  # touches 0 at the corner (10, 10): IoU 0
        [30.0, 40.0, 35.0, 41.5],  # far from everything
        [5.0, 5.0, 15.0, 15.0],  # overlaps 0 by a quarter: IoU 25 / 175
        [-4.5, -2.0, 0.5, 30.0],  # negative coordinates, thin overlap with 0
    ])


# --- task (a) ----------------------------------------------------------------------------------
def _iou_hint(got, expected, call):
    """A hint for a transposed result, else the hint of the mistake ``got`` reproduces."""
    if np.shape(got) == expected.shape[::-1] != expected.shape:
        return "the result is transposed: row i is boxes1[i], column j is boxes2[j]"
    return MISTAKES.hint("box_iou", got, expected, call)


def _iou_cases():
    rng = np.random.default_rng(21)
    crafted = _crafted_boxes()
    yield "random boxes1 (7, 4), boxes2 (9, 4)", _random_boxes(rng, 7), _random_boxes(rng, 9)
    yield "crafted boxes (8, 4) against themselves: identical, nested, touching, disjoint", crafted, crafted.copy()
    yield "crafted boxes (8, 4) against random (5, 4)", crafted, _random_boxes(rng, 5, extent=20.0)
    yield ("large and tiny boxes (1, 4) against (12, 4)", _random_boxes(rng, 1, 1000.0, 100.0, 800.0),
           np.concatenate([_random_boxes(rng, 6, 1500.0, 50.0, 600.0), _random_boxes(rng, 6, 1500.0, 0.01, 0.5)]))
    yield "boxes2 empty (an image without objects): (4, 4) against (0, 4)", _random_boxes(rng, 4), np.zeros((0, 4))


def check_box_iou(ex, label, boxes1, boxes2):
    from mrcnn_np.ops.boxes import box_iou as reference

    case = f"box_iou on {label}"
    call = caller(boxes1, boxes2)
    got = call(function(ex, "box_iou"))
    refs, note = references(("mrcnn_np.ops.box_iou", reference(boxes1, boxes2, impl="numpy")),
                            ("torch", "torchvision.ops"), lambda torch, ops: (
                                "torchvision.ops.box_iou", ops.box_iou(*map(torch.tensor, (boxes1, boxes2))).numpy()))
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", IOU_RTOL),
            lambda expected: _iou_hint(got, expected, call))
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _assert_same_rows(got, expected, what, describe_row):
    """Exact equality of (n, 4) arrays; the message names the first wrong row and how many there are."""
    expected = np.asarray(expected, dtype=np.float64)
    got = _as_array(got, expected.shape, what)
    try:
        got = got.astype(np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected a float array, got dtype {got.dtype}") from None
    if got.shape != expected.shape:
        raise AssertionError(f"{what}:\nexpected shape {shape_str(expected.shape)}, got {shape_str(got.shape)}")
    wrong = np.nonzero((got != expected).any(axis=1))[0]  # NaN != anything: wrong
    if wrong.size:
        i = int(wrong[0])
        raise AssertionError(f"{what}: {wrong.size} of {len(expected)} anchors differ (compared exactly)\n"
                             f"first at row {i} ({describe_row(i)}): expected {_fmt(expected[i])}, "
                             f"got {_fmt(got[i])}")


def _describe_cell_row(sizes, ratios):
    return lambda i: f"ratio {ratios[i // len(sizes)]}, size {sizes[i % len(sizes)]}"


def check_cell_anchors(ex, sizes, ratios):
    from mrcnn_np.model.anchors import cell_anchors as reference

    case = f"cell_anchors(sizes={sizes}, aspect_ratios={ratios})"
    call = caller(sizes, ratios)
    got = call(function(ex, "cell_anchors"))
    refs, note = references(("mrcnn_np.model.anchors.cell_anchors", reference(sizes, ratios)),
                            ("torch", "torchvision.models.detection.anchor_utils"), lambda _, anchor_utils: (
                                "torchvision AnchorGenerator.generate_anchors",
                                anchor_utils.AnchorGenerator((sizes,), (ratios,)).cell_anchors[0].numpy()))
    compare(got, refs, lambda got, expected, name: _assert_same_rows(got, expected, f"{case} vs {name}",
                                                                     _describe_cell_row(sizes, ratios)),
            lambda expected: MISTAKES.hint("cell_anchors", got, expected, call, rtol=1e-6))  # float32 precision
    return note


def _cell_anchors_hint(ex, sizes, ratios):
    """A hint when the learner's own cell_anchors (which grid_anchors should use) is wrong."""
    from mrcnn_np.model.anchors import cell_anchors as reference

    levels = zip(sizes, ratios, strict=True)
    wrong = _wrong_on(getattr(ex, "cell_anchors", None), [(level, reference(*level)) for level in levels])
    return wrong and f"your cell_anchors{wrong} is wrong: fix task (b)'s cell_anchors first, grid_anchors builds on it"


def _describe_grid_row(feature_sizes, sizes, ratios):
    def describe(i):
        for level, ((h, w), s, r) in enumerate(zip(feature_sizes, sizes, ratios, strict=True)):
            n_anchors = len(s) * len(r)
            if i < h * w * n_anchors:
                location, a = divmod(i, n_anchors)
                y, x = divmod(location, w)
                return f"level {level}, location y={y}, x={x}, anchor {a}: {_describe_cell_row(s, r)(a)}"
            i -= h * w * n_anchors
        return "past the last level"
    return describe


def _torch_grid(torch, anchor_utils, image_list, image_size, feature_sizes, sizes, ratios):
    images = image_list.ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)])
    features = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    return "torchvision AnchorGenerator", anchor_utils.AnchorGenerator(sizes, ratios)(images, features)[0].numpy()


def check_grid_anchors(ex, image_size, feature_sizes, sizes, ratios):
    from mrcnn_np.model.anchors import AnchorGenerator

    case = (f"grid_anchors(image_size={image_size}, feature_sizes={feature_sizes}, sizes={sizes}, "
            f"aspect_ratios={ratios})")
    call = caller(image_size, [tuple(f) for f in feature_sizes], sizes, ratios)
    got = call(function(ex, "grid_anchors"))
    generator = AnchorGenerator(sizes=sizes, aspect_ratios=ratios)
    refs, note = references(
        ("mrcnn_np.model.anchors.AnchorGenerator", np.concatenate(generator.grid_anchors(image_size, feature_sizes))),
        ("torch", "torchvision.models.detection.anchor_utils", "torchvision.models.detection.image_list"),
        lambda *modules: _torch_grid(*modules, image_size, feature_sizes, sizes, ratios))
    compare(got, refs, lambda got, expected, name: _assert_same_rows(
        got, expected, f"{case} vs {name}", _describe_grid_row(feature_sizes, sizes, ratios)),
        lambda expected: MISTAKES.hint("grid_anchors", got, expected, call, rtol=1e-6)
        or _cell_anchors_hint(ex, sizes, ratios))
    return note


# --- task (c) ----------------------------------------------------------------------------------
def _coder_boxes(rng, n):
    """Proposals P (n, 4) and targets G (n, 4) near them (shifted, rescaled by up to ~3x)."""
    proposals = _random_boxes(rng, n, extent=200.0, min_size=2.0, max_size=120.0)
    ctr = (proposals[:, :2] + proposals[:, 2:]) / 2 + rng.normal(0, 15, (n, 2))
    size = (proposals[:, 2:] - proposals[:, :2]) * np.exp(rng.normal(0, 0.5, (n, 2)))
    return np.concatenate([ctr - size / 2, ctr + size / 2], axis=1), proposals


def _coder_deltas(rng, n, weights):
    """Deltas (n + 6, 4): ordinary ones, then dw, dh beyond the clamp on either side."""
    deltas = rng.normal(0, 0.4, (n, 4)) * np.asarray(weights)
    wild = np.array([[0.5, -0.3, 6.0, 0.2], [0.1, 0.2, 0.3, 9.0], [-1.0, 2.0, 50.0, 60.0],
                     [0.0, 0.0, -10.0, 0.4], [0.3, 0.3, 0.1, -25.0], [0.0, 0.0, 4.2, 4.1]])
    return np.concatenate([deltas, wild * np.asarray(weights)], axis=0)  # (n + 6, 4): hit the clamp after / w


def _encode_cases():
    rng = np.random.default_rng(23)
    for weights in CODER_WEIGHTS:
        yield weights, *_coder_boxes(rng, 11)


def check_encode(ex, weights, targets, proposals):
    from mrcnn_np.ops.box_coder import BoxCoder

    case = f"encode(reference_boxes {shape_str(targets.shape)}, proposals {shape_str(proposals.shape)}, " \
           f"weights={weights})"
    got = function(ex, "encode")(targets.copy(), proposals.copy(), weights)
    refs, note = references(("mrcnn_np BoxCoder.encode", BoxCoder(weights).encode(targets, proposals)),
                            ("torch", "torchvision.models.detection._utils"), lambda torch, utils: (
                                "torchvision BoxCoder.encode_single", utils.BoxCoder(weights).encode_single(
                                    torch.tensor(targets), torch.tensor(proposals)).numpy()))
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", CODER_RTOL))
    return note


def _decode_cases():
    """(weights, clip or None for the default, deltas, boxes)."""
    rng = np.random.default_rng(24)
    for weights, clip in [(weights, None) for weights in CODER_WEIGHTS] + [((10.0, 10.0, 5.0, 5.0), 1.0)]:
        _, boxes = _coder_boxes(rng, 9)
        yield weights, clip, _coder_deltas(rng, len(boxes) - 6, weights), boxes


def _check_decode_case(ex, weights, clip, deltas, boxes):
    from mrcnn_np.ops.box_coder import BoxCoder

    clip_text = "" if clip is None else f", clip={clip}"
    case = f"decode(deltas {shape_str(deltas.shape)}, boxes {shape_str(boxes.shape)}, weights={weights}{clip_text})"
    call = caller(deltas, boxes, weights, *([] if clip is None else [clip]))
    got = call(function(ex, "decode"))
    clip = DEFAULT_CLIP if clip is None else clip
    refs, note = references(("mrcnn_np BoxCoder.decode", BoxCoder(weights, clip).decode(deltas, boxes)[:, 0]),
                            ("torch", "torchvision.models.detection._utils"), lambda torch, utils: (
                                "torchvision BoxCoder.decode_single", utils.BoxCoder(weights, bbox_xform_clip=clip)
                                .decode_single(torch.tensor(deltas), torch.tensor(boxes)).numpy()))
    # x1, x2 come from dx, dw alone; y1, y2 from dy, dh
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", CODER_RTOL),
            lambda expected: MISTAKES.hint("decode", got, expected, call, lambda a: (a[:, 0::2], a[:, 1::2])))
    return note


def check_decode(ex):
    note = for_each_case(_decode_cases, _check_decode_case)(ex)
    encode, decode = function(ex, "encode"), function(ex, "decode")  # decode undoes encode: yours must work too
    rng = np.random.default_rng(26)
    for weights in CODER_WEIGHTS:
        targets, proposals = _coder_boxes(rng, 10)
        back = decode(encode(targets.copy(), proposals.copy(), weights), proposals.copy(), weights)
        _assert_close(back, targets, f"round trip decode(encode(G, P, weights), P, weights) with G, P (10, 4), "
                     f"weights={weights}: should give back G", CODER_RTOL)
    return note


# --- task (d) ----------------------------------------------------------------------------------
def _clustered(rng, n_clusters, per_cluster, jitter):
    """Boxes jittered around a few centres, so that many overlap: (n_clusters * per_cluster, 4), shuffled."""
    centres = _random_boxes(rng, n_clusters, extent=150.0, min_size=15.0, max_size=60.0)
    boxes = np.repeat(centres, per_cluster, axis=0) + rng.normal(0, jitter, (n_clusters * per_cluster, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)  # keep x2 > x1, y2 > y1
    return boxes[rng.permutation(len(boxes))]


def _nms_cases():
    rng = np.random.default_rng(25)
    for threshold in (0.3, 0.5, 0.7):
        boxes = _clustered(rng, 6, 12, 4.0)
        yield f"72 boxes in 6 clusters, random scores, iou_threshold={threshold}", boxes, rng.uniform(0, 1, 72), \
            threshold
    yield "60 disjoint boxes, all with score 0.5 (ties: lower index first)", \
        np.array([[20.0 * i, 0.0, 20.0 * i + 10.0, 10.0] for i in range(60)]), np.full(60, 0.5), 0.5
    boxes = _clustered(rng, 8, 10, 5.0)
    yield "80 clustered boxes, scores tied in 4 values, iou_threshold=0.5", boxes, \
        rng.integers(0, 4, 80) / 4.0, 0.5
    square, half, seven = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 7.0]
    yield ("IoU exactly the threshold: boxes [[0, 0, 10, 10], [0, 0, 10, 5]] (IoU 0.5), iou_threshold=0.5",
           np.array([square, half]), np.array([0.9, 0.8]), 0.5)
    yield ("IoU exactly the threshold: boxes [[0, 0, 10, 7], [0, 0, 10, 10], [20, 0, 30, 10]] (IoU 0.7), "
           "iou_threshold=0.7", np.array([seven, square, [20.0, 0.0, 30.0, 10.0]]), np.array([0.3, 0.9, 0.6]), 0.7)
    big = np.array([[100.0, 100.0, 300.0, 260.0]])
    near = big + rng.uniform(-8, 8, (25, 4))
    yield "26 boxes over one object, best at index 13: all suppressed but one, iou_threshold=0.5", \
        np.concatenate([near[:13], big, near[13:]]), np.concatenate([rng.uniform(0, 0.9, 13), [0.95],
                                                                     rng.uniform(0, 0.9, 12)]), 0.5
    yield "one box", np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.1]), 0.5
    yield "no boxes: boxes (0, 4), scores (0,)", np.zeros((0, 4)), np.zeros(0), 0.5


def _nms_diagnosis(got, expected, boxes, scores, threshold):
    """A line saying why ``got`` differs from ``expected`` (both int64 index arrays), or None."""
    from mrcnn_np.ops.boxes import box_iou_numpy

    if got.size and (got.min() < 0 or got.max() >= len(boxes)):
        return f"index {int(got.max()) if got.max() >= len(boxes) else int(got.min())} is out of range " \
               f"for {len(boxes)} boxes"
    if sorted(got.tolist()) == sorted(expected.tolist()):
        return ("the same boxes are kept, in a different order: return them by decreasing score, equal scores "
                "lower index first (np.argsort(-scores, kind='stable'); argsort(scores)[::-1] puts ties "
                "backwards)")
    order = np.argsort(-scores, kind="stable")  # the order NMS visits the boxes in
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))  # rank[i]: when box i is visited
    if got.size == expected.size and np.array_equal(got, rank[expected]):
        return "these are positions in the score order, not indices into boxes: return order[kept positions]"

    def largest_iou_with_kept_before(box):
        """(IoU, box) of the reference-kept box visited before ``box`` that overlaps it most."""
        before = [int(k) for k in expected if rank[k] < rank[box]]
        if not before:
            return 0.0, None
        iou = box_iou_numpy(boxes[[box]], boxes[before])[0]
        return float(iou.max()), before[int(iou.argmax())]

    kept, kept_by_you = set(expected.tolist()), set(got.tolist())
    missing = min((i for i in kept if i not in kept_by_you), key=lambda i: rank[i], default=None)
    extra = min((i for i in kept_by_you if i not in kept), key=lambda i: rank[i], default=None)
    lines = []
    if missing is not None:
        iou, _ = largest_iou_with_kept_before(missing)
        lines.append(f"you dropped box {missing} (score {scores[missing]:.6g}), which is kept: its largest IoU "
                     f"with a box kept before it is {iou:.6g}" + (
                         ", exactly the threshold: suppress only when IoU > iou_threshold, strictly"
                         if iou == threshold else f" <= iou_threshold {threshold}"))
    if extra is not None:
        iou, by = largest_iou_with_kept_before(extra)
        lines.append(f"you kept box {extra} (score {scores[extra]:.6g}), which is suppressed" + (
            f": its IoU with box {by}, kept before it, is {iou:.6g} > {threshold}" if iou > threshold else ""))
    if missing is not None and extra is not None and scores[missing] == scores[extra]:
        lines.append("the two have equal scores: visit equal scores lower index first (a stable sort of -scores)")
    return "; ".join(lines) or None


def _assert_same_keep(got, expected, boxes, scores, threshold, what):
    got = _as_array(got, expected.shape, what, "an int64 array of kept indices")
    if got.ndim != 1:
        raise AssertionError(f"{what}:\nexpected a 1-D array of kept indices, got shape {shape_str(got.shape)}")
    if got.dtype != np.int64:
        empty = (" (np.array([]) of an empty list is float64: pass dtype=np.int64)"
                 if got.size == 0 and got.dtype.kind == "f" else "")
        raise AssertionError(f"{what}:\nexpected int64 indices, got dtype {got.dtype}{empty}")
    if not np.array_equal(got, expected):
        message = (f"{what}: kept indices differ\n"
                   f"expected {_fmt(expected)} ({len(expected)} kept)\n"
                   f"got      {_fmt(got)} ({len(got)} kept)")
        why = _nms_diagnosis(got, expected, boxes, scores, threshold)
        raise AssertionError(message + (f"\nhint: {why}" if why else ""))


def check_nms(ex, label, boxes, scores, threshold):
    from mrcnn_np.ops.boxes import box_iou_numpy
    from mrcnn_np.ops.nms import nms as reference

    case = f"nms on {label}"
    got = function(ex, "nms")(boxes.copy(), scores.copy(), threshold)
    refs, note = references(("mrcnn_np.ops.nms", reference(boxes, scores, threshold, impl="numpy")),
                            ("torch", "torchvision.ops"), lambda torch, ops: (
                                "torchvision.ops.nms", ops.nms(*map(torch.tensor, (boxes, scores)), threshold).numpy()))
    for name, expected in refs:
        try:
            _assert_same_keep(got, expected, boxes, scores, threshold, f"{case} vs {name}")
        except AssertionError as error:  # nms may use the learner's box_iou
            wrong = _wrong_on(getattr(ex, "box_iou", None), [((boxes, boxes), box_iou_numpy(boxes, boxes))])
            raise _hinted(error, wrong and "your box_iou is wrong on these boxes: if nms uses it, fix task (a) first"
                          ) from None
    return note


TASKS = [
    Task("box_iou", "(a) pairwise intersection over union", for_each_case(_iou_cases, check_box_iou)),
    Task("cell_anchors", "(b) the anchors of one location (float32, rounded)",
         for_each_case(lambda: CELL_CASES, check_cell_anchors)),
    Task("grid_anchors", "(b) anchors at every location of every level",
         for_each_case(lambda: GRID_CASES, check_grid_anchors)),
    Task("encode", "(c) boxes -> regression deltas", for_each_case(_encode_cases, check_encode)),
    Task("decode", "(c) deltas -> boxes, clamped; encode round trip", check_decode),
    Task("nms", "(d) greedy non-maximum suppression", for_each_case(_nms_cases, check_nms)),
]
