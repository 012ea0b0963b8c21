"""Grader of exercise 06: the learner's functions against mrcnn_np and, when installed, torchvision.

Every task runs fixed float64 cases, compared to 1e-10 of the reference's largest value. The
transform is compared with mrcnn_np's and torchvision's ``GeneralizedRCNNTransform`` (padded
batch and image sizes), the boxes mapped back with both libraries' ``resize_boxes``. Inference
wired from the stages runs on a tiny model with seeded random weights (``mrcnn_np.config.tiny``,
images of 64 to 100 pixels) and is compared with that model's ``MaskRCNN.predict`` and with
torchvision's ``MaskRCNN`` holding the same weights (``mrcnn_np.reference.twins``).
``first_disagreement`` is graded on constructed cases whose answer is known: hand-made stage
dicts, the stages of the tiny model against a copy with one weight perturbed (the perturbed
stage is the first to disagree) and, with torch, the stages of mrcnn_np against torchvision's.

When a result is wrong in a way the grader recognises (one of the mistakes in ``mistakes.py``),
the message ends with a hint.
"""

import copy
import functools
import itertools
import math

import numpy as np

from mrcnn_np.exercises import (
    Mistakes,
    Task,
    caller,
    compare,
    for_each_case,
    function,
    references,
    torch_modules,
)
from mrcnn_np.exercises import as_tuple as _as_tuple
from mrcnn_np.exercises import assert_close as _assert_close
from mrcnn_np.exercises import call_learner as _call
from mrcnn_np.exercises import not_installed_note as _not_installed_note

STUB = "exercise.py"
RTOL = 1e-10
MISTAKES = Mistakes(__file__)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TORCH_NOTE = _not_installed_note("torch and torchvision")


def _hint(task, got, expected, call, parts=None):
    """The hint of a tabled mistake of ``task`` that returns ``got`` (None when none does)."""
    return lambda _: MISTAKES.hint(task, got, expected, call, parts)


# --- task (a) ----------------------------------------------------------------------------------
def _transform_cases():
    """(label, images (3, H, W) float64 in [0, 1], min_size, max_size, mean, std, size_divisible)."""
    rng = np.random.default_rng(61)
    mean, std = IMAGENET
    yield ("one (3, 60, 90) image, min_size 96, max_size 128 (the longer side decides the scale)",
           [rng.uniform(0, 1, (3, 60, 90))], 96, 128, mean, std, 32)
    yield ("two images (3, 50, 40) and (3, 37, 71), min_size 64, max_size 200 (enlarged; the shorter side "
           "decides)", [rng.uniform(0, 1, (3, 50, 40)), rng.uniform(0, 1, (3, 37, 71))], 64, 200, mean, std, 32)
    yield ("one (3, 130, 100) image, min_size 48, max_size 80 (shrunk), size_divisible 16, other mean and std",
           [rng.uniform(0, 1, (3, 130, 100))], 48, 80, (0.5, 0.25, 0.75), (0.3, 0.2, 0.1), 16)
    yield ("three images (3, 33, 33), (3, 21, 45), (3, 45, 21), min_size 40, max_size 64",
           [rng.uniform(0, 1, s) for s in ((3, 33, 33), (3, 21, 45), (3, 45, 21))], 40, 64, mean, std, 32)


def _check_transform(ex, label, images, min_size, max_size, mean, std, size_divisible):
    from mrcnn_np.model.transform import GeneralizedRCNNTransform

    what = f"transform on {label}"
    args = (images, min_size, max_size, mean, std, size_divisible)
    got = _call(ex, function(ex, "transform"), args, what)
    got_batch, got_sizes = _as_tuple(got, 2, what, "(batch, image_sizes)")
    ours = GeneralizedRCNNTransform(min_size=min_size, max_size=max_size, image_mean=mean, image_std=std,
                                    size_divisible=size_divisible)
    mine = ours(images, dtype=np.float64)[0]

    def torchvision_reference(torch, detection_transform):
        tv = detection_transform.GeneralizedRCNNTransform(min_size, max_size, list(mean), list(std),
                                                          size_divisible=size_divisible).eval()
        with torch.no_grad():
            batch = tv([torch.from_numpy(image.copy()) for image in images])[0]
        return "torchvision", (batch.tensors.numpy(), [tuple(s) for s in batch.image_sizes])

    refs, note = references(("mrcnn_np", (mine.tensors, mine.image_sizes)), ("torch",
                            "torchvision.models.detection.transform"), torchvision_reference)

    def check(got, expected, name):
        sizes = [tuple(int(v) for v in s) for s in expected[1]]
        try:
            received = [tuple(int(v) for v in s) for s in got_sizes]
        except (TypeError, ValueError):
            raise AssertionError(f"{what}: image_sizes must be a list of (h, w) pairs, got {got_sizes!r}") from None
        if received != sizes:
            raise AssertionError(f"{what} vs {name}: image_sizes differ\nexpected {sizes}, got {received}")
        _assert_close(got_batch, expected[0], f"{what}: the padded batch vs {name}", RTOL)

    compare(got, refs, check, _hint("transform", got, refs[0][1], caller(*args), _transform_parts))
    return note


def _transform_parts(result):
    batch, sizes = result
    return [(np.asarray(batch), np.asarray(sizes, dtype=np.float64))]


# --- task (b) ----------------------------------------------------------------------------------
def _boxes_cases():
    """(label, boxes (D, 4), image_size, original_size)."""
    rng = np.random.default_rng(62)

    def boxes(n, h, w):
        xy = rng.uniform(0, [w * 0.8, h * 0.8], (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, [w * 0.2, h * 0.2], (n, 2))], axis=1)

    yield "20 boxes, resized (96, 137) -> original (70, 100)", boxes(20, 96, 137), (96, 137), (70, 100)
    yield "15 boxes, resized (62, 48) -> original (130, 100) (enlarged)", boxes(15, 62, 48), (62, 48), (130, 100)
    yield "8 boxes, resized (37, 71) -> original (29, 57)", boxes(8, 37, 71), (37, 71), (29, 57)
    yield "no boxes, resized (96, 128) -> original (60, 80)", np.zeros((0, 4)), (96, 128), (60, 80)


def _check_boxes(ex, label, boxes, image_size, original_size):
    from mrcnn_np.model.transform import resize_boxes

    what = f"boxes_to_original on {label}"
    args = (boxes, image_size, original_size)
    got = _call(ex, function(ex, "boxes_to_original"), args, what)

    def torchvision_reference(torch, detection_transform):
        return "torchvision", detection_transform.resize_boxes(torch.from_numpy(boxes.copy()), list(image_size),
                                                               list(original_size)).numpy()

    refs, note = references(("mrcnn_np", resize_boxes(boxes.copy(), image_size, original_size)),
                            ("torch", "torchvision.models.detection.transform"), torchvision_reference)
    compare(got, refs, lambda g, e, name: _assert_close(g, e, f"{what} vs {name}", RTOL),
            _hint("boxes_to_original", got, refs[0][1], caller(*args)))
    return note


# --- task (c) ----------------------------------------------------------------------------------
KEYS = ("boxes", "labels", "scores", "masks")


def tiny_config(dtype=np.float64):
    """The tiny model's config: ``mrcnn_np.config.tiny`` (4 classes) on 96 to 128 pixel inputs."""
    from mrcnn_np.config import tiny

    return tiny(num_classes=4, dtype=dtype, min_size=96, max_size=128, box_detections_per_img=20)


def twin_models():
    """(torchvision's model or None, our tiny MaskRCNN) with the same seeded random weights, float64;
    None for torchvision's when torch or torchvision is not installed."""
    return _twin_models(torch_modules("torch", "torchvision")[0] is not None)


@functools.cache
def _twin_models(with_torch: bool):
    if not with_torch:
        from mrcnn_np.model.mask_rcnn import MaskRCNN

        return None, MaskRCNN(tiny_config(), rng=0).eval()
    from mrcnn_np.reference.twins import twin_pair

    return twin_pair(tiny_config(), seed=0, image=_images()[0])


def _images():
    rng = np.random.default_rng(63)
    return [rng.uniform(0, 1, (72, 100, 3)), rng.uniform(0, 1, (64, 80, 3))]


class Stages:
    """What ``predict_from_stages`` receives: a model's stages, without its ``predict``."""

    def __init__(self, model):
        self.transform, self.backbone, self.rpn, self.roi_heads = (model.transform, model.backbone, model.rpn,
                                                                   model.roi_heads)
        self.dtype, self.config = model.dtype, model.config


def _predict_cases():
    yield ("the tiny model (random weights, 4 classes) on two images (72, 100, 3) and (64, 80, 3)", _images())


def _as_results(got, n, what):
    if not isinstance(got, (list, tuple)) or len(got) != n or not all(isinstance(d, dict) for d in got):
        raise AssertionError(f"{what}:\nexpected a list of {n} dict(s) (one per image), got {type(got).__name__}"
                             + (f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""))
    for i, d in enumerate(got):
        missing = [k for k in KEYS if k not in d]
        if missing:
            raise AssertionError(f"{what}:\nresult {i} has no {missing}; expected the keys {list(KEYS)}")
    return got


def _result_parts(results):
    return [tuple(np.asarray(d[k], dtype=np.float64) for d in results for k in KEYS)]


def _check_predict(ex, label, images):
    tv, model = twin_models()
    what = f"predict_from_stages on {label}"
    got = _call(ex, function(ex, "predict_from_stages"), (Stages(model), images), what)
    got = _as_results(got, len(images), what)
    refs = [("mrcnn_np's MaskRCNN.predict", model.predict(images))]
    note = TORCH_NOTE
    if tv is not None:
        import torch

        from mrcnn_np.reference.twins import to_torch

        with torch.no_grad():
            out = tv(to_torch(images))
        refs.append(("torchvision's MaskRCNN", [{k: d[k].numpy() for k in KEYS} for d in out]))
        note = None

    def check(got, expected, name):
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            labels = np.asarray(g["labels"])
            if labels.shape != e["labels"].shape or not np.array_equal(labels, e["labels"]):
                raise AssertionError(f"{what}, image {i} vs {name}: labels differ\nexpected {e['labels'].tolist()}"
                                     f"\ngot      {labels.tolist()}")
            for key in ("boxes", "scores", "masks"):
                _assert_close(g[key], e[key], f"{what}, image {i}: {key} vs {name}", RTOL)

    hint = _hint("predict_from_stages", got, refs[0][1], lambda f: f(Stages(model), images), _result_parts)
    compare(got, refs, check, hint)
    return note


# --- task (d) ----------------------------------------------------------------------------------
def _made_up_cases():
    """(label, stages_a, stages_b, atol, (name, error)): hand-made stages whose answer is known."""
    rng = np.random.default_rng(64)
    a = {"transform": rng.normal(size=(3, 8, 8)), "features": rng.normal(size=(2, 4, 4)),
         "proposals": rng.uniform(0, 50, (6, 4)), "scores": rng.uniform(0, 1, (6,))}
    b = copy.deepcopy(a)
    b["features"][1, 2, 3] += 1e-3  # the first disagreement, 1e-3 (to rounding: read it back)
    b["scores"][4] += 0.5  # a larger one, later
    small = abs(b["features"][1, 2, 3] - a["features"][1, 2, 3])
    big = abs(b["scores"][4] - a["scores"][4])
    yield "4 stages, 'features' off by 1e-3 and 'scores' by 0.5, atol 1e-6", a, b, 1e-6, ("features", small)
    yield "the same stages, atol 1e-2 (only 'scores' disagrees)", a, b, 1e-2, ("scores", big)
    yield "the same stages, atol 1 (every stage agrees)", a, b, 1.0, (None, big)
    yield "the same stages, atol exactly the largest error (agrees: only errors > atol disagree)", a, b, big, \
        (None, big)
    yield "identical stages, atol 0", a, copy.deepcopy(a), 0.0, (None, 0.0)
    c = copy.deepcopy(a)
    c["proposals"] = c["proposals"][:5]
    yield "'proposals' of a different shape in stages_b ((5, 4) vs (6, 4))", a, c, 1e-6, ("proposals", math.inf)
    d = {k: v for k, v in copy.deepcopy(a).items() if k != "features"}
    yield "'features' missing from stages_b", a, d, 1e-6, ("features", math.inf)
    e, f = copy.deepcopy(a), copy.deepcopy(a)
    e["transform"][0, 0, 0] = f["transform"][0, 0, 0] = np.nan
    f["proposals"][2, 1] += 0.25
    yield "NaN at the same place in both 'transform' (agrees), 'proposals' off by 0.25, atol 0.1", e, f, 0.1, \
        ("proposals", abs(f["proposals"][2, 1] - a["proposals"][2, 1]))
    f["features"][0, 0, 0] = np.nan
    yield "NaN in 'features' of stages_b only", e, f, 0.1, ("features", math.inf)
    g = {"empty": np.zeros((0, 4)), "scores": a["scores"]}
    yield "an empty stage (0 detections in both), then 'scores' off by 0.5", g, {"empty": np.zeros((0, 4)),
                                                                                "scores": b["scores"]}, 1e-3, \
        ("scores", big)


def model_stages(model, images) -> dict:
    """The named stages of our ``model`` on ``images`` (the first image's), in the order they run."""
    from mrcnn_np.autograd import no_grad

    with no_grad():
        batch, _ = model.transform(images, dtype=model.dtype)
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
        out = model.predict(images)[0]
    stages = {"transform: batch": batch.tensors}
    stages |= {f"backbone: P{i + 2}": features[k].data for i, k in enumerate(features)}
    stages["rpn: proposals"] = proposals[0]
    return stages | {f"detections: {k}": out[k] for k in KEYS}


def torchvision_stages(tv, images) -> dict:
    """The same stages as :func:`model_stages`, of torchvision's ``tv``."""
    import torch
    from torchvision.models.detection.image_list import ImageList

    from mrcnn_np.reference.twins import to_torch

    x = to_torch(images)
    with torch.no_grad():
        batch, _ = tv.transform(x)
        features = tv.backbone(batch.tensors)
        proposals, _ = tv.rpn(ImageList(batch.tensors, batch.image_sizes), features)
        out = tv(x)[0]
    stages = {"transform: batch": batch.tensors.numpy()}
    stages |= {f"backbone: P{i + 2}": features[k].numpy() for i, k in enumerate(features)}
    stages["rpn: proposals"] = proposals[0].numpy()
    return stages | {f"detections: {k}": out[k].numpy() for k in KEYS}


def perturbed(model, name: str, delta: float = 1e-3):
    """A copy of ``model`` with ``delta`` added to every entry of its parameter ``name``."""
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    twin = MaskRCNN(model.config, rng=1)
    twin.load_state_dict(model.state_dict())
    dict(twin.named_parameters())[name].data += delta
    return twin.eval()


PERTURBED = [  # (parameter, the first stage its change reaches)
    ("backbone.fpn.layer_blocks.1.0.weight", "backbone: P3"),
    ("rpn.head.cls_logits.weight", "rpn: proposals"),
    ("roi_heads.mask_predictor.mask_fcn_logits.weight", "detections: masks"),
]


def _error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) if a.shape == b.shape else math.inf


def _model_cases():
    """Stages of the tiny model against a copy with one weight perturbed, and against torchvision."""
    tv, model = twin_models()
    images = _images()[:1]
    ours = model_stages(model, images)
    for name, stage in PERTURBED:
        theirs = model_stages(perturbed(model, name), images)
        names = list(ours)
        before = names[: names.index(stage)]
        if not all(np.array_equal(ours[k], theirs[k]) for k in before):  # the grader's own fault, not the learner's
            raise RuntimeError(f"grader: {name} changed a stage before {stage}")
        yield (f"the tiny model's stages vs a copy with 1e-3 added to {name}, atol 1e-9", ours, theirs, 1e-9,
               (stage, _error(ours[stage], theirs[stage])))
    if tv is not None:
        reference = torchvision_stages(tv, images)
        largest = max(_error(ours[k], reference[k]) for k in ours)
        if not largest < 1e-9:
            raise RuntimeError(f"grader: mrcnn_np and torchvision differ by {largest:.3g}")
        yield ("the tiny model's stages (mrcnn_np) vs torchvision's MaskRCNN with the same weights, atol 1e-9",
               ours, reference, 1e-9, (None, largest))


def _check_disagreement(ex, label, stages_a, stages_b, atol, expected):
    what = f"first_disagreement on {label}"
    args = (stages_a, stages_b, atol)
    got = _call(ex, function(ex, "first_disagreement"), [copy.deepcopy(a) for a in args], what)
    name, error = _as_tuple(got, 2, what, "(name, error)")
    hint = _disagreement_hint(got, expected, args)
    suffix = f"\nhint: {hint}" if hint else ""
    if name != expected[0]:
        raise AssertionError(f"{what}:\nexpected the stage {expected[0]!r}, got {name!r}{suffix}")
    try:
        error = float(error)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}:\nexpected the error as a float, got {type(error).__name__}") from None
    if math.isinf(expected[1]) or math.isinf(error):
        if error != expected[1]:
            raise AssertionError(f"{what}:\nstage {name!r}: expected the error {expected[1]}, got {error}{suffix}")
    else:
        try:
            _assert_close(error, expected[1], f"{what}: the error of stage {name!r}", RTOL)
        except AssertionError as failure:
            raise AssertionError(f"{failure}{suffix}") from None
    return torch_modules("torch", "torchvision")[1]


def _same(a, b) -> bool:
    """Whether two results (name, error) of first_disagreement are the same."""
    try:
        (name_a, error_a), (name_b, error_b) = a, b
        error_a, error_b = float(error_a), float(error_b)
    except (TypeError, ValueError):
        return False
    return name_a == name_b and (error_a == error_b or abs(error_a - error_b) <= 1e-9 * abs(error_b))


def _disagreement_hint(got, expected, args):
    """The hint of the first tabled mistake of first_disagreement that returns ``got`` here."""
    return MISTAKES.hint("first_disagreement", got, expected, lambda f: f(*copy.deepcopy(args)), same=_same)


TASKS = [
    Task("transform", "normalise, resize, pad into a batch (GeneralizedRCNNTransform)",
         for_each_case(_transform_cases, _check_transform)),
    Task("boxes_to_original", "boxes back to the original image (resize_boxes)",
         for_each_case(_boxes_cases, _check_boxes)),
    Task("predict_from_stages", "inference wired from the model's stages",
         for_each_case(_predict_cases, _check_predict)),
    Task("first_disagreement", "the first stage where two runs disagree",
         for_each_case(lambda: itertools.chain(_made_up_cases(), _model_cases()), _check_disagreement)),
]
