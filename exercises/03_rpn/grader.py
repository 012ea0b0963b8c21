"""Grader of exercise 03: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases: flattening is a permutation and is compared exactly,
as are the selected boxes (clipped copies of the input); decoded boxes, scores and losses
to 1e-10 of the reference's largest value. When a result is wrong in a way the grader
recognises (anchors before locations, a global top-n, NMS across levels, the box loss
divided by the positives, ...), the message ends with a hint.
"""

import math

import numpy as np

from mrcnn_np.exercises import Task, assert_close, function, shape_str
from mrcnn_np.exercises import as_float_array as _as_float_array
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import torch_modules as _torch_modules

STUB = "exercise.py"
RTOL = 1e-10
CLIP = math.log(1000.0 / 16)
BETA = 1 / 9
COORDS = ("dx", "dy", "dw", "dh")



def _pair(got, what, names):
    """Check that ``got`` is a pair (tuple or list of two) and return it."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        raise AssertionError(f"{what}:\nexpected a tuple {names}, got {type(got).__name__}{length}")
    return got


def _matches(got, variant, rtol=1e-9):
    """Whether ``got`` equals ``variant`` (same shape, close values); NaN never matches."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    variant = np.asarray(variant, dtype=np.float64)
    if got.shape != variant.shape or not np.isfinite(got).all() or not np.isfinite(variant).all():
        return False
    return bool(np.allclose(got, variant, rtol=rtol, atol=1e-300))


# --- task (a) ----------------------------------------------------------------------------------
# (N, A, feature sizes [(H, W)] per level)
FLATTEN_CASES = [
    (2, 3, [(4, 5), (2, 3), (1, 1)]),
    (1, 3, [(6, 4), (3, 2)]),
    (2, 1, [(3, 7)]),
    (2, 2, [(5, 3), (3, 2), (2, 1), (1, 1)]),
]


def _flatten_variant(logits, deltas, anchors_outer=False, column_major=False, coords_outer=False):
    """Objectness (N, total) and deltas (N, total, 4) as torchvision flattens them, or with one
    deliberate mistake (for hints)."""
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas, strict=True):
        N, A, H, W = lg.shape
        if coords_outer:  # channel k*A + a read as coordinate k of anchor a
            dl = dl.reshape(N, 4, A, H, W).transpose(0, 2, 1, 3, 4)
        else:
            dl = dl.reshape(N, A, 4, H, W)
        if column_major:
            lg, dl = lg.transpose(0, 1, 3, 2), dl.transpose(0, 1, 2, 4, 3)
        if anchors_outer:
            flat_logits.append(lg.reshape(N, -1))
            flat_deltas.append(dl.transpose(0, 1, 3, 4, 2).reshape(N, -1, 4))
        else:
            flat_logits.append(lg.transpose(0, 2, 3, 1).reshape(N, -1))
            flat_deltas.append(dl.transpose(0, 3, 4, 1, 2).reshape(N, -1, 4))
    return np.concatenate(flat_logits, axis=1), np.concatenate(flat_deltas, axis=1)


FLATTEN_HINTS = [
    (dict(anchors_outer=True), "within a level, locations go outer and anchors inner (the anchors' order): "
                               "move A behind H and W, (N, A, H, W) -> (N, H, W, A), before flattening"),
    (dict(column_major=True), "locations are row-major: y outer, x inner, as (H, W) flattens"),
    (dict(coords_outer=True), "the 4A delta channels are anchor-major: channel 4a + k is coordinate k of anchor a, "
                              "so reshape (N, 4A, H, W) to (N, A, 4, H, W), not (N, 4, A, H, W)"),
]


def _anchor_position(i, A, feature_sizes):
    """``level l, location y=.., x=.., anchor a`` of anchor-order column ``i``."""
    for level, (H, W) in enumerate(feature_sizes):
        if i < H * W * A:
            location, a = divmod(i, A)
            y, x = divmod(location, W)
            return f"level {level}, location y={y}, x={x}, anchor {a}"
        i -= H * W * A
    return "beyond the last level"


def _describer(A, feature_sizes):
    """index (n, i) or (n, i, k) -> ``image n, level l, location y=.., x=.., anchor a[, dx]``."""
    def describe(index):
        text = f"image {index[0]}, {_anchor_position(index[1], A, feature_sizes)}"
        return text + (f", {COORDS[index[2]]}" if len(index) == 3 else "")
    return describe


def _source_lookup(arrays, name):
    """value -> ``name[l][n, c, y, x]`` for every entry of the per-level inputs (distinct random values)."""
    lookup = {}
    for level, array in enumerate(arrays):
        for index in np.ndindex(array.shape):
            lookup.setdefault(float(array[index]), f"{name}[{level}][{', '.join(str(int(j)) for j in index)}]")
    return lookup


def _assert_same_entries(got, expected, what, describe, lookup, unit):
    """Exact equality; the message names the first wrong entry, what it should hold, and where
    the value that is there came from."""
    got = _as_float_array(got, expected.shape, what)
    wrong = np.argwhere(got != expected)
    if len(wrong):
        index = tuple(int(j) for j in wrong[0])
        expected_value, got_value = float(expected[index]), float(got[index])
        source = lookup.get(got_value, "a value found nowhere in the input")
        raise AssertionError(
            f"{what}: {len(wrong)} of {expected.size} {unit} differ (compared exactly)\n"
            f"first at index {index} ({describe(index)}): expected {lookup.get(expected_value, expected_value)} "
            f"= {expected_value:.6g}, got {source} = {got_value:.6g}")


def _flatten_hint(got, logits, deltas, which):
    """The hint of the first mistake whose output ``got`` (objectness or deltas) reproduces."""
    expected = _flatten_variant(logits, deltas)[which]
    for kwargs, hint in FLATTEN_HINTS:
        variant = _flatten_variant(logits, deltas, **kwargs)[which]
        if _matches(got, variant, rtol=0) and not _matches(variant, expected, rtol=0):
            return hint
    return None


def check_flatten_head_outputs(ex):
    from mrcnn_np import Tensor
    from mrcnn_np.model.rpn import concat_box_prediction_layers

    flatten_head_outputs = function(ex, "flatten_head_outputs")
    rng = np.random.default_rng(31)
    note = None
    for N, A, feature_sizes in FLATTEN_CASES:
        logits = [rng.standard_normal((N, A, H, W)) for H, W in feature_sizes]
        deltas = [rng.standard_normal((N, 4 * A, H, W)) for H, W in feature_sizes]
        total = sum(H * W * A for H, W in feature_sizes)
        shapes = ", ".join(shape_str(x.shape) for x in logits)
        case = f"flatten_head_outputs(logits [{shapes}], deltas [{', '.join(shape_str(d.shape) for d in deltas)}])"
        got = _pair(flatten_head_outputs([x.copy() for x in logits], [d.copy() for d in deltas]), case,
                    "(objectness (N, total), deltas (N, total, 4))")
        objectness, box_deltas = concat_box_prediction_layers([Tensor(x) for x in logits], [Tensor(d) for d in deltas])
        references = [("mrcnn_np.model.rpn.concat_box_prediction_layers",
                       (objectness.data.reshape(N, total), box_deltas.data.reshape(N, total, 4)))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.rpn")
        if modules:
            torch, rpn = modules
            t_obj, t_deltas = rpn.concat_box_prediction_layers([torch.tensor(x) for x in logits],
                                                               [torch.tensor(d) for d in deltas])
            references.append(("torchvision concat_box_prediction_layers",
                               (t_obj.numpy().reshape(N, total), t_deltas.numpy().reshape(N, total, 4))))
        lookups = (_source_lookup(logits, "logits"), _source_lookup(deltas, "deltas"))
        describers = (_describer(A, feature_sizes), _describer(A, feature_sizes))
        for reference, expected in references:
            for which, (name, unit) in enumerate([("objectness", "logits"), ("deltas", "deltas")]):
                try:
                    _assert_same_entries(got[which], expected[which], f"{name} of {case} vs {reference}",
                                         describers[which], lookups[which], unit)
                except AssertionError as error:
                    raise _hinted(error, _flatten_hint(got[which], logits, deltas, which)) from None
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _fpn_anchors(image_size, feature_sizes):
    """The anchors of torchvision's Mask R-CNN (sizes 32..512, ratios 0.5, 1, 2) for these levels, float64."""
    from mrcnn_np.model.anchors import AnchorGenerator

    levels = len(feature_sizes)
    generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,))[:levels], ((0.5, 1.0, 2.0),) * levels)
    return np.concatenate(generator.grid_anchors(image_size, feature_sizes, np.float64), axis=0)


def _random_boxes(rng, n, extent=100.0, min_size=2.0, max_size=60.0):
    """(n, 4) xyxy boxes with corners in [0, extent + max_size] and sides in [min_size, max_size]."""
    xy = rng.uniform(0, extent, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(min_size, max_size, (n, 2))], axis=1)


def _decode_cases():
    """(label, deltas (N, total, 4), anchors (total, 4)); dw, dh beyond the clamp on either side."""
    rng = np.random.default_rng(32)
    wild = np.array([[0.5, -0.3, 6.0, 0.2], [0.1, 0.2, 0.3, 9.0], [-1.0, 2.0, 50.0, 60.0],
                     [0.0, 0.0, -10.0, 0.4], [0.3, 0.3, 0.1, -25.0], [0.0, 0.0, 4.2, 4.1]])
    anchors = _fpn_anchors((64, 96), [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)])
    deltas = rng.normal(0, 0.5, (2, len(anchors), 4))
    deltas[0, rng.choice(len(anchors), len(wild), replace=False)] = wild
    deltas[1, rng.choice(len(anchors), len(wild), replace=False)] = -wild[::-1]
    yield "Mask R-CNN anchors of a (64, 96) batch, 5 levels", deltas, anchors
    anchors = _random_boxes(rng, 40)
    deltas = rng.normal(0, 1.0, (1, 40, 4))
    deltas[0, :6] = wild
    yield "random anchors", deltas, anchors
    anchors = _random_boxes(rng, 15, extent=500.0, max_size=400.0)
    yield "random large anchors", rng.normal(0, 2.0, (3, 15, 4)), anchors


def _decode_variant(deltas, anchors, clamp="above", plus_one=False, full_size=False):
    """Decoded boxes (N, total, 4), or with one deliberate mistake (for hints)."""
    size = anchors[:, 2:] - anchors[:, :2] + (1.0 if plus_one else 0.0)  # (total, 2)
    ctr = anchors[:, :2] + 0.5 * size
    d = deltas[..., 2:]
    if clamp == "above":
        d = np.minimum(d, CLIP)
    elif clamp == "both":
        d = np.clip(d, -CLIP, CLIP)
    c = deltas[..., :2] * size + ctr
    with np.errstate(over="ignore"):
        s = np.exp(d) * size * (1.0 if full_size else 0.5)
    return np.concatenate([c - s, c + s], axis=-1)


DECODE_HINTS = [
    (dict(clamp=None), "no clamp: use exp(min(dw, BBOX_XFORM_CLIP)) and exp(min(dh, BBOX_XFORM_CLIP))"),
    (dict(clamp="both"), "dw and dh are clamped from above only (min(dw, clip)): a very negative dw just makes "
                         "a tiny box"),
    (dict(plus_one=True), "width = x2 - x1, no + 1 (torchvision's boxes are continuous coordinates)"),
    (dict(full_size=True), "the box reaches half its width on either side of its centre: centre -+ 0.5 * width"),
]


def _decode_hint(got, expected, deltas, anchors):
    """A hint when ``got`` reproduces a known mistake on the x or the y coordinates."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape != expected.shape:
        N, total, _ = expected.shape
        if got.shape in ((total, N, 4), (N * total, 4), (N * total, 1, 4)):
            return "return one (total, 4) block per image: shape (N, total, 4)"
        return None
    for kwargs, hint in DECODE_HINTS:
        variant = _decode_variant(deltas, anchors, **kwargs)
        for axis in ([0, 2], [1, 3]):  # x1, x2 come from dx, dw alone; y1, y2 from dy, dh
            if _matches(got[..., axis], variant[..., axis]) and not _matches(got[..., axis], expected[..., axis]):
                return hint
    return None


def check_decode_proposals(ex):
    from mrcnn_np.ops.box_coder import BoxCoder

    decode_proposals = function(ex, "decode_proposals")
    note = None
    for label, deltas, anchors in _decode_cases():
        N, total, _ = deltas.shape
        case = f"decode_proposals(deltas {shape_str(deltas.shape)}, anchors {shape_str(anchors.shape)}: {label})"
        got = decode_proposals(deltas.copy(), anchors.copy())
        flat = deltas.reshape(N * total, 4)  # (N, total, 4) -> (N*total, 4): image-major, as the library decodes
        expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(flat, np.tile(anchors, (N, 1))).reshape(N, total, 4)
        try:
            assert_close(got, expected, f"{case} vs mrcnn_np BoxCoder((1, 1, 1, 1)).decode", RTOL)
        except AssertionError as error:
            raise _hinted(error, _decode_hint(got, expected, deltas, anchors)) from None
        modules, note = _torch_modules("torch", "torchvision.models.detection._utils")
        if modules:
            torch, utils = modules
            theirs = utils.BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor(flat), [torch.tensor(anchors)] * N)
            assert_close(got, theirs.numpy().reshape(N, total, 4), f"{case} vs torchvision BoxCoder.decode", RTOL)
    return note


# --- task (c) ----------------------------------------------------------------------------------
FPN_BATCH = (96, 128)
FPN_LEVELS = [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]  # 3072 anchors: 2304, 576, 144, 36, 12
SMALL_LEVELS = [(10, 12), (5, 6), (3, 3)]  # a (40, 48) batch, 3 levels: 360, 90, 27 anchors


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _proposals(rng, batch, feature_sizes, spread=0.4):
    """Decoded anchors of a batch (total, 4) and the anchors per level."""
    from mrcnn_np.ops.box_coder import BoxCoder

    anchors = _fpn_anchors(batch, feature_sizes)
    proposals = BoxCoder().decode(rng.normal(0, spread, anchors.shape), anchors)[:, 0]  # (total, 1, 4) -> (total, 4)
    return proposals, [3 * H * W for H, W in feature_sizes]


TIES_HINT = ("this case has equal logits (and so equal scores): take them lower index first, in the top-n of each "
             "level and in NMS (np.argsort(-x, kind='stable'); np.argsort(x)[::-1] puts ties backwards and the "
             "default sort may shuffle them)")


def _select_cases():
    """(label, kwargs of select_proposals, compare with torchvision, hint when no known mistake matches)."""
    rng = np.random.default_rng(33)

    # 1. The FPN levels of a (96, 128) batch, the image (90, 120): boxes cross the border.
    #    High-scoring tiny boxes (level 0) and boxes outside the image (level 1) must be removed.
    proposals, per_level = _proposals(rng, FPN_BATCH, FPN_LEVELS)
    logits = rng.normal(0, 2, len(proposals))
    tiny = rng.choice(per_level[0], 6, replace=False)
    proposals[tiny, :2] = rng.uniform(5, 60, (6, 2))  # inside the image
    proposals[tiny, 2:] = proposals[tiny, :2] + np.array([[5e-4, 20.0], [20.0, 5e-4]] * 3)  # 0.0005 wide or high
    outside = per_level[0] + rng.choice(per_level[1], 6, replace=False)
    proposals[outside] = np.array([130.0, 10.0, 170.0, 50.0]) + rng.uniform(0, 20, (6, 1))  # right of x = 120
    logits[np.concatenate([tiny, outside])] = rng.uniform(9, 11, 12)  # the best 12 of all
    yield ("5 levels (3072 anchors; 2304, 576, 144, 36, 12 per level), image (90, 120), 6 tiny boxes and "
           "6 boxes outside the image among the top scores",
           dict(proposals=proposals, objectness=logits, num_anchors_per_level=per_level, image_size=(90, 120),
                pre_nms_top_n=300, post_nms_top_n=1000, nms_thresh=0.7, min_size=1e-3, score_thresh=0.0), True, None)

    # 2. Few kept per level, few after NMS, a larger min_size, a score threshold.
    proposals, per_level = _proposals(rng, FPN_BATCH, FPN_LEVELS, spread=0.6)
    yield ("5 levels (3072 anchors), image (96, 128)",
           dict(proposals=proposals, objectness=rng.normal(0, 2, len(proposals)), num_anchors_per_level=per_level,
                image_size=(96, 128), pre_nms_top_n=100, post_nms_top_n=50, nms_thresh=0.5, min_size=3.0,
                score_thresh=0.2), True, None)

    # 3. No level cut by pre_nms_top_n; one logit exactly 0 (score 0.5 == score_thresh: kept).
    proposals, per_level = _proposals(rng, (40, 48), SMALL_LEVELS)
    logits = rng.normal(0, 2, len(proposals))
    logits[EXACT_SCORE_INDEX] = 0.0
    yield ("3 levels (477 anchors; 360, 90, 27 per level), image (37, 45), one score exactly score_thresh",
           dict(proposals=proposals, objectness=logits, num_anchors_per_level=per_level, image_size=(37, 45),
                pre_nms_top_n=1000, post_nms_top_n=1000, nms_thresh=0.7, min_size=1e-3, score_thresh=0.5), True, None)

    # 4. Logits tied in steps of 0.5: which of equal logits enter the top-n, and their order.
    proposals, per_level = _proposals(rng, (40, 48), SMALL_LEVELS)
    yield ("3 levels (477 anchors), logits tied in steps of 0.5 (equal logits: lower index first; "
           "compared with mrcnn_np only, torch.topk orders ties arbitrarily)",
           dict(proposals=proposals, objectness=rng.integers(-6, 7, len(proposals)) / 2.0,
                num_anchors_per_level=per_level, image_size=(40, 48), pre_nms_top_n=40, post_nms_top_n=30,
                nms_thresh=0.6, min_size=1e-3, score_thresh=0.0), False, TIES_HINT)

    # 5. Nothing survives the score threshold.
    proposals, per_level = _proposals(rng, (40, 48), SMALL_LEVELS)
    yield ("3 levels (477 anchors), every score below score_thresh=0.95: no proposal survives",
           dict(proposals=proposals, objectness=rng.uniform(-3, 2.5, len(proposals)), num_anchors_per_level=per_level,
                image_size=(40, 48), pre_nms_top_n=1000, post_nms_top_n=1000, nms_thresh=0.7, min_size=1e-3,
                score_thresh=0.95), True, None)


EXACT_SCORE_INDEX = 390  # level 1 of case 3: a box NMS keeps, so dropping score == score_thresh shows


def _select_variant(proposals, objectness, num_anchors_per_level, image_size, pre_nms_top_n, post_nms_top_n,
                    nms_thresh, min_size, score_thresh, mistake=None):
    """select_proposals as torchvision computes it, or with one deliberate ``mistake`` (for hints)."""
    from mrcnn_np.ops import batched_nms, nms

    level_of = np.repeat(np.arange(len(num_anchors_per_level)), num_anchors_per_level)
    if mistake == "global_top_n":
        picks = np.argsort(-objectness, kind="stable")[:pre_nms_top_n]
    else:
        picks, offset = [], 0
        for n in num_anchors_per_level:
            level = objectness[offset : offset + n]
            if mistake == "ties_reversed":
                order = np.argsort(level, kind="stable")[::-1]
            else:
                order = np.argsort(-level, kind="stable")
            picks.append(order[:pre_nms_top_n] + offset)
            offset += n
        picks = np.concatenate(picks)
    scores = objectness[picks] if mistake == "logits_as_scores" else _sigmoid(objectness[picks])
    boxes, levels = proposals[picks], level_of[picks]

    def clip(b):
        height, width = image_size[::-1] if mistake == "clip_swapped" else image_size
        b = b.copy()
        b[:, 0::2], b[:, 1::2] = np.clip(b[:, 0::2], 0, width), np.clip(b[:, 1::2], 0, height)
        return b

    def large_enough(b):
        return (b[:, 2] - b[:, 0] >= min_size) & (b[:, 3] - b[:, 1] >= min_size)

    if mistake == "remove_before_clip":
        keep = large_enough(boxes)
        boxes = clip(boxes)
    else:
        boxes = boxes if mistake == "no_clip" else clip(boxes)
        keep = np.ones(len(boxes), bool) if mistake == "no_remove_small" else large_enough(boxes)
    keep &= (scores > score_thresh) if mistake == "score_strict" else (scores >= score_thresh)
    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
    if mistake == "post_n_before_nms":
        first = np.argsort(-scores, kind="stable")[:post_nms_top_n]
        boxes, scores, levels = boxes[np.sort(first)], scores[np.sort(first)], levels[np.sort(first)]
    if mistake == "no_nms":
        kept = np.argsort(-scores, kind="stable")
    elif mistake == "nms_across_levels":
        kept = nms(boxes, scores, nms_thresh, impl="numpy")
    elif mistake == "level_by_level":
        kept = np.concatenate([np.zeros(0, np.int64)] + [
            np.nonzero(levels == lv)[0][nms(boxes[levels == lv], scores[levels == lv], nms_thresh, impl="numpy")]
            for lv in np.unique(levels)])
    else:
        kept = batched_nms(boxes, scores, levels, nms_thresh, impl="numpy")
    kept = kept[:post_nms_top_n]
    return boxes[kept], scores[kept]


SELECT_HINTS = [
    ("global_top_n", "pre_nms_top_n is taken per level, not over all anchors together (the finest level, with "
                     "most anchors, would crowd out the others)"),
    ("nms_across_levels", "NMS runs within each level (batched_nms with the level as the category): a box may "
                          "overlap a better box of another level and still be kept"),
    ("no_nms", "no boxes were suppressed: run NMS (within each level)"),
    ("level_by_level", "after NMS per level, order the survivors of all levels together by decreasing score "
                       "(batched_nms's order), not level after level"),
    ("post_n_before_nms", "keep post_nms_top_n after NMS, not before"),
    ("logits_as_scores", "the scores are probabilities, sigmoid(logit): that is what score_thresh is compared "
                         "with, and what is returned"),
    ("score_strict", "score_thresh is inclusive: keep scores >= score_thresh"),
    ("no_clip", "clip the boxes to the image: x to [0, width], y to [0, height]"),
    ("clip_swapped", "image_size is (height, width): x is clipped to [0, width], y to [0, height]"),
    ("no_remove_small", "drop the boxes narrower or lower than min_size (boxes outside the image become "
                        "0 wide once clipped)"),
    ("remove_before_clip", "clip first, then drop small boxes: a box outside the image is 0 wide only once clipped"),
    ("ties_reversed", "equal logits: lower index first, both in the top-n and in its order "
                      "(np.argsort(-x, kind='stable'); np.argsort(x)[::-1] puts ties backwards)"),
]


def _select_hint(got_boxes, expected_boxes, kwargs, fallback=None):
    """The hint of the first mistake that reproduces ``got_boxes``, or a comparison of the sets, or ``fallback``."""
    for mistake, hint in SELECT_HINTS:
        if _matches(got_boxes, _select_variant(**kwargs, mistake=mistake)[0], rtol=0):
            return hint
    try:
        got = np.asarray(got_boxes, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape == expected_boxes.shape and np.array_equal(np.unique(got, axis=0), np.unique(expected_boxes, axis=0)):
        return "the right boxes, in the wrong order: return them by decreasing score"
    return fallback


def _describe_rows(got, expected, expected_scores):
    """The first row where two (P, 4) box arrays differ."""
    k = int(np.argmax((got != expected).any(axis=1)))
    return (f"first at row {k}: expected {_fmt(expected[k])} (score {expected_scores[k]:.6g}), "
            f"got {_fmt(got[k])}")


def _compare_selection(got, expected, what, kwargs, fallback_hint):
    boxes, scores = got
    expected_boxes, expected_scores = expected
    P = len(expected_boxes)
    try:
        try:
            boxes = np.asarray(boxes, dtype=np.float64)
        except (TypeError, ValueError):
            raise AssertionError(f"boxes of {what}:\nexpected an array of shape {shape_str((P, 4))}, "
                                 f"got {type(boxes).__name__}") from None
        if boxes.shape != (P, 4):
            count = f" ({boxes.shape[0]} proposals)" if boxes.ndim == 2 and boxes.shape[1:] == (4,) else ""
            raise AssertionError(f"boxes of {what}:\nexpected {P} proposals, shape {shape_str((P, 4))}; "
                                 f"got shape {shape_str(boxes.shape)}{count}")
        wrong = (boxes != expected_boxes).any(axis=1)
        if wrong.any():
            raise AssertionError(f"boxes of {what}: {int(wrong.sum())} of {P} boxes differ (compared exactly)\n"
                                 + _describe_rows(boxes, expected_boxes, expected_scores))
    except AssertionError as error:
        raise _hinted(error, _select_hint(boxes, expected_boxes, kwargs, fallback_hint)) from None
    try:
        assert_close(scores, expected_scores, f"scores of {what}", RTOL)
    except AssertionError as error:
        with np.errstate(divide="ignore"):
            logits = np.log(expected_scores) - np.log1p(-expected_scores)
        hint = "the scores are probabilities, sigmoid(logit), not the logits" if _matches(scores, logits) else None
        raise _hinted(error, hint) from None


def check_select_proposals(ex):
    from mrcnn_np.model.rpn import RegionProposalNetwork

    select_proposals = function(ex, "select_proposals")
    note = None
    for label, kwargs, with_torch, fallback_hint in _select_cases():
        pre_n, post_n, thresh = kwargs["pre_nms_top_n"], kwargs["post_nms_top_n"], kwargs["nms_thresh"]
        min_size, score_thresh, size = kwargs["min_size"], kwargs["score_thresh"], kwargs["image_size"]
        case = (f"select_proposals(proposals {shape_str(kwargs['proposals'].shape)}, objectness "
                f"{shape_str(kwargs['objectness'].shape)}, {kwargs['num_anchors_per_level']}, image_size={size}, "
                f"pre_nms_top_n={pre_n}, post_nms_top_n={post_n}, nms_thresh={thresh}, min_size={min_size}, "
                f"score_thresh={score_thresh}) on {label}")
        args = [v.copy() if isinstance(v, np.ndarray) else v for v in kwargs.values()]
        got = _pair(select_proposals(*args), case, "(boxes (P, 4), scores (P,))")
        rpn = RegionProposalNetwork(None, None, nms_thresh=thresh, score_thresh=score_thresh, min_size=min_size)
        boxes, scores = rpn.filter_proposals(kwargs["proposals"][None], kwargs["objectness"][None], [size],
                                             kwargs["num_anchors_per_level"], pre_n, post_n)
        _compare_selection(got, (boxes[0], scores[0]),
                           f"{case}\nvs mrcnn_np RegionProposalNetwork.filter_proposals", kwargs, fallback_hint)
        if not with_torch:
            continue
        modules, note = _torch_modules("torch", "torchvision.models.detection.rpn")
        if modules:
            torch, rpn_module = modules
            top_n = {"training": pre_n, "testing": pre_n}
            tv = rpn_module.RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, top_n,
                                                  {"training": post_n, "testing": post_n}, thresh, score_thresh)
            tv.min_size = min_size
            tv.eval()
            with torch.no_grad():
                t_boxes, t_scores = tv.filter_proposals(torch.tensor(kwargs["proposals"][None]),
                                                        torch.tensor(kwargs["objectness"]), [size],
                                                        kwargs["num_anchors_per_level"])
            _compare_selection(got, (t_boxes[0].numpy(), t_scores[0].numpy()),
                               f"{case}\nvs torchvision RegionProposalNetwork.filter_proposals", kwargs,
                               fallback_hint)
    return note


# --- task (d) ----------------------------------------------------------------------------------
def _sample(rng, labels, per_image, batch_size=256, positive_fraction=0.5):
    """Boolean masks (M,) of the sampled positives and negatives, drawn per image as the sampler does."""
    pos, neg = np.zeros(len(labels), bool), np.zeros(len(labels), bool)
    for start in range(0, len(labels), per_image):
        image = labels[start : start + per_image]
        positive, negative = np.nonzero(image == 1)[0], np.nonzero(image == 0)[0]
        num_pos = min(len(positive), int(batch_size * positive_fraction))
        num_neg = min(len(negative), batch_size - num_pos)
        pos[start + rng.permutation(positive)[:num_pos]] = True
        neg[start + rng.permutation(negative)[:num_neg]] = True
    return pos, neg


def _loss_case(rng, N, per_image, fractions, extreme_logits=False):
    """Inputs of rpn_loss for N images of ``per_image`` anchors; ``fractions`` (positive, negative) per image."""
    labels = []
    for positive, negative in fractions:
        labels.append(rng.choice([1.0, 0.0, -1.0], per_image, p=[positive, negative, 1 - positive - negative]))
    labels = np.concatenate(labels)
    M = N * per_image
    logits = rng.normal(0, 2, M)
    if extreme_logits:
        logits[rng.choice(M, 20, replace=False)] = rng.choice([-45.0, -40.0, 38.0, 41.0], 20)
    targets = rng.normal(0, 0.5, (M, 4))
    deltas = targets + rng.normal(0, 0.15, (M, 4)) * rng.choice([0.2, 1.0, 3.0], (M, 1))  # |d| both sides of 1/9
    pos, neg = _sample(rng, labels, per_image)
    return dict(objectness=logits, deltas=deltas, labels=labels, regression_targets=targets,
                sampled_pos=pos, sampled_neg=neg)


def _loss_cases():
    rng = np.random.default_rng(34)
    yield ("2 images x 700 anchors, about 210 positives each (128 sampled) and 256 sampled per image",
           _loss_case(rng, 2, 700, [(0.3, 0.5), (0.3, 0.5)]))
    yield "1 image x 900 anchors, 4 positives, logits as large as +-45", \
        _loss_case(rng, 1, 900, [(0.005, 0.6)], extreme_logits=True)
    yield "2 images x 500 anchors without positives (background images): box loss 0", \
        _loss_case(rng, 2, 500, [(0.0, 0.7), (0.0, 0.7)])
    yield "3 images x 400 anchors, positives in one image only", \
        _loss_case(rng, 3, 400, [(0.0, 0.8), (0.05, 0.6), (0.0, 0.5)])


def _loss_variants(c):
    """(objectness loss variants, box loss variants), each a list of (value, hint)."""
    x, t, d = c["objectness"], c["labels"], c["deltas"] - c["regression_targets"]
    pos, neg = c["sampled_pos"], c["sampled_neg"]
    sampled = pos | neg

    def bce(mask):
        return np.maximum(x[mask], 0) - x[mask] * t[mask] + np.log1p(np.exp(-np.abs(x[mask])))

    def smooth(mask, beta=BETA, divide=True):
        a = np.abs(d[mask])
        return np.where(a < beta, 0.5 * a * a / (beta if divide else 1.0), a - 0.5 * beta)

    n, n_pos = int(sampled.sum()), int(pos.sum())

    def mean(values):  # NaN for no values, without numpy's warning
        return values.sum() / values.size if values.size else np.nan

    with np.errstate(divide="ignore", invalid="ignore"):
        objectness = [
            (mean(bce(t >= 0)), "the objectness loss averages over the sampled anchors only (sampled_pos | "
                                 "sampled_neg), not over every labelled anchor"),
            (mean(bce(np.ones(len(x), bool))), "the objectness loss averages over the sampled anchors only: "
                                                "ignored (-1) and unsampled anchors do not count"),
            (bce(sampled).sum(), "the objectness loss is a mean over the sampled anchors, not a sum"),
            (mean(bce(pos)), "the negatives count too: average over sampled_pos | sampled_neg"),
        ]
        box = [
            (smooth(pos).sum() / n_pos, "divide the box loss by the number of sampled anchors (positives and "
                                        "negatives), not by the number of positives"),
            (smooth(pos).sum() / len(x), "divide the box loss by the number of sampled anchors, not by all anchors"),
            (mean(smooth(pos)), "sum the smooth L1 over the positives and their 4 coordinates, then divide by "
                                 "the number of sampled anchors: not a mean over the entries"),
            (smooth(pos).sum(), "divide the summed box loss by the number of sampled anchors"),
            (smooth(pos, beta=1.0).sum() / n, "beta = 1/9, not 1: the loss is quadratic for |d| < 1/9 only"),
            (smooth(pos, divide=False).sum() / n, "the quadratic part is 0.5 d^2 / beta (the two pieces meet at "
                                                  "|d| = beta)"),
            (np.abs(d[pos]).sum() / n, "smooth L1, not L1: 0.5 d^2 / beta where |d| < beta"),
            (smooth(t == 1).sum() / n, "only the sampled positives count, not every positive anchor"),
            (smooth(sampled).sum() / n, "the box loss covers the sampled positives only: negatives have no box"),
        ]
    return objectness, box


def _loss_hint(got, expected, variants):
    try:
        got = float(np.asarray(got, dtype=np.float64))
    except (TypeError, ValueError):
        return None
    if not np.isfinite(got):
        return ("the loss is not finite: for large |x|, log(sigmoid(x)) overflows; use "
                "max(x, 0) - x * t + log(1 + exp(-|x|)). With no positives, the box loss is 0 (a sum over nothing), "
                "not 0 / 0")
    for value, hint in variants:
        if np.isfinite(value) and _matches(got, value) and not _matches(value, expected):
            return hint
    return None


def _assert_close_scalar(received, expected, what):
    """Fail unless ``received`` is one number within RTOL of ``expected`` (absolutely, when it is 0)."""
    value = _as_float_array(received, (), what)  # a float, or a 0-d array
    allowed = RTOL * abs(expected) if expected != 0 else RTOL
    if not abs(float(value) - expected) <= allowed:  # NaN fails
        raise AssertionError(f"{what}: values differ\nexpected {expected:.10g}, got {float(value):.10g} "
                             f"(abs error {abs(float(value) - expected):.3g}, allowed {allowed:.1e})")


def _tv_losses(torch, rpn_module, c):
    """torchvision's RegionProposalNetwork.compute_loss with our sample injected and float64 labels
    (torchvision makes its labels float32 whatever the model's dtype)."""
    tv = rpn_module.RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": 1, "testing": 1},
                                          {"training": 1, "testing": 1}, 0.7)
    masks = [torch.from_numpy(c["sampled_pos"].astype(np.uint8))], [torch.from_numpy(c["sampled_neg"].astype(np.uint8))]
    tv.fg_bg_sampler = lambda _labels: masks
    with torch.no_grad():
        objectness, box = tv.compute_loss(torch.tensor(c["objectness"][:, None]), torch.tensor(c["deltas"]),
                                          [torch.tensor(c["labels"])], [torch.tensor(c["regression_targets"])])
    return objectness.item(), box.item()


def check_rpn_loss(ex):
    from mrcnn_np import Tensor
    from mrcnn_np.model.rpn import RegionProposalNetwork

    rpn_loss = function(ex, "rpn_loss")
    rpn = RegionProposalNetwork(None, None)
    note = None
    for label, c in _loss_cases():
        M = len(c["labels"])
        case = (f"rpn_loss(objectness ({M},), deltas ({M}, 4), labels, regression_targets, sampled_pos "
                f"({int(c['sampled_pos'].sum())} True), sampled_neg ({int(c['sampled_neg'].sum())} True)) on {label}")
        got = _pair(rpn_loss(*(v.copy() for v in c.values())), case, "(loss_objectness, loss_box)")
        objectness, box = rpn.compute_loss(Tensor(c["objectness"][:, None]), Tensor(c["deltas"]), [c["labels"]],
                                           [c["regression_targets"]], [c["sampled_pos"].astype(np.uint8)],
                                           [c["sampled_neg"].astype(np.uint8)])
        references = [("mrcnn_np RegionProposalNetwork.compute_loss", (objectness.item(), box.item()))]
        modules, note = _torch_modules("torch", "torchvision.models.detection.rpn")
        if modules:
            references.append(("torchvision RegionProposalNetwork.compute_loss", _tv_losses(*modules, c)))
        variants = _loss_variants(c)
        for reference, expected in references:
            for which, name in enumerate(("loss_objectness", "loss_box")):
                try:
                    _assert_close_scalar(got[which], expected[which], f"{name} of {case} vs {reference}")
                except AssertionError as error:
                    raise _hinted(error, _loss_hint(got[which], expected[which], variants[which])) from None
    return note


TASKS = [
    Task("flatten_head_outputs", "(a) per-level head outputs -> one row per anchor", check_flatten_head_outputs),
    Task("decode_proposals", "(b) deltas + anchors -> proposals, clamped", check_decode_proposals),
    Task("select_proposals", "(c) top-n per level, clip, filter, NMS per level", check_select_proposals),
    Task("rpn_loss", "(d) objectness BCE and box smooth L1 over the sample", check_rpn_loss),
]
