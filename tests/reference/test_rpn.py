"""The Region Proposal Network against torchvision's, on the same weights and feature maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork as TVRPN
from torchvision.models.detection.rpn import RPNHead as TVRPNHead

from mrcnn_np import Tensor
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.convert import load_torchvision_state_dict
from mrcnn_np.model.anchors import AnchorGenerator
from mrcnn_np.model.rpn import RegionProposalNetwork, RPNHead
from mrcnn_np.reference.sampling import float64_labels
from tests.helpers import assert_rel
from tests.reference.torch_models import backbone_pair

SIZES = ((32,), (64,), (128,), (256,), (512,))
RATIOS = ((0.5, 1.0, 2.0),) * 5
TOP_N = {"training": 2000, "testing": 1000}


def rpn_pair(channels=256, dtype=np.float64, seed=0, weight_std=0.01):
    """Torchvision's RPN and ours with the same random head weights, N(0, weight_std^2)."""
    torch.manual_seed(seed)
    head = TVRPNHead(channels, 3)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, weight_std)
    tv = TVRPN(TVAnchorGenerator(SIZES, RATIOS), head, 0.7, 0.3, 256, 0.5, TOP_N, TOP_N, 0.7)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = RegionProposalNetwork.from_config(MaskRCNNConfig(), anchor_generator=AnchorGenerator(sizes=SIZES, aspect_ratios=RATIOS),
                                             head=RPNHead(channels, 3, dtype=dtype))
    load_torchvision_state_dict(ours, tv)
    return tv, ours


@pytest.fixture(scope="module")
def fpn_features():
    """FPN features of two random images from the verified ResNet-50-FPN, at two batch sizes,
    each level scaled to unit RMS (random frozen-BN statistics let activations grow to ~1e3,
    which would saturate a random head: every proposal the whole image)."""
    tv_backbone, _ = backbone_pair("resnet50", np.float64)
    rng = np.random.default_rng(0)
    out = {}
    for padded, sizes in [((256, 320), [(250, 300), (200, 320)]), ((320, 224), [(320, 224), (301, 190)])]:
        with torch.no_grad():
            feats = tv_backbone(torch.from_numpy(rng.standard_normal((2, 3, *padded))))
        out[padded] = (sizes, {k: v.numpy() / np.sqrt((v.numpy() ** 2).mean()) for k, v in feats.items()})
    return out


def run_tv(tv, padded, sizes, feats, targets=None):
    images = ImageList(torch.zeros(2, 3, *padded, dtype=next(iter(feats.values())).dtype), sizes)
    return tv(images, feats, targets)


@pytest.mark.parametrize("padded", [(256, 320), (320, 224)])
def test_proposals_float64_identical(fpn_features, padded):
    sizes, feats = fpn_features[padded]
    tv, ours = rpn_pair()
    tv.eval()
    with torch.no_grad():
        ref, _ = run_tv(tv, padded, sizes, {k: torch.from_numpy(v) for k, v in feats.items()})
    boxes, scores = ours.predict(padded, sizes, feats)
    for b, r in zip(boxes, ref, strict=True):
        assert b.shape == tuple(r.shape) and len(b) > 100
        assert np.abs(b - r.numpy()).max() <= 1e-8


@pytest.mark.parametrize("padded", [(256, 320), (320, 224)])
def test_proposals_float32_same_set(fpn_features, padded):
    sizes, feats = fpn_features[padded]
    feats = {k: v.astype(np.float32) for k, v in feats.items()}
    tv, ours = rpn_pair(dtype=np.float32)
    tv.eval()
    with torch.no_grad():
        ref, _ = run_tv(tv, padded, sizes, {k: torch.from_numpy(v) for k, v in feats.items()})
    boxes, _ = ours.predict(padded, sizes, feats)
    for b, r in zip(boxes, ref, strict=True):
        r = r.numpy()
        assert len(b) == len(r)
        dist = np.abs(b[:, None, :] - r[None, :, :]).max(axis=2)  # (P, P) worst coordinate difference
        assert dist.min(axis=1).max() <= 1e-3 and dist.min(axis=0).max() <= 1e-3


def inject_sampling(tv, ours, feats, padded, gt, seed=0):
    """Draw our sample of anchors and make torchvision's sampler return the same one."""
    float64_labels(tv)
    _, _, anchors, _, _ = ours._head_and_decode(padded, feats)
    labels, _ = ours.assign_targets_to_anchors(anchors, gt)
    pos, neg = ours.fg_bg_sampler(labels, np.random.default_rng(seed))
    tv.fg_bg_sampler = lambda _labels: ([torch.from_numpy(p) for p in pos], [torch.from_numpy(n) for n in neg])
    return pos, neg


def test_training_losses_and_gradients(fpn_features):
    padded = (256, 320)
    sizes, feats = fpn_features[padded]
    gt = [np.array([[10.0, 20.0, 120.0, 200.0], [150.0, 40.0, 290.0, 110.0], [5.0, 5.0, 11.0, 12.0]]),
          np.array([[30.0, 60.0, 90.0, 180.0]])]
    tv, ours = rpn_pair(seed=1)
    tv.train()
    sampled = inject_sampling(tv, ours, feats, padded, gt)
    assert sampled[0][0].sum() > 0 and sampled[1][0].sum() > 0

    ours_feats = {k: Tensor(v, requires_grad=True) for k, v in feats.items()}
    _, _, losses, _ = ours.loss(padded, sizes, ours_feats, gt, sampled=sampled)
    tv_feats = {k: torch.tensor(v, requires_grad=True) for k, v in feats.items()}
    _, tv_losses = run_tv(tv, padded, sizes, tv_feats, [{"boxes": torch.from_numpy(g)} for g in gt])

    for name in ("loss_objectness", "loss_rpn_box_reg"):
        assert abs(losses[name].item() - tv_losses[name].item()) <= 1e-8, name
    assert losses["loss_rpn_box_reg"].item() > 0

    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    (tv_losses["loss_objectness"] + tv_losses["loss_rpn_box_reg"]).backward()
    theirs = dict(tv.named_parameters())
    for name, p in ours.named_parameters():
        assert_rel(p.grad, theirs[name].grad.numpy(), 1e-7, name)
    for k in feats:
        assert_rel(ours_feats[k].grad, tv_feats[k].grad.numpy(), 1e-7, f"feature {k}")


def test_image_without_boxes_trains_on_negatives_only(fpn_features):
    padded = (256, 320)
    sizes, feats = fpn_features[padded]
    tv, ours = rpn_pair(seed=2)
    tv.train()
    gt = [np.zeros((0, 4)), np.zeros((0, 4))]
    pos, neg = inject_sampling(tv, ours, feats, padded, gt)
    assert all(p.sum() == 0 for p in pos) and all(n.sum() == 256 for n in neg)
    _, _, losses, _ = ours.loss(padded, sizes, feats_as_tensors(feats), gt, sampled=(pos, neg))
    _, tv_losses = run_tv(tv, padded, sizes, {k: torch.from_numpy(v) for k, v in feats.items()},
                          [{"boxes": torch.zeros(0, 4, dtype=torch.float64)}] * 2)
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert np.isfinite(losses["loss_objectness"].item())
    assert abs(losses["loss_objectness"].item() - tv_losses["loss_objectness"].item()) <= 1e-8


def feats_as_tensors(feats):
    return {k: Tensor(v) for k, v in feats.items()}


def test_tiny_box_and_one_pixel_feature_maps():
    """A ground-truth box smaller than every anchor still gets positives (low-quality rule);
    feature maps of 1x1 work end to end."""
    tv, ours = rpn_pair(channels=8, seed=3)
    tv.train()
    padded, sizes = (64, 64), [(64, 64), (60, 50)]
    rng = np.random.default_rng(4)
    feats = {k: rng.standard_normal((2, 8, s, s)) for k, s in zip(["0", "1", "2", "3", "pool"], [16, 8, 4, 2, 1],
                                                                   strict=True)}
    gt = [np.array([[30.0, 30.0, 34.0, 33.0]]), np.array([[0.0, 0.0, 64.0, 64.0]])]
    pos, neg = inject_sampling(tv, ours, feats, padded, gt)
    assert pos[0].sum() >= 1  # the 4x3 box is matched to its best anchors despite IoU < 0.3
    boxes, _, losses, _ = ours.loss(padded, sizes, feats_as_tensors(feats), gt, sampled=(pos, neg))
    tv_boxes, tv_losses = run_tv(tv, padded, sizes, {k: torch.from_numpy(v) for k, v in feats.items()},
                                 [{"boxes": torch.from_numpy(g)} for g in gt])
    for name in losses:
        assert abs(losses[name].item() - tv_losses[name].item()) <= 1e-8, name
    for b, r in zip(boxes, tv_boxes, strict=True):
        np.testing.assert_allclose(b, r.detach().numpy(), atol=1e-8)


def test_torchvision_float32_labels_quirk(fpn_features):
    """Unpatched, torchvision's float64 objectness loss is a float32 number: ours differs from
    it by float32 rounding only (and equals the float64 computation, tested above)."""
    padded = (256, 320)
    sizes, feats = fpn_features[padded]
    gt = [np.array([[10.0, 20.0, 120.0, 200.0]]), np.array([[30.0, 60.0, 90.0, 180.0]])]
    tv, ours = rpn_pair(seed=5)
    tv.train()
    pos, neg = inject_sampling(tv, ours, feats, padded, gt)
    tv.assign_targets_to_anchors = type(tv).assign_targets_to_anchors.__get__(tv)  # undo the patch
    _, tv_losses = run_tv(tv, padded, sizes, {k: torch.from_numpy(v) for k, v in feats.items()},
                          [{"boxes": torch.from_numpy(g)} for g in gt])
    _, _, losses, _ = ours.loss(padded, sizes, feats_as_tensors(feats), gt, sampled=(pos, neg))
    assert tv_losses["loss_objectness"].dtype == torch.float32
    assert abs(losses["loss_objectness"].item() - tv_losses["loss_objectness"].item()) <= 1e-6
