"""Edge cases of the box ops: empty, zero-area, outside the image, all suppressed; and
clear errors where torchvision would silently misbehave (NaN scores, x2 < x1)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.ops import batched_nms, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.ops.matcher import Matcher

IMPLS = ["numpy", "numba"]
EMPTY = np.zeros((0, 4))


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_boxes(impl):
    assert box_iou(EMPTY, np.ones((3, 4)), impl=impl).shape == (0, 3)
    assert box_iou(np.ones((3, 4)), EMPTY, impl=impl).shape == (3, 0)
    keep = nms(EMPTY, np.zeros(0), 0.5, impl=impl)
    assert keep.shape == (0,) and keep.dtype == np.int64
    assert batched_nms(EMPTY, np.zeros(0), np.zeros(0, np.int64), 0.5, impl=impl).shape == (0,)
    assert remove_small_boxes(EMPTY, 1.0).shape == (0,)
    assert clip_boxes_to_image(EMPTY, (10, 10)).shape == (0, 4)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_area_boxes_have_zero_iou_and_are_kept(impl):
    boxes = np.array([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0]])
    iou = box_iou(boxes, boxes, impl=impl)
    assert not np.isnan(iou).any()
    assert iou[0, 1] == 0 and iou[0, 2] == 0 and iou[2, 2] == 1
    np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5, impl=impl), [0, 1, 2])


@pytest.mark.parametrize("impl", IMPLS)
def test_all_but_one_suppressed(impl):
    boxes = np.tile([[10.0, 10.0, 50.0, 50.0]], (20, 1)) + np.linspace(0, 1, 20)[:, None]
    scores = np.linspace(0.1, 0.9, 20)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, impl=impl), [19])


def test_boxes_outside_the_image_are_clipped_to_its_border():
    boxes = np.array([[-20.0, -5.0, -1.0, 30.0], [90.0, 90.0, 130.0, 140.0]])
    clipped = clip_boxes_to_image(boxes, (100, 120))  # (height, width)
    np.testing.assert_array_equal(clipped, [[0, 0, 0, 30], [90, 90, 120, 100]])
    np.testing.assert_array_equal(remove_small_boxes(clipped, 1e-3), [1])  # the first is now empty


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_scores_raise(impl):
    with pytest.raises(ValueError, match=r"scores\[1\] is NaN"):
        nms(np.ones((3, 4)), np.array([0.5, np.nan, 0.2]), 0.5, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_inverted_or_nan_boxes_raise(impl):
    bad = np.array([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 5.0, 10.0]])
    with pytest.raises(ValueError, match=r"boxes\[1\] = \[10.0, 0.0, 5.0, 10.0\] has x2 < x1"):
        nms(bad, np.array([0.5, 0.4]), 0.5, impl=impl)
    with pytest.raises(ValueError, match=r"boxes2\[1\].*x2 < x1"):
        box_iou(np.ones((2, 4)), bad, impl=impl)
    with pytest.raises(ValueError, match="NaN or infinite"):
        box_iou(np.array([[0.0, np.nan, 1.0, 1.0]]), np.ones((1, 4)), impl=impl)


def test_wrong_shapes_and_dtypes_raise():
    with pytest.raises(ValueError, match=r"shape \(R, 4\).*got shape \(3, 5\)"):
        box_iou(np.ones((3, 5)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        box_iou(np.ones((3, 4), np.int64), np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        nms(np.ones((3, 4)), np.ones(2), 0.5)
    with pytest.raises(ValueError, match=r"decode: expected deltas of shape \(2, 4K\)"):
        BoxCoder().decode(np.ones((2, 6)), np.ones((2, 4)))


def test_matcher_rejects_empty_like_torchvision():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        Matcher(0.7, 0.3)(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="No proposal boxes"):
        Matcher(0.7, 0.3)(np.zeros((2, 0)))


def test_decode_and_postprocess_with_no_proposals():
    from mrcnn_np.config import tiny
    from mrcnn_np.model.mask_rcnn import MaskRCNN

    assert BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(np.zeros((0, 20)), np.zeros((0, 4))).shape == (0, 5, 4)
    heads = MaskRCNN(tiny(num_classes=5), rng=0).roi_heads
    out = heads.postprocess_detections(np.zeros((0, 5)), np.zeros((0, 20)), [np.zeros((0, 4))], [(50, 60)])
    assert out[0]["boxes"].shape == (0, 4) and out[0]["scores"].shape == (0,) and out[0]["labels"].shape == (0,)


def test_a_bad_impl_is_named_with_its_op():
    from mrcnn_np.ops.roi_align import roi_align

    with pytest.raises(ValueError, match=r"nms: impl must be one of \('auto', 'numpy', 'numba', 'cuda'\)"):
        nms(np.ones((2, 4)), np.ones(2), 0.5, impl="fortran")
    with pytest.raises(ValueError, match="box_iou: impl must be one of"):
        box_iou(np.ones((2, 4)), np.ones((2, 4)), impl="fortran")
    with pytest.raises(ValueError, match="roi_align: impl must be one of"):
        roi_align(np.zeros((1, 1, 4, 4)), np.array([[0.0, 0, 0, 2, 2]]), 2, impl="fortran")


def test_roi_pool_checks_its_input_like_roi_align():
    from mrcnn_np.ops.roi_pool import roi_pool

    with pytest.raises(ValueError, match=r"roi_pool: box 0 has batch index -1.0, but the input holds 1 image"):
        roi_pool(np.zeros((1, 1, 4, 4)), np.array([[-1.0, 0, 0, 2, 2]]), 2)
    with pytest.raises(ValueError, match=r"roi_pool: expected input of shape \(N, C, H, W\), got shape \(4, 4\)"):
        roi_pool(np.zeros((4, 4)), np.array([[0.0, 0, 0, 2, 2]]), 2)


BX = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
SC = np.array([0.9, 0.8])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("call", [
    lambda t, impl: nms(BX, SC, t, impl=impl),
    lambda t, impl: batched_nms(BX, SC, np.zeros(2, np.int64), t, impl=impl),
], ids=["nms", "batched_nms"])
def test_iou_threshold_nan_or_not_a_number_raises(call, impl):
    with pytest.raises(ValueError, match="iou_threshold is NaN"):
        call(float("nan"), impl)
    with pytest.raises(TypeError, match="iou_threshold must be a number, got str"):
        call("0.5", impl)
    np.testing.assert_array_equal(call(np.float32(0.7), impl), [0, 1])  # NumPy scalars are numbers (IoU 0.68)


def test_python_lists_are_taken_as_arrays():
    lists = BX.tolist()
    np.testing.assert_array_equal(box_iou(lists, BX), box_iou(BX, BX))
    np.testing.assert_array_equal(box_iou(BX.astype(np.float32), lists), box_iou(BX, BX).astype(np.float32))
    np.testing.assert_array_equal(nms(lists, SC.tolist(), 0.5), nms(BX, SC, 0.5))
    np.testing.assert_array_equal(batched_nms(lists, SC.tolist(), [0, 1], 0.5), [0, 1])  # two categories
    assert batched_nms([], [], [], 0.5).shape == (0,)


@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: box_iou([["a", 0, 1, 1]], BX), TypeError, r"boxes1 must be an array or a \(nested\) list of numbers"),
    (lambda: box_iou(None, BX), TypeError, "boxes1 must be an array, got NoneType"),
    (lambda: nms(BX, None, 0.5), TypeError, "scores must be an array, got NoneType"),
    (lambda: batched_nms(BX, SC, [0.5, 1.5], 0.5), TypeError, "idxs must be integer category ids, got dtype float64"),
    (lambda: batched_nms(BX, SC, [0], 0.5), ValueError, r"idxs must have shape \(2,\)"),
    (lambda: nms(BX.astype(np.float16), SC.astype(np.float16), 0.5, impl="numba"), TypeError,
     "boxes must be a float32 or float64 array, got float16"),
    (lambda: box_iou(BX.astype(np.float16), BX.astype(np.float16), impl="numba"), TypeError,
     "boxes1 must be a float32 or float64 array, got float16"),
    (lambda: nms(BX, SC.astype(np.float16), 0.5), TypeError, "scores must be float32 or float64, got float16"),
])
def test_wrong_types_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --- roi_align / roi_pool -------------------------------------------------------------------
FEAT = np.random.default_rng(0).random((1, 2, 8, 8)).astype(np.float32)
ONE_BOX = np.array([[0.0, 1.0, 1.0, 5.0, 5.0]], np.float32)


@pytest.mark.parametrize("impl", IMPLS)
def test_roi_align_boxes_far_off_the_map_read_zeros_like_torchvision(impl):
    from mrcnn_np.ops.roi_align import roi_align

    far = np.array([[0, 1e20, 1e20, 2e20, 2e20], [0, -1e20, -1e20, 1e20, 1e20], [0, -2e20, 1, -1e20, 5]], np.float32)
    with np.errstate(invalid="raise"):  # no NaN-to-int cast inside
        out = roi_align(FEAT, np.concatenate([far, ONE_BOX]), 2, 1.0, 2, impl=impl).data
    np.testing.assert_array_equal(out[:3], 0)  # torchvision 0.2x gives 0 for all three
    np.testing.assert_array_equal(out[3], roi_align(FEAT, ONE_BOX, 2, 1.0, 2, impl=impl).data[0])


def test_roi_align_adaptive_sampling_of_a_huge_box_raises():
    from mrcnn_np.ops.roi_align import roi_align

    with pytest.raises(ValueError, match=r"roi_align: box 0 .* pass sampling_ratio > 0"):
        roi_align(FEAT, np.array([[0, 0, 0, 1e20, 1e20]], np.float32), 2, 1.0, -1)


@pytest.mark.parametrize("size", [np.int64(2), (np.int32(2), 2), [2, np.int64(2)]])
def test_output_size_accepts_numpy_integers(size):
    from mrcnn_np.ops.roi_align import roi_align
    from mrcnn_np.ops.roi_pool import roi_pool

    assert roi_align(FEAT, ONE_BOX, size).shape == (1, 2, 2, 2)
    assert roi_pool(FEAT, ONE_BOX, size).shape == (1, 2, 2, 2)


@pytest.mark.parametrize(("size", "exc"), [(2.5, TypeError), ("2", TypeError), ((2, 2, 2), ValueError),
                                            (0, ValueError), (None, TypeError)])
def test_bad_output_size_is_named(size, exc):
    from mrcnn_np.ops.roi_align import roi_align

    with pytest.raises(exc, match="int or a pair of ints|output_size must be positive"):
        roi_align(FEAT, ONE_BOX, size)


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
@pytest.mark.parametrize("index", [-1.0, 0.5, 1.0])
def test_roi_batch_index_out_of_range_or_fractional_raises(op, index):
    from mrcnn_np.ops.roi_align import roi_align
    from mrcnn_np.ops.roi_pool import roi_pool

    fn = {"roi_align": roi_align, "roi_pool": roi_pool}[op]
    with pytest.raises(ValueError, match=rf"{op}: box 0 has batch index {index}, but the input holds 1 image"):
        fn(FEAT, np.array([[index, 0, 0, 2, 2]], np.float32), 2)


def test_roi_align_float16_and_lists():
    from mrcnn_np.ops.roi_align import roi_align

    with pytest.raises(TypeError, match="roi_align: input must be float32 or float64, got dtype float16"):
        roi_align(FEAT.astype(np.float16), ONE_BOX, 2, impl="numba")
    np.testing.assert_array_equal(roi_align(FEAT, [[[1.0, 1.0, 5.0, 5.0]]], 2).data, roi_align(FEAT, ONE_BOX, 2).data)
    with pytest.raises(ValueError, match=r"boxes\[0\] must have shape \(R, 4\)"):  # a list is one entry per image
        roi_align(FEAT, ONE_BOX.tolist(), 2)
    with pytest.raises(TypeError, match="boxes must be an array, got NoneType"):
        roi_align(FEAT, None, 2)


def test_the_other_box_utilities_take_lists_and_name_bad_arguments():
    from mrcnn_np.ops import box_area

    np.testing.assert_array_equal(box_area(BX.tolist()), [100.0, 100.0])
    np.testing.assert_array_equal(clip_boxes_to_image(BX.tolist(), (5, 5)), [[0, 0, 5, 5], [1, 1, 5, 5]])
    np.testing.assert_array_equal(remove_small_boxes(BX.tolist(), np.float32(1)), [0, 1])
    with pytest.raises(ValueError, match=r"box_area: expected boxes of shape \(R, 4\), got shape \(4,\)"):
        box_area(np.ones(4))
    with pytest.raises(TypeError, match="box_area: boxes must be an array or Tensor, got NoneType|boxes must be an array"):
        box_area(None)
    with pytest.raises(TypeError, match=r"clip_boxes_to_image: size must be \(height, width\), got 5"):
        clip_boxes_to_image(BX, 5)
    with pytest.raises(TypeError, match="remove_small_boxes: min_size must be a number, got NoneType"):
        remove_small_boxes(BX, None)


def test_coder_matcher_and_sampler_take_lists_and_name_bad_arguments():
    from mrcnn_np.ops.sampler import BalancedPositiveNegativeSampler

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    np.testing.assert_array_equal(coder.encode(BX.tolist(), BX.tolist()), coder.encode(BX, BX))
    np.testing.assert_array_equal(coder.decode(np.zeros((2, 4)).tolist(), BX.tolist()), coder.decode(np.zeros((2, 4)), BX))
    np.testing.assert_array_equal(Matcher(0.7, 0.3)([[0.9, 0.1]]), [0, -1])
    sampler = BalancedPositiveNegativeSampler(4, 0.5)
    pos, neg = sampler([[1, 0, -1]], np.random.default_rng(0))
    np.testing.assert_array_equal(pos[0], [1, 0, 0])
    np.testing.assert_array_equal(neg[0], [0, 1, 0])
    for call, exc, match in [
        (lambda: coder.encode(None, BX), TypeError, "reference_boxes must be an array, got NoneType"),
        (lambda: coder.decode(None, BX), TypeError, "rel_codes must be an array, got NoneType"),
        (lambda: Matcher(0.7, 0.3)(None), TypeError, "match_quality_matrix must be an array, got NoneType"),
        (lambda: sampler(np.array([1, 0]), np.random.default_rng(0)), TypeError,
         r"matched_idxs must be a list of \(N_i,\) label arrays, one per image; got ndarray"),
        (lambda: sampler([np.zeros((2, 2))], np.random.default_rng(0)), ValueError,
         r"matched_idxs\[0\] must have shape \(N,\), got \(2, 2\)"),
        (lambda: sampler([np.array([1, 0])], None), TypeError, "rng must be a numpy.random.Generator, got NoneType"),
    ]:
        with pytest.raises(exc, match=match):
            call()
