"""Wrong argument types, shapes and counts, fed systematically to every public op, the model and
its config: each is refused with a TypeError or ValueError (exactly those: not IndexError,
KeyError, AttributeError, ZeroDivisionError or a warning) whose message names the argument --
never a message from inside NumPy.

The ops part is a table: ``OPS`` holds, for every public callable of :mod:`mrcnn_np.ops`, one
good call and the *kind* of each argument; ``WRONG`` holds, for every kind, the wrong values
to try. :func:`test_every_public_op_is_swept` fails when a public op appears that the table
does not cover (or that ``NOT_SWEPT`` does not explain), so coverage cannot silently drop.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field, fields

import numpy as np
import pytest

import mrcnn_np.ops
from mrcnn_np import config as configs
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.ops import batched_nms, box_area, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.ops.matcher import Matcher, labels_of_matches
from mrcnn_np.ops.poolers import LevelMapper, MultiScaleRoIAlign, infer_scale, level_of_boxes
from mrcnn_np.ops.roi_align import convert_boxes_to_roi_format, roi_align
from mrcnn_np.ops.roi_pool import roi_pool
from mrcnn_np.ops.roi_warp import roi_warp
from mrcnn_np.ops.sampler import BalancedPositiveNegativeSampler


def raises_named(call, *names):
    """``call()`` raises exactly TypeError or ValueError, and its message names one of ``names``."""
    with pytest.raises(Exception) as info:  # noqa: B017, PT011 (the type is asserted below, exactly)
        call()
    exc = info.value
    assert type(exc) in (TypeError, ValueError), f"{type(exc).__name__}: {exc}"
    assert any(name in str(exc) for name in names), f"message does not name {names}: {exc}"
    leaked = [words for words in INTERNAL_WORDS if words in str(exc)]
    assert not leaked, f"a message from inside NumPy or Python leaked out: {exc}"
    return exc


# what NumPy and Python say when an argument reaches code that was never meant to see it
INTERNAL_WORDS = ("inhomogeneous", "could not be broadcast", "too many indices", "ufunc", "not iterable",
                  "not subscriptable", "has no attribute", "not supported between", "unsupported operand",
                  "out of bounds", "negative dimensions", "object cannot be interpreted", "cannot unpack")


# --- good values ------------------------------------------------------------------------------
BX = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
SC = np.array([0.9, 0.8, 0.7])
IDX = np.array([0, 0, 1])
IOU = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]])
FEAT = np.random.default_rng(0).random((1, 2, 8, 8)).astype(np.float32)
ROIS = np.array([[0.0, 1.0, 1.0, 5.0, 5.0]], np.float32)
P2 = np.random.default_rng(1).random((1, 2, 8, 8)).astype(np.float32)  # level "0" of a 32 x 32 image


# --- wrong values, by the kind of argument ------------------------------------------------------
def not_arrays():
    """What is never an array: (id, value)."""
    return [("None", None), ("str", "boxes"), ("dict", {"x": 1}), ("python-float", 3.0), ("set", {1.0})]


def bad_dtypes(good):
    return [(f"{dt}-dtype", good.astype(dt)) for dt in ("complex128", "bool", "object", "str", "float16")]


def ragged(width):
    return [("ragged-list", [[0.0] * width, [0.0] * (width - 1)]), ("list-of-str", [["a"] * width])]


def with_nan(good):
    bad = good.astype(np.float64)
    bad.flat[1] = np.nan
    return [("nan", bad)]


WRONG = {
    "boxes": not_arrays() + ragged(4) + bad_dtypes(BX) + with_nan(BX) + [
        ("0-d", np.float64(1.0)), ("1-d", BX[0]), ("3-d", BX[None]), ("last-dim-5", np.ones((3, 5))),
        ("inverted", BX[:, [2, 3, 0, 1]]), ("inf", np.where(BX == 30, np.inf, BX))],
    "boxes_nd": not_arrays() + ragged(4) + bad_dtypes(BX) + [
        ("0-d", np.float64(1.0)), ("last-dim-5", np.ones((3, 5)))],  # (..., 4): a (4,) box is fine
    "boxes_any": not_arrays() + ragged(4) + bad_dtypes(BX) + [  # values unchecked (cost): dtype and shape
        ("0-d", np.float64(1.0)), ("1-d", BX[0]), ("3-d", BX[None]), ("last-dim-5", np.ones((3, 5)))],
    "scores": not_arrays() + ragged(2) + bad_dtypes(SC) + with_nan(SC) + [
        ("0-d", np.float64(0.5)), ("2-d", SC[:, None]), ("count-2", SC[:2]), ("count-4", np.append(SC, 0.1))],
    "idxs": not_arrays() + ragged(2) + [(f"{dt}-dtype", IDX.astype(dt)) for dt in
                                        ("float64", "complex128", "bool", "object", "str")] + [
        ("0-d", np.int64(0)), ("2-d", IDX[:, None]), ("count-2", IDX[:2])],
    "number": [("None", None), ("str", "0.5"), ("list", [0.5]), ("dict", {}), ("complex", 0.5j),
               ("nan", float("nan")), ("array-1", np.array([0.5])), ("bool", True)],
    "positive": [("None", None), ("str", "1"), ("list", [1.0]), ("nan", float("nan")), ("inf", float("inf")),
                 ("zero", 0.0), ("negative", -1), ("bool", True), ("complex", 1j)],
    "int": [("None", None), ("str", "2"), ("float", 1.5), ("float-whole", 2.0), ("nan", float("nan")),
            ("list", [2]), ("bool", True)],
    "positive_int": [("None", None), ("str", "4"), ("float", 1.5), ("zero", 0), ("negative", -3), ("bool", True)],
    "fraction": [("None", None), ("str", "0.5"), ("nan", float("nan")), ("above-1", 1.5), ("negative", -0.1),
                 ("list", [0.5])],
    "bool": [("None", None), ("str", "yes"), ("float", 0.5), ("list", [True])],
    "impl": [("None", None), ("int", 3), ("unknown", "fortran"), ("list", ["numpy"])],
    "roi_pooler": [("None", None), ("int", 3), ("unknown", "roialign"), ("list", ["align"])],
    "size": [("None", None), ("str", "2"), ("float", 2.5), ("len-1", (2,)), ("len-3", (2, 2, 2)), ("zero", (0, 2)),
             ("negative", -1), ("floats", (2.0, 2.0)), ("dict", {"h": 2})],
    "hw": [("None", None), ("int", 5), ("str", "ab"), ("len-1", (5,)), ("len-3", (5, 5, 5)), ("str-item", (5, "a")),
           ("nan", (float("nan"), 5)), ("negative", (-1, 5)), ("array-2d", np.ones((2, 2)))],
    "features": not_arrays() + [("list", FEAT.tolist())] + bad_dtypes(FEAT) + [
        ("int-dtype", FEAT.astype(np.int64)), ("3-d", FEAT[0]), ("5-d", FEAT[None])],
    "rois": not_arrays() + bad_dtypes(ROIS) + [
        ("1-d", ROIS[0]), ("last-dim-4", ROIS[:, 1:]), ("3-d", ROIS[None]), ("batch-index-1", ROIS + [1, 0, 0, 0, 0]),
        ("list-of-None", [None]), ("list-of-str", ["boxes"]), ("list-of-5-wide", [ROIS]),
        ("list-ragged", [[[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 5.0]]]), ("list-nan", [np.array([[np.nan, 1, 5, 5.0]])]),
        ("too-many-images", [BX, BX])],
    "deltas": not_arrays() + ragged(4) + bad_dtypes(np.zeros((3, 8))) + [
        ("0-d", np.float64(0)), ("1-d", np.zeros(8)), ("last-dim-6", np.zeros((3, 6))), ("count-2", np.zeros((2, 8)))],
    "matrix": not_arrays() + ragged(3) + bad_dtypes(IOU) + with_nan(IOU) + [("1-d", IOU[0]), ("3-d", IOU[None])],
    "matches": not_arrays() + [(f"{dt}-dtype", np.array([0, -1, -2, 1]).astype(dt)) for dt in
                               ("float64", "complex128", "bool", "object", "str")] + [
        ("2-d", np.array([[0, 1]])), ("out-of-range", np.array([0, 2])), ("below-minus-2", np.array([0, -3]))],
    "gt_labels": not_arrays() + [(f"{dt}-dtype", np.array([3, 5]).astype(dt)) for dt in
                                 ("complex128", "object", "str")] + [("0-d", np.int64(3)), ("2-d", np.array([[3, 5]]))],
    "label_list": [("None", None), ("str", "labels"), ("array", np.array([1, 0])), ("dict", {0: np.array([1])}),
                   ("list-of-None", [None]), ("list-of-str", ["ab"]), ("list-of-2-d", [np.zeros((2, 2))]),
                   ("list-of-complex", [np.array([1, 0j])]), ("list-of-object", [np.array([1, 0], object)]),
                   ("list-of-str-array", [np.array(["1", "0"])])],
    "generator": [("None", None), ("float", 3.5), ("str", "seed"), ("legacy", np.random.RandomState(0))],
    "weights4": [("None", None), ("str", "abcd"), ("len-3", (1.0, 1.0, 1.0)), ("str-items", ("a", "b", "c", "d")),
                 ("nan", (1.0, 1.0, float("nan"), 1.0)), ("zero", (1.0, 0.0, 1.0, 1.0)), ("negative", (-1, 1, 1, 1)),
                 ("float", 1.0)],
    "dtype": [("str", "foo"), ("int64", np.int64), ("float16", np.float16), ("object", object), ("list", [1])],
    "names": [("None", None), ("str", "0"), ("int-items", [0, 1]), ("empty", []), ("float", 1.0)],
    "feature_dict": [("None", None), ("list", [P2]), ("str", "0"), ("array", P2), ("missing-level", {"1": P2}),
                     ("value-None", {"0": None}), ("value-str", {"0": "map"}), ("value-3-d", {"0": P2[0]}),
                     ("value-int", {"0": P2.astype(np.int64)})],
    "box_list": [("None", None), ("str", "boxes"), ("array", BX), ("empty", []), ("list-of-None", [None]),
                 ("list-of-str", ["boxes"]), ("list-of-1-d", [BX[0]]), ("list-of-5-wide", [np.ones((3, 5))]),
                 ("list-of-complex", [BX.astype(complex)]), ("list-of-nan", with_nan(BX)[0][1:]),
                 ("count-2", [BX, BX])],
    "shape_list": [("None", None), ("str", "32x32"), ("empty", []), ("tuple-not-list", (32, 32)),
                   ("len-1-item", [(32,)]), ("str-item", [("a", 32)]), ("zero", [(0, 32)]), ("count-2", [(32, 32)] * 2),
                   ("None-item", [None])],
}


@dataclass
class Op:
    """One public callable: ``make()`` returns it, ``args`` is a good call, ``kinds`` the kind
    of each argument swept, ``named`` what a message about an argument may call it."""

    make: object
    args: dict
    kinds: dict
    named: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)  # argument -> ids of WRONG values that are fine here, why
    unswept: dict = field(default_factory=dict)  # argument -> why it is not swept


def coder():
    return BoxCoder((10.0, 10.0, 5.0, 5.0))


def pooler():
    return MultiScaleRoIAlign(["0"], 2, 2, impl="numpy")


OPS = {
    "boxes.box_area": Op(lambda: box_area, dict(boxes=BX), dict(boxes="boxes_any")),
    "boxes.box_iou": Op(lambda: box_iou, dict(boxes1=BX, boxes2=BX, impl="numpy"),
                        dict(boxes1="boxes", boxes2="boxes", impl="impl")),
    "boxes.clip_boxes_to_image": Op(lambda: clip_boxes_to_image, dict(boxes=BX, size=(15, 25)),
                                    dict(boxes="boxes_nd", size="hw")),
    "boxes.remove_small_boxes": Op(lambda: remove_small_boxes, dict(boxes=BX, min_size=1.0),
                                   dict(boxes="boxes_any", min_size="number")),
    "nms.nms": Op(lambda: nms, dict(boxes=BX, scores=SC, iou_threshold=0.5, impl="numpy"),
                  dict(boxes="boxes", scores="scores", iou_threshold="number", impl="impl"),
                  named={"boxes": ("boxes", "scores")}),
    "nms.batched_nms": Op(lambda: batched_nms, dict(boxes=BX, scores=SC, idxs=IDX, iou_threshold=0.5, impl="numpy"),
                          dict(boxes="boxes", scores="scores", idxs="idxs", iou_threshold="number", impl="impl"),
                          named={"boxes": ("boxes", "scores")}),
    "box_coder.BoxCoder": Op(lambda: BoxCoder, dict(weights=(10.0, 10.0, 5.0, 5.0), bbox_xform_clip=4.0),
                             dict(weights="weights4", bbox_xform_clip="positive"),
                             skip={"bbox_xform_clip": {"inf": "math.inf turns the clamp off (chapter 2 does)"}}),
    "box_coder.BoxCoder.encode": Op(lambda: coder().encode, dict(reference_boxes=BX, proposals=BX),
                                    dict(reference_boxes="boxes_any", proposals="boxes_any")),
    "box_coder.BoxCoder.decode": Op(lambda: coder().decode, dict(rel_codes=np.zeros((3, 8)), boxes=BX),
                                    dict(rel_codes="deltas", boxes="boxes_any"), named={"boxes": ("boxes", "rel_codes")}),
    "matcher.Matcher": Op(lambda: Matcher, dict(high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=False),
                          dict(high_threshold="number", low_threshold="number", allow_low_quality_matches="bool")),
    "matcher.Matcher.__call__": Op(lambda: Matcher(0.7, 0.3).__call__, dict(match_quality_matrix=IOU),
                                   dict(match_quality_matrix="matrix")),
    "matcher.labels_of_matches": Op(lambda: labels_of_matches, dict(matches=np.array([0, -1, -2, 1]),
                                                                    gt_labels=np.array([3, 5])),
                                    dict(matches="matches", gt_labels="gt_labels"),
                                    named={"gt_labels": ("gt_labels", "matches")}),
    "sampler.BalancedPositiveNegativeSampler": Op(lambda: BalancedPositiveNegativeSampler,
                                                  dict(batch_size_per_image=4, positive_fraction=0.5),
                                                  dict(batch_size_per_image="positive_int",
                                                       positive_fraction="fraction")),
    "sampler.BalancedPositiveNegativeSampler.__call__": Op(
        lambda: BalancedPositiveNegativeSampler(4, 0.5).__call__,
        dict(matched_idxs=[np.array([1, 0, -1])], rng=np.random.default_rng(0)),
        dict(matched_idxs="label_list", rng="generator")),
    "roi_align.roi_align": Op(lambda: roi_align, dict(input=FEAT, boxes=ROIS, output_size=2, spatial_scale=1.0,
                                                      sampling_ratio=2, aligned=False, impl="numpy"),
                              dict(input="features", boxes="rois", output_size="size", spatial_scale="positive",
                                   sampling_ratio="int", aligned="bool", impl="impl"),
                              named={"boxes": ("boxes", "box ")}),
    "roi_align.convert_boxes_to_roi_format": Op(lambda: convert_boxes_to_roi_format, dict(boxes=[BX], dtype=None),
                                                dict(boxes="rois", dtype="dtype"),
                                                skip={"boxes": {"batch-index-1": "no input to check it against",
                                                                "too-many-images": "no input to check it against"}}),
    "roi_warp.roi_warp": Op(lambda: roi_warp, dict(input=FEAT, boxes=ROIS, output_size=2, spatial_scale=1.0,
                                                   sampling_ratio=2, impl="numpy"),
                            dict(input="features", boxes="rois", output_size="size", spatial_scale="positive",
                                 sampling_ratio="int", impl="impl"),
                            named={"boxes": ("boxes", "box ")}),
    "roi_pool.roi_pool": Op(lambda: roi_pool, dict(input=FEAT, boxes=ROIS, output_size=2, spatial_scale=1.0),
                            dict(input="features", boxes="rois", output_size="size", spatial_scale="positive"),
                            named={"boxes": ("boxes", "box ")}),
    "poolers.infer_scale": Op(lambda: infer_scale, dict(feature_size=8, image_size=32),
                              dict(feature_size="positive", image_size="positive")),
    "poolers.LevelMapper": Op(lambda: LevelMapper, dict(k_min=2, k_max=5, canonical_scale=224, canonical_level=4,
                                                        eps=1e-6),
                              dict(k_min="int", k_max="int", canonical_scale="positive", canonical_level="int",
                                   eps="number")),
    "poolers.LevelMapper.__call__": Op(lambda: LevelMapper(2, 5).__call__, dict(boxlists=[BX]),
                                       dict(boxlists="box_list"), skip={"boxlists": {"count-2": "any count is fine"}}),
    "poolers.level_of_boxes": Op(lambda: level_of_boxes, dict(boxes=[BX], k_min=2, k_max=5),
                                 dict(boxes="box_list", k_min="int", k_max="int"),
                                 skip={"boxes": {"count-2": "any count is fine"}}),
    "poolers.MultiScaleRoIAlign": Op(lambda: MultiScaleRoIAlign, dict(featmap_names=["0"], output_size=2,
                                                                      sampling_ratio=2, canonical_scale=224,
                                                                      canonical_level=4, impl="numpy",
                                                                      roi_pooler="align"),
                                     dict(featmap_names="names", output_size="size", sampling_ratio="int",
                                          canonical_scale="positive", canonical_level="int", impl="impl",
                                          roi_pooler="roi_pooler")),
    "poolers.MultiScaleRoIAlign.__call__": Op(lambda: pooler().__call__,
                                              dict(features={"0": P2}, boxes=[BX], image_shapes=[(32, 32)]),
                                              dict(features="feature_dict", boxes="box_list",
                                                   image_shapes="shape_list"),
                                              named={"boxes": ("boxes", "image_shapes"),
                                                     "image_shapes": ("image_shapes", "boxes")}),
    "poolers.MultiScaleRoIAlign.setup_scales": Op(lambda: pooler().setup_scales,
                                                  dict(features=[P2], image_shapes=[(32, 32)]),
                                                  dict(image_shapes="shape_list"),
                                                  skip={"image_shapes": {"count-2": "no boxes to count against"}},
                                                  unswept={"features": "only its maps' heights are read; __call__ "
                                                                       "checks the maps"}),
}


# public callables that the sweep leaves out, and why
NOT_SWEPT = {
    "boxes.box_iou_numpy": "the reference kernel behind box_iou(impl='numpy'), which checks its arguments",
    "nms.nms_numpy": "the reference kernel behind nms(impl='numpy'), which checks its arguments",
    "roi_align.roi_align_numpy": "the reference kernel behind roi_align(impl='numpy'), which checks its arguments",
    "roi_align.roi_align_backward_numpy": "the reference backward behind roi_align, called by the tape",
    "roi_align.sampling_plan": "a step of roi_align, which checks its arguments",
    "roi_align.axis_matrix": "a step of roi_align_numpy (a SamplingPlan in, from sampling_plan)",
    "roi_align.AxisTaps": "a NamedTuple of arrays that sampling_plan fills",
    "roi_align.SamplingPlan": "a NamedTuple of arrays that sampling_plan fills",
}


def public_ops() -> set[str]:
    """Every public function, class and public method (or ``__call__``) defined in ``mrcnn_np.ops``."""
    found = set()
    for info in pkgutil.iter_modules(mrcnn_np.ops.__path__):
        module = importlib.import_module(f"mrcnn_np.ops.{info.name}")
        short = info.name
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                found.add(f"{short}.{name}")
            elif inspect.isclass(obj):
                found.add(f"{short}.{name}")
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) and (attr == "__call__" or not attr.startswith("_")):
                        if len(inspect.signature(member).parameters) > 1:  # takes more than self
                            found.add(f"{short}.{name}.{attr}")
    return found


def test_every_public_op_is_swept():
    exported = {f"{getattr(mrcnn_np.ops, n).__module__.rsplit('.', 1)[1]}.{n}" for n in mrcnn_np.ops.__all__}
    public = public_ops()
    assert exported <= public
    uncovered = public - set(OPS) - set(NOT_SWEPT)
    assert not uncovered, f"public ops not in the wrong-type sweep (add them to OPS): {sorted(uncovered)}"
    stale = (set(OPS) | set(NOT_SWEPT)) - public
    assert not stale, f"the sweep names ops that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_argument_is_swept_and_the_good_call_works(name):
    op = OPS[name]
    params = set(inspect.signature(op.make()).parameters) - {"self"}
    assert set(op.kinds) | set(op.unswept) == params, f"{name}: sweep {sorted(op.kinds)}, its arguments {sorted(params)}"
    op.make()(**op.args)


def op_cases():
    for name, op in sorted(OPS.items()):
        for arg, kind in op.kinds.items():
            fine = op.skip.get(arg, {})
            for case_id, bad in WRONG[kind]:
                if case_id not in fine:
                    yield pytest.param(name, arg, bad, id=f"{name}-{arg}-{case_id}")


@pytest.mark.parametrize(("name", "arg", "bad"), list(op_cases()))
def test_wrong_argument_is_refused_by_name(name, arg, bad):
    op = OPS[name]
    raises_named(lambda: op.make()(**{**op.args, arg: bad}), *op.named.get(arg, (arg,)))


@pytest.mark.parametrize(("call", "names"), [
    pytest.param(lambda: nms(BX, SC[:2], 0.5), ("scores",), id="nms-scores-fewer-than-boxes"),
    pytest.param(lambda: batched_nms(BX, SC, IDX[:2], 0.5), ("idxs",), id="batched_nms-idxs-fewer-than-boxes"),
    pytest.param(lambda: coder().encode(BX, BX[:2]), ("proposals",), id="encode-counts-differ"),
    pytest.param(lambda: coder().decode(np.zeros((2, 8)), BX), ("rel_codes",), id="decode-counts-differ"),
    pytest.param(lambda: Matcher(0.3, 0.7), ("low_threshold",), id="matcher-low-above-high"),
    pytest.param(lambda: LevelMapper(5, 2), ("k_min",), id="level-mapper-k_min-above-k_max"),
    pytest.param(lambda: roi_align(FEAT, [BX, BX], 2), ("batch index", "boxes"), id="roi_align-more-images-in-boxes"),
    pytest.param(lambda: pooler()({"0": P2}, [BX, BX], [(32, 32)]), ("boxes", "image_shapes"),
                 id="pooler-boxes-vs-image_shapes"),
])
def test_mismatched_counts_are_named(call, names):
    raises_named(call, *names)


class FakeTorchTensor:
    """Stands in for a CPU torch tensor (its module is ``torch``; ``.detach().numpy()`` gives the array)."""

    __module__ = "torch"

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, "torch.float64"
        self.device = type("device", (), {"type": "cpu"})()

    def detach(self):
        return self

    def numpy(self):
        return self.array


@pytest.mark.parametrize("convert", [np.asarray, lambda a: a.tolist(), FakeTorchTensor], ids=["array", "list", "torch"])
def test_conversions_people_expect_are_accepted(convert):
    """Lists of numbers and NumPy scalars where arrays and numbers are meant."""
    np.testing.assert_array_equal(nms(convert(BX), convert(SC), np.float32(0.5)), nms(BX, SC, 0.5))
    np.testing.assert_array_equal(clip_boxes_to_image(convert(BX), (np.int64(15), 25.0)), clip_boxes_to_image(BX, (15, 25)))
    np.testing.assert_array_equal(labels_of_matches(convert(np.array([0, -1, 1])), convert(np.array([3, 5]))),
                                  [3, 0, 5])
    assert roi_align(FEAT, ROIS, (np.int64(2), 2), np.float32(0.5), np.int64(2), np.bool_(False)).shape == (1, 2, 2, 2)
    assert box_area(BX.astype(np.int64)).dtype == np.int64  # integer boxes have integer areas, as in torchvision


# --- the model ----------------------------------------------------------------------------------
H, W = 40, 48
IMAGE = np.random.default_rng(2).random((H, W, 3)).astype(np.float32)


def target(**changes):
    masks = np.zeros((1, H, W), np.uint8)
    masks[0, 5:20, 5:25] = 1
    t = {"boxes": np.array([[5.0, 5.0, 25.0, 20.0]], np.float32), "labels": np.array([1]), "masks": masks}
    t.update(changes)
    return t


@pytest.fixture(scope="module")
def model():
    return MaskRCNN(configs.tiny(num_classes=3), rng=0)


IMAGE_CASES = [
    ("None", None), ("str", "image.png"), ("dict", {"image": IMAGE}), ("one-array", IMAGE), ("empty", []),
    ("item-None", [None]), ("item-str", ["image.png"]), ("item-list", [IMAGE.tolist()]), ("item-float", [3.0]),
    ("2-d", [IMAGE[..., 0]]), ("4-d", [IMAGE[None]]), ("2-channels", [IMAGE[..., :2]]),
    ("complex", [IMAGE.astype(complex)]), ("bool", [IMAGE > 0.5]), ("object", [IMAGE.astype(object)]),
    ("str-dtype", [IMAGE.astype(str)]), ("int64", [(IMAGE * 255).astype(np.int64)]), ("nan", [IMAGE * np.nan]),
    ("0-255-float", [IMAGE * 255]), ("empty-image", [IMAGE[:0]]),
]


@pytest.mark.parametrize("images", [v for _, v in IMAGE_CASES], ids=[k for k, _ in IMAGE_CASES])
@pytest.mark.parametrize("method", ["predict", "loss"])
def test_wrong_images_are_refused_by_name(model, method, images):
    call = model.predict if method == "predict" else (lambda ims: model.loss(ims, [target()], rng=0))
    raises_named(lambda: call(images), "images")


TARGET_CASES = [
    ("None", None, "targets"), ("dict", target(), "targets"), ("str", "targets", "targets"),
    ("count-0", [], "target"), ("count-2", [target(), target()], "target"),
    ("item-None", [None], "targets[0]"), ("item-list", [[1, 2]], "targets[0]"), ("item-str", ["t"], "targets[0]"),
    ("no-masks", [{"boxes": target()["boxes"], "labels": target()["labels"]}], "'masks'"),
    ("boxes-str", [target(boxes="boxes")], "targets[0]['boxes']"),
    ("boxes-None", [target(boxes=None)], "targets[0]['boxes']"),
    ("boxes-dict", [target(boxes={"x": 1})], "targets[0]['boxes']"),
    ("boxes-int", [target(boxes=np.array([[5, 5, 25, 20]]))], "targets[0]['boxes']"),
    ("boxes-complex", [target(boxes=target()["boxes"].astype(complex))], "targets[0]['boxes']"),
    ("boxes-1-d", [target(boxes=target()["boxes"][0])], "targets[0]['boxes']"),
    ("boxes-ragged", [target(boxes=[[5.0, 5, 25, 20], [1.0, 2]])], "targets[0]['boxes']"),
    ("boxes-nan", [target(boxes=np.array([[5.0, np.nan, 25, 20]]))], "targets[0]['boxes']"),
    ("labels-float", [target(labels=np.array([1.0]))], "targets[0]['labels']"),
    ("labels-bool", [target(labels=np.array([True]))], "targets[0]['labels']"),
    ("labels-str", [target(labels=np.array(["cat"]))], "targets[0]['labels']"),
    ("labels-object", [target(labels=np.array([1], object))], "targets[0]['labels']"),
    ("labels-0-d", [target(labels=np.int64(1))], "targets[0]['labels']"),
    ("labels-scalar", [target(labels=1)], "targets[0]['labels']"),
    ("labels-out-of-range", [target(labels=np.array([3]))], "targets[0]['labels']"),
    ("labels-None", [target(labels=None)], "targets[0]['labels']"),
    ("masks-None", [target(masks=None)], "targets[0]['masks']"),
    ("masks-str", [target(masks="masks")], "targets[0]['masks']"),
    ("masks-2-d", [target(masks=target()["masks"][0])], "targets[0]['masks']"),
    ("masks-wrong-size", [target(masks=target()["masks"][:, :-1])], "targets[0]['masks']"),
    ("masks-complex", [target(masks=target()["masks"].astype(complex))], "targets[0]['masks']"),
    ("masks-str-dtype", [target(masks=target()["masks"].astype(str))], "targets[0]['masks']"),
    ("masks-object", [target(masks=target()["masks"].astype(object))], "targets[0]['masks']"),
    ("masks-ragged", [target(masks=[[[0, 1], [1]]])], "targets[0]['masks']"),
]


@pytest.mark.parametrize(("targets", "name"), [(t, n) for _, t, n in TARGET_CASES], ids=[k for k, _, _ in TARGET_CASES])
def test_wrong_targets_are_refused_by_name(model, targets, name):
    raises_named(lambda: model.loss([IMAGE], targets, rng=0), name)


def test_training_mode_call_without_targets_is_refused(model):
    model.train()
    try:
        raises_named(lambda: model([IMAGE]), "targets")
    finally:
        model.eval()


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(rng="seed"), "rng"), (dict(rng=1.5), "rng"), (dict(rng=np.random.RandomState(0)), "rng"),
    (dict(sampled="draws"), "sampled"), (dict(sampled=[1, 2]), "sampled"), (dict(sampled={"rpn": 3}), "sampled"),
    (dict(sampled={"rpm": None}), "sampled"), (dict(return_sampled="yes"), "return_sampled"),
], ids=["rng-str", "rng-float", "rng-legacy", "sampled-str", "sampled-list", "sampled-rpn-int", "sampled-typo",
        "return_sampled-str"])
def test_wrong_loss_options_are_refused_by_name(model, kwargs, name):
    raises_named(lambda: model.loss([IMAGE], [target()], **kwargs), name)


def test_extra_target_keys_such_as_image_id_are_ignored(model):
    """Like torchvision, the model reads only boxes, labels and masks; an ``image_id`` of any type
    is the dataset's business (and the evaluator's), not the loss's."""
    ref = model.loss([IMAGE], [target()], rng=0)
    got = model.loss([IMAGE], [target(image_id="weird", area=None)], rng=0)
    for key in ref:
        np.testing.assert_array_equal(got[key].data, ref[key].data)


@pytest.mark.parametrize(("call", "name"), [
    pytest.param(lambda m: m.load_state_dict(None), "state_dict", id="load_state_dict-None"),
    pytest.param(lambda m: m.load_state_dict("weights.safetensors"), "state_dict", id="load_state_dict-path"),
    pytest.param(lambda m: m.load_state_dict([("a", 1)]), "state_dict", id="load_state_dict-list"),
    pytest.param(lambda m: m.load_state_dict({**m.state_dict(), 3: np.zeros(1)}), "3", id="load_state_dict-int-key"),
    pytest.param(lambda m: m.load_state_dict({"nope": 1}), "nope", id="load_state_dict-unknown-key"),
    pytest.param(lambda m: m.load_state_dict({k: v for k, v in list(m.state_dict().items())[1:]}), "missing",
                 id="load_state_dict-missing-key"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": np.zeros(2)})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-shape"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": None})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-None"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": "zeros"})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-str"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": [0, 0, "a"]})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-str-list"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": np.zeros(3, complex)})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-complex"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": np.zeros(3, bool)})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-bool"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": np.zeros(3, object)})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-object"),
    pytest.param(lambda m: m.load_state_dict(dict(m.state_dict(), **{"rpn.head.cls_logits.bias": np.full(3, np.nan)})),
                 "rpn.head.cls_logits.bias", id="load_state_dict-value-nan"),
    pytest.param(lambda m: m.load_state_dict(m.state_dict(), strict="yes"), "strict", id="load_state_dict-strict-str"),
    pytest.param(lambda m: m.to("float16"), "dtype", id="to-float16"),
    pytest.param(lambda m: m.to("foo"), "dtype", id="to-unknown-dtype"),
    pytest.param(lambda m: m.to(np.int32), "dtype", id="to-int32"),
    pytest.param(lambda m: m.to(device="gpu0"), "device", id="to-unknown-device"),
    pytest.param(lambda m: m.to(device=0), "device", id="to-device-int"),
    pytest.param(lambda m: m.train("yes"), "mode", id="train-str"),
    pytest.param(lambda m: m.train(None), "mode", id="train-None"),
    pytest.param(lambda m: m.requires_grad_("no"), "requires_grad", id="requires_grad_-str"),
    pytest.param(lambda m: m.manual_seed("seed"), "seed", id="manual_seed-str"),
    pytest.param(lambda m: m.manual_seed(1.5), "seed", id="manual_seed-float"),
    pytest.param(lambda m: m.manual_seed(-1), "seed", id="manual_seed-negative"),
])
def test_wrong_model_method_arguments_are_refused_by_name(call, name):
    model = MaskRCNN(configs.tiny(num_classes=3), rng=0)
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    raises_named(lambda: call(model), name)
    after = model.state_dict()  # a refused call changes nothing
    assert all(np.array_equal(before[k], after[k], equal_nan=True) and before[k].dtype == after[k].dtype
               for k in before)
    assert model.training is True


def test_model_conversions_people_expect_are_accepted():
    """A device as ``model.to``'s first argument (as in torch), a dtype by name, NumPy scalars, lists
    of numbers as state-dict values."""
    model = MaskRCNN(configs.tiny(num_classes=3), rng=0)
    lists = {k: np.asarray(v).tolist() for k, v in model.state_dict().items()}
    assert model.to("cpu") is model and model.dtype == np.float32
    assert model.to("float64").dtype == np.float64 and model.to(np.dtype("float32")).dtype == np.float32
    assert model.train(np.bool_(False)).training is False
    model.manual_seed(np.int64(3))
    model.load_state_dict(lists)
    assert all(np.array_equal(np.asarray(lists[k]), v) for k, v in model.state_dict().items())


# public methods of the model taking arguments that the sweep above leaves out, and why
MODEL_NOT_SWEPT = {
    "register_buffer": "for building layers, not for users of the model",
    "register_module": "for building layers, not for users of the model",
    "named_modules": "prefix is any string",
    "named_parameters": "prefix is any string",
    "named_buffers": "prefix is any string",
    "forward": "Module.forward; MaskRCNN is called through __call__",
}
MODEL_SWEPT = {"__init__", "__call__", "predict", "loss", "load_state_dict", "to", "train", "requires_grad_",
               "manual_seed"}


def test_every_model_method_with_arguments_is_swept():
    methods = set()
    for cls in MaskRCNN.__mro__[:-1]:
        for attr, member in vars(cls).items():
            if inspect.isfunction(member) and (attr in ("__init__", "__call__") or not attr.startswith("_")):
                if len(inspect.signature(member).parameters) > 1:
                    methods.add(attr)
    assert not methods - MODEL_SWEPT - set(MODEL_NOT_SWEPT), sorted(methods - MODEL_SWEPT - set(MODEL_NOT_SWEPT))


@pytest.mark.parametrize("config", [{"num_classes": 3}, "tiny", 3, configs.MaskRCNNConfig, [("num_classes", 3)]],
                         ids=["dict", "str", "int", "the-class", "list"])
def test_model_config_of_the_wrong_type_is_refused_by_name(config):
    raises_named(lambda: MaskRCNN(config), "config")


@pytest.mark.parametrize("rng", ["seed", 1.5, np.random.RandomState(0), -1], ids=["str", "float", "legacy", "negative"])
def test_model_rng_of_the_wrong_type_is_refused_by_name(rng):
    raises_named(lambda: MaskRCNN(configs.tiny(num_classes=3), rng=rng), "rng")


def stage_builders():
    from mrcnn_np.model.anchors import AnchorGenerator
    from mrcnn_np.model.roi_heads import RoIHeads
    from mrcnn_np.model.rpn import RegionProposalNetwork
    from mrcnn_np.model.transform import GeneralizedRCNNTransform

    return {"transform": GeneralizedRCNNTransform.from_config, "anchors": AnchorGenerator.from_config,
            "rpn": RegionProposalNetwork.from_config, "roi_heads": RoIHeads.from_config}


@pytest.mark.parametrize("stage", ["transform", "anchors", "rpn", "roi_heads"])
@pytest.mark.parametrize("config", [None, {"num_classes": 3}, "tiny", configs.MaskRCNNConfig],
                         ids=["None", "dict", "str", "the-class"])
def test_stage_from_config_of_the_wrong_type_is_refused_by_name(stage, config):
    raises_named(lambda: stage_builders()[stage](config), "config")


# --- the config ---------------------------------------------------------------------------------
CONFIG_CASES = {
    "num_classes": [-1, 0, 1, 2.5, "3", None, True],
    "dtype": ["float16", np.int64, "foo", None, complex],
    "min_size": [0, -1, 1.5, "800", None],
    "max_size": [0, -5, "1333", None],
    "image_mean": [None, (0.5, 0.5), "rgb", (0.5, float("nan"), 0.5), ("a", "b", "c")],
    "image_std": [None, (0.2, 0.2), (0.2, 0.0, 0.2), (0.2, -0.1, 0.2)],
    "backbone": [None, 50, "resnet18"],
    "backbone_layers": [(1, 1, 1), (1, 0, 1, 1), (1, 1.5, 1, 1), "1111", 4],
    "backbone_width": [0, 1.5, "16", None],
    "trainable_backbone_layers": [-1, 6, "3", 2.5, None],
    "frozen_batch_norm": ["yes", None, 1.5],
    "fpn_channels": [0, -8, 8.5, "64", None],
    "anchor_sizes": [None, (32, 64, 128, 256, 512), ((32,),) * 4, ((0,),) * 5, (("a",),) * 5, "sizes"],
    "aspect_ratios": [None, ((0.5, 1.0),) * 4, ((0.0, 1.0),) * 5, ((1.0,), (0.5, 1.0), (1.0,), (1.0,), (1.0,)), 1.0],
    "rpn_pre_nms_top_n": [None, 1000, {"training": 10}, {"training": "10", "testing": 5}, {"training": 0, "testing": 5}],
    "rpn_post_nms_top_n": [None, [10, 5], {"testing": 5}, {"training": 2.5, "testing": 5}],
    "rpn_nms_thresh": [None, "0.7", float("nan"), 1.5, -0.1],
    "rpn_fg_iou_thresh": [None, "0.7", float("nan"), 0.2, 1.5],  # 0.2 is below rpn_bg_iou_thresh 0.3
    "rpn_bg_iou_thresh": [None, float("nan"), 0.8, -0.5],
    "rpn_batch_size_per_image": [0, 1.5, "256", None],
    "rpn_positive_fraction": [-0.1, 1.5, "0.5", float("nan"), None],
    "rpn_score_thresh": [None, "0", float("nan")],
    "roi_featmap_names": [None, "0123", (0, 1), (), ("0", "2"), ("1", "0"), ("0", "7")],
    "box_roi_output_size": [0, (7, 7), 7.5, "7", None],
    "mask_roi_output_size": [0, -14, 14.5, None],
    "roi_sampling_ratio": [1.5, "2", None],
    "representation_size": [0, 1.5, None],
    "box_score_thresh": [None, "0.05", float("nan")],
    "box_nms_thresh": [None, "0.5", float("nan"), 2.0],
    "box_detections_per_img": [0, 1.5, "100", None],
    "box_fg_iou_thresh": [None, float("nan"), 1.5],
    "box_bg_iou_thresh": [None, float("nan"), 0.6],
    "box_batch_size_per_image": [0, 2.5, None],
    "box_positive_fraction": [-1, 2, None],
    "bbox_reg_weights": [None, (10.0, 10.0, 5.0), (10.0, 10.0, 5.0, 0.0), ("a", "b", "c", "d"), 10.0],
    "mask_layers": [None, (), (64, 0), (64, 1.5), 64, "64"],
    "mask_dim_reduced": [0, 1.5, None],
    "mask_branch": ["no", None, 1, 0],
    "architecture": [None, "C5", 4, "FPN"],
    "fpn_batch_norm": ["yes", None, 1],
    "rpn_conv_depth": [0, -1, 1.5, "2", None],
    "box_head": [None, "MLP", 2, "twomlphead"],
    "box_conv_layers": [None, (), (64, 0), (64, 1.5), 64, "64"],
    "head_batch_norm": ["no", None, 0],
    "mask_loss": [None, 1, "Softmax", "bce"],
    "class_agnostic_masks": ["yes", None, 1],
    "roi_pooler": [None, 2, "roialign", "RoIPool"],
    "mask_head": [None, 4, "MLP", "conv"],
    "mask_mlp_dim": [0, -1, 1.5, "1024", None],
}


def test_every_config_field_is_swept():
    assert {f.name for f in fields(configs.MaskRCNNConfig)} == set(CONFIG_CASES)


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in CONFIG_CASES.items() for v in vs],
                         ids=[f"{n}={v!r}" for n, vs in CONFIG_CASES.items() for v in vs])
@pytest.mark.parametrize("build", ["MaskRCNNConfig", "tiny", "config_from_dict"])
def test_wrong_config_values_are_refused_by_name(build, name, value):
    if build == "MaskRCNNConfig":
        call = lambda: configs.MaskRCNNConfig(**{name: value})  # noqa: E731
    elif build == "tiny":
        call = lambda: configs.tiny(**{name: value})  # noqa: E731
    else:
        d = configs.config_to_dict(configs.tiny())
        d[name] = value
        call = lambda: configs.config_from_dict(d)  # noqa: E731
    raises_named(call, name)


@pytest.mark.parametrize("d", [None, "tiny", [1, 2], {"num_classes": 3, "nope": 1}, {3: 1}],
                         ids=["None", "str", "list", "unknown-key", "int-key"])
def test_config_from_dict_of_the_wrong_type_is_refused_by_name(d):
    raises_named(lambda: configs.config_from_dict(d), "config_from_dict")


@pytest.mark.parametrize("config", [None, {"num_classes": 3}, "tiny"], ids=["None", "dict", "str"])
def test_config_to_dict_of_the_wrong_type_is_refused_by_name(config):
    raises_named(lambda: configs.config_to_dict(config), "config")


def test_config_conversions_people_expect_are_accepted():
    """NumPy integers, a dtype by name, lists where tuples are meant; and the round trip."""
    c = configs.tiny(num_classes=np.int64(3), dtype="float64", min_size=np.int32(128), image_mean=[0.5, 0.5, 0.5],
                     mask_layers=[16, 16], anchor_sizes=[[16], [32], [64], [128], [256]])
    assert c.dtype is np.float64 and c.num_classes == 3 and type(c.num_classes) is int
    assert c.image_mean == (0.5, 0.5, 0.5) and c.mask_layers == (16, 16) and c.anchor_sizes[0] == (16,)
    assert configs.config_from_dict(configs.config_to_dict(c)) == c
    assert configs.tiny(dtype=np.dtype("float32")).dtype is np.float32
