"""Grader of exercise 03: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases: flattening is a permutation and is compared exactly,
as are the selected boxes (clipped copies of the input); decoded boxes, scores and losses
to 1e-10 of the reference's largest value. When a result is wrong in a way the grader
recognises (anchors before locations, a global top-n, NMS across levels, the box loss
divided by the positives: the mistakes in ``mistakes.py``, ...), the message ends with a hint.
"""

import numpy as np

from mrcnn_np.exercises import Mistakes, Task, caller, compare, for_each_case, function, references, shape_str
from mrcnn_np.exercises import as_float_array as _as_float_array
from mrcnn_np.exercises import as_tuple as _as_tuple
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import assert_close_scalar as _assert_close_scalar
from mrcnn_np.exercises import fmt_vector as _fmt
from mrcnn_np.exercises import hinted as _hinted
from mrcnn_np.exercises import matches as _matches

STUB = "exercise.py"
RTOL = 1e-10
COORDS = ("dx", "dy", "dw", "dh")
MISTAKES = Mistakes(__file__)

# --- task (a) ----------------------------------------------------------------------------------
def _flatten_cases():
    """(N, A, feature sizes [(H, W)] per level, logits, deltas) of random head outputs."""
    rng = np.random.default_rng(31)
    for N, A, feature_sizes in [(2, 3, [(4, 5), (2, 3), (1, 1)]), (1, 3, [(6, 4), (3, 2)]), (2, 1, [(3, 7)]),
                                (2, 2, [(5, 3), (3, 2), (2, 1), (1, 1)])]:
        logits = [rng.standard_normal((N, A, H, W)) for H, W in feature_sizes]
        yield N, A, feature_sizes, logits, [rng.standard_normal((N, 4 * A, H, W)) for H, W in feature_sizes]


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


def check_flatten_head_outputs(ex, N, A, feature_sizes, logits, deltas):
    from mrcnn_np import Tensor
    from mrcnn_np.model.rpn import concat_box_prediction_layers

    total = sum(H * W * A for H, W in feature_sizes)
    shapes = ", ".join(shape_str(x.shape) for x in logits)
    case = f"flatten_head_outputs(logits [{shapes}], deltas [{', '.join(shape_str(d.shape) for d in deltas)}])"
    call = caller(logits, deltas)
    got = _as_tuple(call(function(ex, "flatten_head_outputs")), 2, case,
                    "(objectness (N, total), deltas (N, total, 4))")
    objectness, box_deltas = concat_box_prediction_layers([Tensor(x) for x in logits], [Tensor(d) for d in deltas])

    def torch_flatten(torch, rpn):
        t_obj, t_deltas = rpn.concat_box_prediction_layers([torch.tensor(x) for x in logits],
                                                           [torch.tensor(d) for d in deltas])
        return "torchvision concat_box_prediction_layers", (t_obj.numpy().reshape(N, total),
                                                            t_deltas.numpy().reshape(N, total, 4))

    refs, note = references(("mrcnn_np.model.rpn.concat_box_prediction_layers", (
        objectness.data.reshape(N, total), box_deltas.data.reshape(N, total, 4))),
        ("torch", "torchvision.models.detection.rpn"), torch_flatten)
    lookups = (_source_lookup(logits, "logits"), _source_lookup(deltas, "deltas"))
    for reference, expected in refs:
        for which, (name, unit) in enumerate([("objectness", "logits"), ("deltas", "deltas")]):
            try:
                _assert_same_entries(got[which], expected[which], f"{name} of {case} vs {reference}",
                                     _describer(A, feature_sizes), lookups[which], unit)
            except AssertionError as error:  # objectness and deltas recognised apart
                raise _hinted(error, MISTAKES.hint("flatten_head_outputs", got, expected, call, list)) from None
    return note


# --- task (b) ----------------------------------------------------------------------------------
def _fpn_anchors(image_size, feature_sizes):
    """The anchors of torchvision's Mask R-CNN (sizes 32..512, ratios 0.5, 1, 2) for these levels, float64."""
    from mrcnn_np.model.anchors import AnchorGenerator

    levels = len(feature_sizes)
    generator = AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,))[:levels],
                                aspect_ratios=((0.5, 1.0, 2.0),) * levels)
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


def _decode_hint(got, expected, call):
    """A hint for a wrong shape, else of a mistake ``got`` reproduces on the x or the y coordinates."""
    N, total, _ = expected.shape
    if np.shape(got) in ((total, N, 4), (N * total, 4), (N * total, 1, 4)):
        return "return one (total, 4) block per image: shape (N, total, 4)"
    # x1, x2 come from dx, dw alone; y1, y2 from dy, dh
    return MISTAKES.hint("decode_proposals", got, expected, call, lambda a: (a[..., 0::2], a[..., 1::2]))


def check_decode_proposals(ex, label, deltas, anchors):
    from mrcnn_np.ops.box_coder import BoxCoder

    N, total, _ = deltas.shape
    case = f"decode_proposals(deltas {shape_str(deltas.shape)}, anchors {shape_str(anchors.shape)}: {label})"
    call = caller(deltas, anchors)
    got = call(function(ex, "decode_proposals"))
    flat = deltas.reshape(N * total, 4)  # (N, total, 4) -> (N*total, 4): image-major, as the library decodes
    refs, note = references(
        ("mrcnn_np BoxCoder((1, 1, 1, 1)).decode",
         BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(flat, np.tile(anchors, (N, 1))).reshape(N, total, 4)),
        ("torch", "torchvision.models.detection._utils"),
        lambda torch, utils: ("torchvision BoxCoder.decode", utils.BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(
            torch.tensor(flat), [torch.tensor(anchors)] * N).numpy().reshape(N, total, 4)))
    compare(got, refs, lambda got, expected, name: _assert_close(got, expected, f"{case} vs {name}", RTOL),
            lambda expected: _decode_hint(got, expected, call))
    return note


# --- task (c) ----------------------------------------------------------------------------------
FPN_BATCH = (96, 128)
FPN_LEVELS = [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]  # 3072 anchors: 2304, 576, 144, 36, 12
SMALL_LEVELS = [(10, 12), (5, 6), (3, 3)]  # a (40, 48) batch, 3 levels: 360, 90, 27 anchors


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


def _select_hint(got, expected, call, fallback=None):
    """The hint of the mistake that reproduces the boxes of ``got``, or of the right boxes in the wrong
    order, or ``fallback``."""
    hint = MISTAKES.hint("select_proposals", got, expected, call, lambda result: result[:1])
    try:
        boxes = np.asarray(got[0], dtype=np.float64)
    except (TypeError, ValueError):
        return hint
    if not hint and boxes.shape == expected[0].shape and np.array_equal(np.unique(boxes, axis=0),
                                                                         np.unique(expected[0], axis=0)):
        return "the right boxes, in the wrong order: return them by decreasing score"
    return hint or fallback


def _describe_rows(got, expected, expected_scores):
    """The first row where two (P, 4) box arrays differ."""
    k = int(np.argmax((got != expected).any(axis=1)))
    return (f"first at row {k}: expected {_fmt(expected[k])} (score {expected_scores[k]:.6g}), "
            f"got {_fmt(got[k])}")


def _compare_selection(got, expected, what, boxes_hint):
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
        raise _hinted(error, boxes_hint(expected)) from None
    try:
        _assert_close(scores, expected_scores, f"scores of {what}", RTOL)
    except AssertionError as error:
        with np.errstate(divide="ignore"):
            logits = np.log(expected_scores) - np.log1p(-expected_scores)
        hint = "the scores are probabilities, sigmoid(logit), not the logits" if _matches(scores, logits) else None
        raise _hinted(error, hint) from None


def _torch_selection(torch, rpn_module, kwargs):
    pre_n, post_n = kwargs["pre_nms_top_n"], kwargs["post_nms_top_n"]
    tv = rpn_module.RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": pre_n, "testing": pre_n},
                                          {"training": post_n, "testing": post_n}, kwargs["nms_thresh"],
                                          kwargs["score_thresh"])
    tv.min_size = kwargs["min_size"]
    tv.eval()
    with torch.no_grad():
        boxes, scores = tv.filter_proposals(torch.tensor(kwargs["proposals"][None]), torch.tensor(kwargs["objectness"]),
                                            [kwargs["image_size"]], kwargs["num_anchors_per_level"])
    return "torchvision RegionProposalNetwork.filter_proposals", (boxes[0].numpy(), scores[0].numpy())


def check_select_proposals(ex, label, kwargs, with_torch, fallback_hint):
    from mrcnn_np.config import MaskRCNNConfig
    from mrcnn_np.model.rpn import RegionProposalNetwork

    pre_n, post_n, thresh = kwargs["pre_nms_top_n"], kwargs["post_nms_top_n"], kwargs["nms_thresh"]
    min_size, score_thresh, size = kwargs["min_size"], kwargs["score_thresh"], kwargs["image_size"]
    case = (f"select_proposals(proposals {shape_str(kwargs['proposals'].shape)}, objectness "
            f"{shape_str(kwargs['objectness'].shape)}, {kwargs['num_anchors_per_level']}, image_size={size}, "
            f"pre_nms_top_n={pre_n}, post_nms_top_n={post_n}, nms_thresh={thresh}, min_size={min_size}, "
            f"score_thresh={score_thresh}) on {label}")
    call = caller(*kwargs.values())
    got = _as_tuple(call(function(ex, "select_proposals")), 2, case, "(boxes (P, 4), scores (P,))")
    rpn = RegionProposalNetwork.from_config(MaskRCNNConfig(), anchor_generator=None, head=None, nms_thresh=thresh,
                                            score_thresh=score_thresh, min_size=min_size)
    boxes, scores = rpn.filter_proposals(kwargs["proposals"][None], kwargs["objectness"][None], [size],
                                         kwargs["num_anchors_per_level"], pre_n, post_n)
    library = ("mrcnn_np RegionProposalNetwork.filter_proposals", (boxes[0], scores[0]))
    refs, note = references(library, ("torch", "torchvision.models.detection.rpn"),
                            lambda *modules: _torch_selection(*modules, kwargs)) if with_torch else ([library], None)
    compare(got, refs, lambda got, expected, name: _compare_selection(
        got, expected, f"{case}\nvs {name}", lambda expected: _select_hint(got, expected, call, fallback_hint)))
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


def _loss_hint(got, expected, which, call):
    """A hint for a loss ``got[which]`` that is not finite, else of a mistake ``got`` reproduces (each loss on
    its own)."""
    try:
        finite = np.isfinite(np.asarray(got[which], dtype=np.float64)).all()
    except (TypeError, ValueError):
        return None
    if not finite:
        return ("the loss is not finite: for large |x|, log(sigmoid(x)) overflows; use "
                "max(x, 0) - x * t + log(1 + exp(-|x|)). With no positives, the box loss is 0 (a sum over nothing), "
                "not 0 / 0")
    return MISTAKES.hint("rpn_loss", got, expected, call, list)


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
    return "torchvision RegionProposalNetwork.compute_loss", (objectness.item(), box.item())


def check_rpn_loss(ex, label, c):
    from mrcnn_np import Tensor
    from mrcnn_np.config import MaskRCNNConfig
    from mrcnn_np.model.rpn import RegionProposalNetwork

    M = len(c["labels"])
    case = (f"rpn_loss(objectness ({M},), deltas ({M}, 4), labels, regression_targets, sampled_pos "
            f"({int(c['sampled_pos'].sum())} True), sampled_neg ({int(c['sampled_neg'].sum())} True)) on {label}")
    call = caller(*c.values())
    got = _as_tuple(call(function(ex, "rpn_loss")), 2, case, "(loss_objectness, loss_box)")
    rpn = RegionProposalNetwork.from_config(MaskRCNNConfig(), anchor_generator=None, head=None)
    objectness, box = rpn.compute_loss(Tensor(c["objectness"][:, None]), Tensor(c["deltas"]), [c["labels"]],
                                       [c["regression_targets"]], [c["sampled_pos"].astype(np.uint8)],
                                       [c["sampled_neg"].astype(np.uint8)])
    refs, note = references(("mrcnn_np RegionProposalNetwork.compute_loss", (objectness.item(), box.item())),
                            ("torch", "torchvision.models.detection.rpn"), lambda *modules: _tv_losses(*modules, c))
    for reference, expected in refs:
        for which, name in enumerate(("loss_objectness", "loss_box")):
            try:
                _assert_close_scalar(got[which], expected[which], f"{name} of {case} vs {reference}", RTOL)
            except AssertionError as error:
                raise _hinted(error, _loss_hint(got, expected, which, call)) from None
    return note


TASKS = [
    Task("flatten_head_outputs", "(a) per-level head outputs -> one row per anchor",
         for_each_case(_flatten_cases, check_flatten_head_outputs)),
    Task("decode_proposals", "(b) deltas + anchors -> proposals, clamped", for_each_case(_decode_cases,
                                                                                         check_decode_proposals)),
    Task("select_proposals", "(c) top-n per level, clip, filter, NMS per level",
         for_each_case(_select_cases, check_select_proposals)),
    Task("rpn_loss", "(d) objectness BCE and box smooth L1 over the sample",
         for_each_case(_loss_cases, check_rpn_loss)),
]
