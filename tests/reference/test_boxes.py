"""Box ops, NMS, BoxCoder, Matcher, sampler and anchors against torchvision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from mrcnn_np.model.anchors import AnchorGenerator
from mrcnn_np.ops import batched_nms, box_area, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.ops.matcher import Matcher
from mrcnn_np.ops.sampler import BalancedPositiveNegativeSampler

CPU_IMPLS = ["numpy", "numba"]
T = torch.from_numpy


def random_boxes(rng, n, scale=100.0, dtype=np.float64):
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(1, scale / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def clustered_boxes(rng, n, clusters=20, dtype=np.float32):
    """Boxes jittered around a few centres, as detections are: lots of overlap to suppress."""
    centres = random_boxes(rng, clusters, 600.0)
    boxes = centres[rng.integers(0, clusters, n)] + rng.normal(0, 6, (n, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return boxes.astype(dtype)


def crafted_boxes():
    """Identical, nested, touching, disjoint and zero-width-overlap boxes."""
    return np.array([[0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 5, 5], [10, 0, 20, 10],
                     [30, 30, 40, 50], [5, 5, 15, 15], [0, 0, 1, 100]], dtype=np.float64)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_box_iou(impl):
    rng = np.random.default_rng(0)
    for b1, b2 in [(random_boxes(rng, 57), random_boxes(rng, 31)), (crafted_boxes(), crafted_boxes())]:
        ref = torchvision.ops.box_iou(T(b1), T(b2)).numpy()
        ours = box_iou(b1, b2, impl=impl)
        assert ours.dtype == np.float64
        assert np.abs(ours - ref).max() <= 1e-12


def test_box_area_clip_and_remove_small():
    rng = np.random.default_rng(1)
    b = random_boxes(rng, 40, 120.0) - 10
    np.testing.assert_array_equal(box_area(b), torchvision.ops.box_area(T(b)).numpy())
    np.testing.assert_array_equal(clip_boxes_to_image(b, (90, 70)),
                                  torchvision.ops.clip_boxes_to_image(T(b), (90, 70)).numpy())
    for min_size in (1e-3, 20.0, 45.0):
        keep = remove_small_boxes(b, min_size)
        assert keep.dtype == np.int64
        np.testing.assert_array_equal(keep, torchvision.ops.remove_small_boxes(T(b), min_size).numpy())


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_random_and_clustered(threshold, dtype, impl):
    rng = np.random.default_rng(2)
    for boxes in (random_boxes(rng, 300, dtype=dtype), clustered_boxes(rng, 1000, dtype=dtype)):
        scores = rng.random(len(boxes)).astype(dtype)
        ref = torchvision.ops.nms(T(boxes), T(scores), threshold).numpy()
        ours = nms(boxes, scores, threshold, impl=impl)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_nms_ties_in_scores_follow_torchvision(impl):
    rng = np.random.default_rng(3)
    boxes = clustered_boxes(rng, 800)
    scores = (rng.integers(0, 6, 800) / 5).astype(np.float32)  # six distinct values: many ties
    ref = torchvision.ops.nms(T(boxes), T(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, impl=impl), ref)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_nms_iou_equal_to_threshold_is_kept(impl):
    # box 1 overlaps box 0 with IoU exactly 0.5 (kept: suppression needs IoU > 0.5);
    # box 2 overlaps box 1 with IoU 0.8 (suppressed)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    ref = torchvision.ops.nms(T(boxes), T(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, impl=impl), ref)
    np.testing.assert_array_equal(ref, [0, 1])


@pytest.mark.parametrize("n", [250, 800])  # <= 1000 boxes: torchvision's coordinate trick
def test_batched_nms_coordinate_trick_path(n):
    rng = np.random.default_rng(4)
    boxes = clustered_boxes(rng, n, clusters=8)
    scores = (rng.integers(0, 10, n) / 9).astype(np.float32)  # ties included
    idxs = rng.integers(0, 5, n)
    ref = torchvision.ops.batched_nms(T(boxes), T(scores), T(idxs), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, idxs, 0.5), ref)


def test_batched_nms_per_category_path():
    rng = np.random.default_rng(5)
    boxes = clustered_boxes(rng, 3000, clusters=40)
    idxs = rng.integers(0, 6, 3000)
    scores = rng.random(3000).astype(np.float32)  # distinct scores: torchvision's order is defined
    ref = torchvision.ops.batched_nms(T(boxes), T(scores), T(idxs), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, idxs, 0.5), ref)
    # with ties, torchvision orders equal scores with an unstable sort: same kept set, same scores in
    # the same order; ours breaks ties by index
    tied = (rng.integers(0, 20, 3000) / 19).astype(np.float32)
    ref = torchvision.ops.batched_nms(T(boxes), T(tied), T(idxs), 0.5).numpy()
    ours = batched_nms(boxes, tied, idxs, 0.5)
    assert sorted(ours.tolist()) == sorted(ref.tolist())
    np.testing.assert_array_equal(tied[ours], tied[ref])
    assert all(a < b for a, b, sa, sb in zip(ours, ours[1:], tied[ours], tied[ours[1:]], strict=False) if sa == sb)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder(weights):
    rng = np.random.default_rng(6)
    ref_coder, coder = tv_utils.BoxCoder(weights), BoxCoder(weights)
    gt, proposals = random_boxes(rng, 50), random_boxes(rng, 50)
    ours = coder.encode(gt, proposals)
    ref = ref_coder.encode_single(T(gt), T(proposals)).numpy()
    assert np.abs(ours - ref).max() <= 1e-10 * np.abs(ref).max()
    deltas = rng.normal(0, 2, (50, 4 * 3))
    deltas[:5, 2::4] = 10 * weights[2]  # beyond the log(1000/16) clamp
    ours = coder.decode(deltas, proposals)
    ref = ref_coder.decode_single(T(deltas), T(proposals)).numpy().reshape(50, 3, 4)
    assert ours.shape == (50, 3, 4)
    assert np.abs(ours - ref).max() <= 1e-10 * np.abs(ref).max()
    np.testing.assert_allclose(coder.decode(coder.encode(gt, proposals), proposals)[:, 0], gt, rtol=1e-12)


def test_box_coder_clamp_value():
    assert BoxCoder().bbox_xform_clip == math.log(1000.0 / 16)
    box = np.array([[0.0, 0.0, 16.0, 16.0]])
    big = BoxCoder().decode(np.array([[0.0, 0.0, 50.0, 50.0]]), box)[0, 0]
    np.testing.assert_allclose(big, [-492, -492, 508, 508])  # 16 * 1000 / 16 wide, centred at 8


@pytest.mark.parametrize("high,low,allow", [(0.7, 0.3, True), (0.7, 0.3, False), (0.5, 0.5, False)])
def test_matcher(high, low, allow):
    rng = np.random.default_rng(7)
    gt, anchors = random_boxes(rng, 6), random_boxes(rng, 400)
    iou = box_iou(gt, anchors)
    iou[:, 10] = iou[:, 11] = iou.max(axis=1)  # ties for every ground truth's best anchor
    iou[2, 20] = iou[3, 20] = 0.9  # a tie between two ground truths
    ref = tv_utils.Matcher(high, low, allow)(T(iou)).numpy()
    np.testing.assert_array_equal(Matcher(high, low, allow)(iou), ref)


def test_matcher_low_quality_rule_rescues_a_small_box():
    gt = np.array([[0.0, 0.0, 6.0, 6.0]])  # smaller than every anchor
    anchors = np.array([[-16.0, -16.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0], [40.0, 40.0, 72.0, 72.0]])
    iou = box_iou(gt, anchors)
    assert iou.max() < 0.3
    np.testing.assert_array_equal(Matcher(0.7, 0.3, False)(iou), [-1, -1, -1])
    np.testing.assert_array_equal(Matcher(0.7, 0.3, True)(iou), [0, 0, -1])  # tie: both best anchors
    np.testing.assert_array_equal(Matcher(0.7, 0.3, True)(iou), tv_utils.Matcher(0.7, 0.3, True)(T(iou)).numpy())


def test_sampler_counts_and_ignored():
    rng = np.random.default_rng(8)
    labels = rng.choice([-1, 0, 1], size=5000, p=[0.2, 0.75, 0.05])
    few = np.array([1, 1, 0, 0, 0, -1, -1])
    pos, neg = BalancedPositiveNegativeSampler(256, 0.5)([labels, few], rng)
    assert pos[0].sum() == 128 and neg[0].sum() == 128
    assert pos[1].sum() == 2 and neg[1].sum() == 3  # fewer than asked: take all
    for p, n, lab in zip(pos, neg, [labels, few], strict=True):
        assert (lab[p == 1] >= 1).all() and (lab[n == 1] == 0).all()  # never an ignored one
    labels_pos_rich = np.ones(1000, np.int64)
    labels_pos_rich[:10] = 0
    pos, neg = BalancedPositiveNegativeSampler(512, 0.25)([labels_pos_rich], rng)
    assert pos[0].sum() == 128 and neg[0].sum() == 10


@pytest.mark.parametrize("dtype,tdtype", [(np.float32, torch.float32), (np.float64, torch.float64)])
@pytest.mark.parametrize("image,features,sizes,ratios", [
    ((800, 1088), [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)],
     ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
    ((320, 480), [(80, 120), (40, 60), (20, 30), (10, 15), (5, 8)],
     ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
    ((96, 64), [(24, 16), (12, 8)], ((16, 24, 30), (48, 100)), ((0.25, 1.0, 3.0, 0.7), (1.5,))),
    ((100, 150), [(25, 38), (13, 19), (7, 10), (4, 5), (2, 3)],
     ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
])
def test_anchors_identical(image, features, sizes, ratios, dtype, tdtype):
    tv = TVAnchorGenerator(sizes, ratios)
    maps = [torch.zeros(2, 1, h, w, dtype=tdtype) for h, w in features]
    ref = tv(ImageList(torch.zeros(2, 3, *image, dtype=tdtype), [image, image]), maps)
    ours = AnchorGenerator(sizes=sizes, aspect_ratios=ratios)(image, [m.numpy() for m in maps])
    assert len(ours) == 2 and ours[0].dtype == dtype
    np.testing.assert_array_equal(ours[0], ref[0].numpy())
    assert AnchorGenerator(sizes=sizes, aspect_ratios=ratios).num_anchors_per_location() == tv.num_anchors_per_location()
