"""RoIAlign, MultiScaleRoIAlign and RoIPool against torchvision: forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops import MultiScaleRoIAlign as TVMultiScaleRoIAlign

from mrcnn_np import Tensor
from mrcnn_np.ops.poolers import MultiScaleRoIAlign
from mrcnn_np.ops.roi_align import roi_align
from mrcnn_np.ops.roi_pool import roi_pool
from tests.helpers import RTOL, assert_rel

IMPLS = ["numpy", "numba"]


def make_rois(rng, n, batch, image=(92, 124)):
    """Boxes of every kind: ordinary, tiny (< 1 feature pixel), partly and wholly outside."""
    xy = rng.uniform(-20, image[1] + 10, (n, 2))
    wh = np.exp(rng.uniform(np.log(0.3), np.log(90), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    boxes[0] = [-40, -30, -5, -2]  # wholly outside (top-left)
    boxes[1] = [image[1] + 5, 10, image[1] + 50, 30]  # wholly outside (right)
    boxes[2] = [10, 10, 10.2, 10.1]  # tiny
    boxes[3] = [-10, -10, 30, 40]  # partly outside
    return np.concatenate([rng.integers(0, batch, (n, 1)), boxes], axis=1)


def run_both(x, rois, output_size, scale, sampling, aligned, impl, dtype, seed=0):
    x, rois = x.astype(dtype), rois.astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ref = torchvision.ops.roi_align(tx, torch.from_numpy(rois), output_size, scale, sampling, aligned)
    ours_x = Tensor(x.copy(), requires_grad=True)
    out = roi_align(ours_x, rois, output_size, scale, sampling, aligned, impl=impl)
    g = np.random.default_rng(seed).standard_normal(ref.shape).astype(dtype)
    ref.backward(torch.from_numpy(g))
    out.backward(g)
    return out, ref, ours_x.grad, tx.grad.numpy()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [2, 0, -1])
@pytest.mark.parametrize("output_size", [(7, 7), (14, 14), (5, 3)])
def test_roi_align_matches_torchvision(output_size, sampling, aligned, dtype, impl):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 23, 31))
    rois = make_rois(rng, 40, batch=3)
    out, ref, grad, ref_grad = run_both(x, rois, output_size, 0.25, sampling, aligned, impl, dtype)
    assert out.dtype == dtype and out.shape == tuple(ref.shape)
    assert_rel(out.data, ref.detach().numpy(), RTOL[dtype], "forward")
    assert_rel(grad, ref_grad, RTOL[dtype], "backward")
    assert np.abs(out.data[:2]).max() == 0  # wholly outside the map: nothing to read


@pytest.mark.parametrize("impl", IMPLS)
def test_roi_align_list_of_boxes_and_scale_one(impl):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 15, 17))
    boxes = [make_rois(rng, 6, 1, (15, 17))[:, 1:], make_rois(rng, 4, 1, (15, 17))[:, 1:]]
    rois = np.concatenate([np.concatenate([np.full((len(b), 1), i), b], axis=1) for i, b in enumerate(boxes)])
    ref = torchvision.ops.roi_align(torch.from_numpy(x), [torch.from_numpy(b) for b in boxes], 3, 1.0, 2)
    np.testing.assert_allclose(roi_align(x, boxes, 3, 1.0, 2, impl=impl).data, ref.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(roi_align(x, rois, 3, 1.0, 2, impl=impl).data, ref.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_box_lists(impl):
    x = Tensor(np.random.default_rng(3).standard_normal((2, 5, 8, 8)), requires_grad=True)
    out = roi_align(x, [np.zeros((0, 4)), np.zeros((0, 4))], (7, 7), 0.5, 2, impl=impl)
    assert out.shape == (0, 5, 7, 7)
    out.sum().backward()
    assert x.grad.shape == (2, 5, 8, 8) and not x.grad.any()


def test_batch_index_out_of_range_is_named():
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"box 1 has batch index 2.0, but the input holds 2 image\(s\)"):
        roi_align(x, np.array([[0, 1, 1, 4, 4], [2, 1, 1, 4, 4]], dtype=np.float64), 2)
    with pytest.raises(ValueError, match="x2 < x1"):
        roi_align(x, np.array([[0, 5, 1, 4, 4]], dtype=np.float64), 2)


@pytest.mark.parametrize("output_size", [7, 14])
def test_multiscale_roi_align(output_size):
    rng = np.random.default_rng(4)
    names = ["0", "1", "2", "3"]
    feats = {k: rng.standard_normal((2, 6, s, s + 2)) for k, s in zip(names, [128, 64, 32, 16], strict=True)}
    boxes = []
    for n in (40, 25):  # sizes from 4 to 500 px: every level receives boxes
        xy = rng.uniform(0, 300, (n, 2))
        random_boxes = np.concatenate([xy, xy + np.exp(rng.uniform(np.log(4), np.log(500), (n, 2)))], axis=1)
        boxes.append(np.concatenate([random_boxes, [[0.0, 0.0, 500.0, 480.0]]]))  # sqrt(area) > 448: P5
    shapes = [(512, 520), (500, 512)]
    tv = TVMultiScaleRoIAlign(names, output_size, 2)
    tf = {k: torch.tensor(v, requires_grad=True) for k, v in feats.items()}
    ref = tv(tf, [torch.from_numpy(b) for b in boxes], shapes)
    ours_f = {k: Tensor(v, requires_grad=True) for k, v in feats.items()}
    out = MultiScaleRoIAlign(names, output_size, 2)(ours_f, boxes, shapes)
    g = rng.standard_normal(ref.shape)
    ref.backward(torch.from_numpy(g))
    out.backward(g)
    assert_rel(out.data, ref.detach().numpy(), 1e-10, "forward")
    for k in names:
        assert ours_f[k].grad is not None, f"level {k} received no boxes: the test lost its point"
        assert_rel(ours_f[k].grad, tf[k].grad.numpy(), 1e-10, f"grad of level {k}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roi_pool(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 23, 31)).astype(dtype)
    rois = make_rois(rng, 30, batch=2).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ref = torchvision.ops.roi_pool(tx, torch.from_numpy(rois), (7, 5), 0.25)
    ours_x = Tensor(x, requires_grad=True)
    out = roi_pool(ours_x, rois, (7, 5), 0.25)
    g = rng.standard_normal(ref.shape).astype(dtype)
    ref.backward(torch.from_numpy(g))
    out.backward(g)
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    assert_rel(ours_x.grad, tx.grad.numpy(), RTOL[dtype], "roi_pool grad")


@pytest.mark.parametrize("impl", IMPLS)
def test_box_without_sample_points_reads_zero(impl):
    """aligned, adaptive sampling and a zero-width box: ceil(0 / bins) = 0 points per bin."""
    x = np.random.default_rng(6).standard_normal((1, 2, 8, 8))
    rois = np.array([[0.0, 3.0, 1.0, 3.0, 6.0], [0.0, 1.0, 1.0, 5.0, 6.0]])  # zero width, ordinary
    ref = torchvision.ops.roi_align(torch.from_numpy(x), torch.from_numpy(rois), (2, 2), 1.0, 0, True).numpy()
    out = roi_align(x, rois, (2, 2), 1.0, 0, True, impl=impl).data
    assert not out[0].any() and not ref[0].any()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
