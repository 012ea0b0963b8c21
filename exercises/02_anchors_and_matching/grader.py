"""Grader of exercise 02: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed cases in float64 and compares with the library (NumPy
implementations) and torchvision: IoU to 1e-12 and the box coder to 1e-10 of the
reference's largest value; anchors and NMS indices exactly. When a result is wrong in a
way the grader recognises (round half up, sizes and ratios swapped, ``>=`` in NMS, ...),
the message ends with a hint.
"""

import math

import numpy as np

from mrcnn_np.exercises import Task, assert_close, function, shape_str
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import torch_modules as _torch_modules

STUB = "exercise.py"
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


def _as_array(received, expected_shape, what, kind="an array"):
    """``received`` as a NumPy array, or an AssertionError naming the expected shape."""
    if received is None:
        raise AssertionError(f"{what}:\nexpected {kind} of shape {shape_str(expected_shape)}, got None "
                             "(a missing return?)")
    try:
        return np.asarray(received)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected {kind} of shape {shape_str(expected_shape)}, "
                             f"got {type(received).__name__}") from None


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
def _iou_hint(got, boxes1, boxes2):
    """Recognise a few classic IoU mistakes in ``got``."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    sum_of_areas = area1[:, None] + area2[None, :]  # (R1, R2)
    sides = (np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
             - np.maximum(boxes1[:, None, :2], boxes2[None, :, :2]))  # (R1, R2, 2), negative where apart
    inter = np.clip(sides, 0, None).prod(axis=-1)
    unclamped = sides.prod(axis=-1)
    product_clamped = np.clip(unclamped, 0, None)
    clamp = ("boxes that do not overlap must have intersection 0: clamp the overlap's width and height at 0, "
             "each, before multiplying (boxes apart on both axes have two negative sides, a positive product)")
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = [
            (inter / sum_of_areas, "union = area1 + area2 counts the intersection twice: subtract it once "
                                   "(identical boxes must give IoU 1, not 0.5)"),
            (unclamped / (sum_of_areas - unclamped), clamp),
            (product_clamped / (sum_of_areas - product_clamped), clamp),
        ]
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape == (len(boxes2), len(boxes1)) and got.shape != (len(boxes1), len(boxes2)):
        return "the result is transposed: row i is boxes1[i], column j is boxes2[j]"
    for variant, hint in variants:
        if variant.shape == got.shape and np.allclose(got, variant, rtol=1e-9, atol=1e-12):
            return hint
    return None


def _iou_cases():
    rng = np.random.default_rng(21)
    crafted = _crafted_boxes()
    yield "random boxes1 (7, 4), boxes2 (9, 4)", _random_boxes(rng, 7), _random_boxes(rng, 9)
    yield "crafted boxes (8, 4) against themselves: identical, nested, touching, disjoint", crafted, crafted.copy()
    yield "crafted boxes (8, 4) against random (5, 4)", crafted, _random_boxes(rng, 5, extent=20.0)
    yield ("large and tiny boxes (1, 4) against (12, 4)", _random_boxes(rng, 1, 1000.0, 100.0, 800.0),
           np.concatenate([_random_boxes(rng, 6, 1500.0, 50.0, 600.0), _random_boxes(rng, 6, 1500.0, 0.01, 0.5)]))
    yield "boxes2 empty (an image without objects): (4, 4) against (0, 4)", _random_boxes(rng, 4), np.zeros((0, 4))


def check_box_iou(ex):
    from mrcnn_np.ops.boxes import box_iou as reference

    box_iou = function(ex, "box_iou")
    note = None
    for label, boxes1, boxes2 in _iou_cases():
        case = f"box_iou on {label}"
        got = box_iou(boxes1.copy(), boxes2.copy())
        expected = reference(boxes1, boxes2, impl="numpy")
        try:
            assert_close(got, expected, f"{case} vs mrcnn_np.ops.box_iou", IOU_RTOL)
        except AssertionError as error:
            raise _hinted(error, _iou_hint(got, boxes1, boxes2)) from None
        modules, note = _torch_modules("torch", "torchvision.ops")
        if modules:
            torch, ops = modules
            theirs = ops.box_iou(torch.tensor(boxes1), torch.tensor(boxes2)).numpy()
            assert_close(got, theirs, f"{case} vs torchvision.ops.box_iou", IOU_RTOL)
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _cell_variant(sizes, ratios, dtype=np.float32, rounding=np.round, sizes_outer=False,
                  ratio_is_w_over_h=False, halve=True):
    """Cell anchors as torchvision computes them, or with one deliberate mistake (for hints)."""
    scales = np.asarray(sizes, dtype=dtype)
    r = np.asarray(ratios, dtype=dtype)
    h_ratios = np.sqrt(r)
    w_ratios = dtype(1) / h_ratios
    if ratio_is_w_over_h:
        h_ratios, w_ratios = w_ratios, h_ratios
    if sizes_outer:
        ws, hs = (scales[:, None] * w_ratios[None, :]).reshape(-1), (scales[:, None] * h_ratios[None, :]).reshape(-1)
    else:
        ws, hs = (w_ratios[:, None] * scales[None, :]).reshape(-1), (h_ratios[:, None] * scales[None, :]).reshape(-1)
    corners = np.stack([-ws, -hs, ws, hs], axis=1)
    return rounding(corners / dtype(2) if halve else corners).astype(np.float64)


def _round_half_up(x):
    return np.floor(x + x.dtype.type(0.5))


CELL_HINTS = [
    (dict(rounding=_round_half_up), "round half to even as torch.round and np.round do (22.5 -> 22, "
                                    "-22.5 -> -22), not half up (floor(x + 0.5), or int(x + 0.5))"),
    (dict(dtype=np.float64), "compute in float32, as torchvision does: for ratio 1.69 and size 10, "
                             "10 * sqrt(1.69) / 2 is 6.5000005 in float32 and rounds to 7, but 6.5 in float64, "
                             "which rounds to 6"),
    (dict(sizes_outer=True), "the anchors go ratios outer, sizes inner: row k * len(sizes) + s is ratio k, size s"),
    (dict(ratio_is_w_over_h=True), "an aspect ratio is height / width: h = size * sqrt(ratio), w = size / sqrt(ratio)"),
    (dict(halve=False), "the corners are at -w/2, -h/2, w/2, h/2 (the anchor is w wide, centred on 0)"),
    (dict(rounding=lambda x: x), "round the corners to whole pixels (np.round)"),
]


def _matching_hint(got, variants):
    """The hint of the first variant ``got`` equals (to float32 precision), else None."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    for variant, hint in variants:
        if variant.shape == got.shape and np.allclose(got, variant, rtol=1e-6, atol=0):
            return hint
    return None


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


def check_cell_anchors(ex):
    from mrcnn_np.model.anchors import cell_anchors as reference

    cell_anchors = function(ex, "cell_anchors")
    note = None
    for sizes, ratios in CELL_CASES:
        case = f"cell_anchors(sizes={sizes}, aspect_ratios={ratios})"
        got = cell_anchors(sizes, ratios)
        try:
            _assert_same_rows(got, reference(sizes, ratios), f"{case} vs mrcnn_np.model.anchors.cell_anchors",
                              _describe_cell_row(sizes, ratios))
        except AssertionError as error:
            variants = [(_cell_variant(sizes, ratios, **kwargs), hint) for kwargs, hint in CELL_HINTS]
            raise _hinted(error, _matching_hint(got, variants)) from None
        modules, note = _torch_modules("torch", "torchvision.models.detection.anchor_utils")
        if modules:
            _, anchor_utils = modules
            theirs = anchor_utils.AnchorGenerator((sizes,), (ratios,)).cell_anchors[0].numpy()
            _assert_same_rows(got, theirs, f"{case} vs torchvision AnchorGenerator.generate_anchors",
                              _describe_cell_row(sizes, ratios))
    return note


def _grid_variant(image_size, feature_sizes, sizes, ratios, anchor_outer=False, column_major=False,
                  true_division=False, strides_swapped=False):
    """All anchors as torchvision lays them out, or with one deliberate mistake (for hints)."""
    levels = []
    for (h, w), level_sizes, level_ratios in zip(feature_sizes, sizes, ratios, strict=True):
        base = _cell_variant(level_sizes, level_ratios)  # (A, 4)
        divide = np.true_divide if true_division else np.floor_divide
        stride_h, stride_w = divide(image_size[0], h), divide(image_size[1], w)
        if strides_swapped:
            stride_h, stride_w = stride_w, stride_h
        ys, xs = np.arange(h) * stride_h, np.arange(w) * stride_w
        shift_y, shift_x = np.meshgrid(ys, xs, indexing="xy" if column_major else "ij")
        shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 4)  # (h*w, 4)
        anchors = shifts[None, :, :] + base[:, None, :] if anchor_outer else shifts[:, None, :] + base[None, :, :]
        levels.append(anchors.reshape(-1, 4))
    return np.concatenate(levels, axis=0)


def _cell_anchors_hint(ex, sizes, ratios):
    """A hint when the learner's own cell_anchors (which grid_anchors should use) is wrong."""
    from mrcnn_np.model.anchors import cell_anchors as reference

    try:
        for level_sizes, level_ratios in zip(sizes, ratios, strict=True):
            mine = np.asarray(ex.cell_anchors(level_sizes, level_ratios), dtype=np.float64)
            if mine.shape != (len(level_sizes) * len(level_ratios), 4) or not np.array_equal(
                    mine, reference(level_sizes, level_ratios)):
                return (f"your cell_anchors{(level_sizes, level_ratios)} is wrong: fix task (b)'s cell_anchors "
                        "first, grid_anchors builds on it")
    except Exception:  # not written yet, or grid_anchors does not use it: no hint
        return None
    return None


GRID_HINTS = [
    (dict(anchor_outer=True), "within a level, locations go outer and anchors inner: (h*w, A, 4) -> (h*w*A, 4)"),
    (dict(column_major=True), "locations are row-major: y outer, x inner (np.meshgrid(ys, xs, indexing='ij'))"),
    (dict(true_division=True), "stride = image size // feature size, an integer division (torchvision's)"),
    (dict(strides_swapped=True), "x moves by the width stride W // w_l, y by the height stride H // h_l"),
]


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


def check_grid_anchors(ex):
    from mrcnn_np.model.anchors import AnchorGenerator

    grid_anchors = function(ex, "grid_anchors")
    note = None
    for image_size, feature_sizes, sizes, ratios in GRID_CASES:
        case = (f"grid_anchors(image_size={image_size}, feature_sizes={feature_sizes}, sizes={sizes}, "
                f"aspect_ratios={ratios})")
        describe = _describe_grid_row(feature_sizes, sizes, ratios)
        got = grid_anchors(image_size, [tuple(f) for f in feature_sizes], sizes, ratios)
        expected = np.concatenate(AnchorGenerator(sizes, ratios).grid_anchors(image_size, feature_sizes), axis=0)
        try:
            _assert_same_rows(got, expected, f"{case} vs mrcnn_np.model.anchors.AnchorGenerator", describe)
        except AssertionError as error:
            variants = [(_grid_variant(image_size, feature_sizes, sizes, ratios, **kwargs), hint)
                        for kwargs, hint in GRID_HINTS]
            hint = _matching_hint(got, variants) or _cell_anchors_hint(ex, sizes, ratios)
            raise _hinted(error, hint) from None
        modules, note = _torch_modules("torch", "torchvision.models.detection.anchor_utils",
                                       "torchvision.models.detection.image_list")
        if modules:
            torch, anchor_utils, image_list = modules
            images = image_list.ImageList(torch.zeros(1, 3, *image_size), [tuple(image_size)])
            features = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
            theirs = anchor_utils.AnchorGenerator(sizes, ratios)(images, features)[0].numpy()
            _assert_same_rows(got, theirs, f"{case} vs torchvision AnchorGenerator", describe)
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


def _clamp_hint(got, expected, deltas, boxes, weights, clip):
    """Recognise a wrong clamp in decode (none, from both sides, before dividing by the weight), on x or y."""
    w = np.asarray(weights)

    def decode_with(clamp):
        d = clamp(deltas.copy())  # (R, 4) deltas divided by the weights, dw and dh clamped somehow
        ctr, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
        c, s = d[:, :2] * size + ctr, np.exp(d[:, 2:]) * size
        return np.concatenate([c - s / 2, c + s / 2], axis=1)

    def both_sides(d):
        d = d / w
        d[:, 2:] = np.clip(d[:, 2:], -clip, clip)
        return d

    def before_weights(d):
        d[:, 2:] = np.minimum(d[:, 2:], clip)
        return d / w

    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape != expected.shape:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        variants = [
            (decode_with(lambda d: d / w), "no clamp: use min(dw / ww, clip) and min(dh / wh, clip) in exp"),
            (decode_with(both_sides), "dw and dh are clamped from above only (min(dw, clip)): a very negative "
                                      "dw just makes a tiny box"),
            (decode_with(before_weights), "clamp dw / ww, after dividing by the weight, not the raw dw"),
        ]
        for variant, hint in variants:
            for axis in ([0, 2], [1, 3]):  # x1, x2 come from dx, dw alone; y1, y2 from dy, dh
                if (np.allclose(got[:, axis], variant[:, axis], rtol=1e-9, atol=0)
                        and not np.allclose(got[:, axis], expected[:, axis], rtol=1e-9, atol=0)):
                    return hint
    return None


def check_encode(ex):
    from mrcnn_np.ops.box_coder import BoxCoder

    encode = function(ex, "encode")
    rng = np.random.default_rng(23)
    note = None
    for weights in CODER_WEIGHTS:
        targets, proposals = _coder_boxes(rng, 11)
        case = f"encode(reference_boxes {shape_str(targets.shape)}, proposals {shape_str(proposals.shape)}, " \
               f"weights={weights})"
        got = encode(targets.copy(), proposals.copy(), weights)
        assert_close(got, BoxCoder(weights).encode(targets, proposals), f"{case} vs mrcnn_np BoxCoder.encode",
                     CODER_RTOL)
        modules, note = _torch_modules("torch", "torchvision.models.detection._utils")
        if modules:
            torch, utils = modules
            theirs = utils.BoxCoder(weights).encode_single(torch.tensor(targets), torch.tensor(proposals)).numpy()
            assert_close(got, theirs, f"{case} vs torchvision BoxCoder.encode_single", CODER_RTOL)
    return note


def check_decode(ex):
    from mrcnn_np.ops.box_coder import BoxCoder

    decode = function(ex, "decode")
    rng = np.random.default_rng(24)
    note = None
    cases = [(weights, None) for weights in CODER_WEIGHTS] + [((10.0, 10.0, 5.0, 5.0), 1.0)]
    for weights, clip in cases:
        _, boxes = _coder_boxes(rng, 9)
        deltas = _coder_deltas(rng, len(boxes) - 6, weights)
        clip_text = "" if clip is None else f", clip={clip}"
        case = f"decode(deltas {shape_str(deltas.shape)}, boxes {shape_str(boxes.shape)}, weights={weights}{clip_text})"
        got = decode(deltas.copy(), boxes.copy(), weights) if clip is None else \
            decode(deltas.copy(), boxes.copy(), weights, clip)
        used_clip = DEFAULT_CLIP if clip is None else clip
        expected = BoxCoder(weights, used_clip).decode(deltas, boxes)[:, 0]  # (R, 1, 4) -> (R, 4)
        try:
            assert_close(got, expected, f"{case} vs mrcnn_np BoxCoder.decode", CODER_RTOL)
        except AssertionError as error:
            raise _hinted(error, _clamp_hint(got, expected, deltas, boxes, weights, used_clip)) from None
        modules, note = _torch_modules("torch", "torchvision.models.detection._utils")
        if modules:
            torch, utils = modules
            coder = utils.BoxCoder(weights, bbox_xform_clip=used_clip)
            theirs = coder.decode_single(torch.tensor(deltas), torch.tensor(boxes)).numpy()
            assert_close(got, theirs, f"{case} vs torchvision BoxCoder.decode_single", CODER_RTOL)
    # decode undoes encode (your encode: it must work too)
    encode = function(ex, "encode")
    for weights in CODER_WEIGHTS:
        targets, proposals = _coder_boxes(rng, 10)
        back = decode(encode(targets.copy(), proposals.copy(), weights), proposals.copy(), weights)
        assert_close(back, targets, f"round trip decode(encode(G, P, weights), P, weights) with G, P (10, 4), "
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


def _box_iou_hint(ex, boxes):
    """A hint when the learner's own box_iou (which nms may use) is wrong on ``boxes``."""
    from mrcnn_np.ops.boxes import box_iou_numpy

    try:
        mine = np.asarray(ex.box_iou(boxes.copy(), boxes.copy()), dtype=np.float64)
        expected = box_iou_numpy(boxes, boxes)
        if mine.shape == expected.shape and np.allclose(mine, expected, rtol=0, atol=IOU_RTOL):
            return None
    except Exception:  # not written yet, or nms does not use it: no hint
        return None
    return "your box_iou is wrong on these boxes: if nms uses it, fix task (a) first"


def check_nms(ex):
    from mrcnn_np.ops.nms import nms as reference

    nms = function(ex, "nms")
    note = None
    for label, boxes, scores, threshold in _nms_cases():
        case = f"nms on {label}"
        got = nms(boxes.copy(), scores.copy(), threshold)
        expected = reference(boxes, scores, threshold, impl="numpy")
        try:
            _assert_same_keep(got, expected, boxes, scores, threshold, f"{case} vs mrcnn_np.ops.nms")
        except AssertionError as error:
            raise _hinted(error, _box_iou_hint(ex, boxes)) from None
        modules, note = _torch_modules("torch", "torchvision.ops")
        if modules:
            torch, ops = modules
            theirs = ops.nms(torch.tensor(boxes), torch.tensor(scores), threshold).numpy()
            _assert_same_keep(got, theirs, boxes, scores, threshold, f"{case} vs torchvision.ops.nms")
    return note


TASKS = [
    Task("box_iou", "(a) pairwise intersection over union", check_box_iou),
    Task("cell_anchors", "(b) the anchors of one location (float32, rounded)", check_cell_anchors),
    Task("grid_anchors", "(b) anchors at every location of every level", check_grid_anchors),
    Task("encode", "(c) boxes -> regression deltas", check_encode),
    Task("decode", "(c) deltas -> boxes, clamped; encode round trip", check_decode),
    Task("nms", "(d) greedy non-maximum suppression", check_nms),
]
