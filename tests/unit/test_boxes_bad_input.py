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
