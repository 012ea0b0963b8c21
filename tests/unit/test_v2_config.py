"""torchvision's v2 recipe as configuration: the settings (checked, saved, loaded), the presets, the
modules they build (BatchNorm in the FPN and heads, a deeper RPN head, the conv box head), folded
inference and training with them. (Parity with torchvision's v2 models: tests/reference/test_v2.py.)"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from mrcnn_np import nn, no_grad
from mrcnn_np.config import (
    PRESETS,
    V2,
    MaskRCNNConfig,
    config_from_dict,
    config_to_dict,
    fasterrcnn_resnet50_fpn_v2,
    maskrcnn_resnet50_fpn_v2,
    preset,
    resnet50_fpn,
    tiny,
    tiny_v2,
)
from mrcnn_np.model.fpn import FeaturePyramidNetwork
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import FastRCNNConvFCHead, MaskRCNNHeads, TwoMLPHead
from mrcnn_np.model.rpn import RPNHead
from mrcnn_np.nn.fused import fusion


def test_the_v2_presets_differ_from_v1_only_in_the_v2_settings():
    v1, v2 = resnet50_fpn(), maskrcnn_resnet50_fpn_v2()
    differing = {f.name for f in fields(MaskRCNNConfig) if getattr(v1, f.name) != getattr(v2, f.name)}
    assert differing == set(V2) == {"frozen_batch_norm", "fpn_batch_norm", "rpn_conv_depth", "box_head",
                                    "head_batch_norm"}
    assert v2.trainable_backbone_layers == 3 and v2.box_conv_layers == (256,) * 4 and v2.representation_size == 1024
    faster = fasterrcnn_resnet50_fpn_v2(7)
    assert faster.mask_branch is False and faster.num_classes == 7 and faster.box_head == "FastRCNNConvFCHead"
    assert maskrcnn_resnet50_fpn_v2(trainable_backbone_layers=5).trainable_backbone_layers == 5  # overrides win
    assert tiny_v2().box_conv_layers == (64,) * 4 and all(getattr(tiny_v2(), k) == v for k, v in V2.items())


def test_v1_defaults_are_unchanged():
    c = MaskRCNNConfig()
    assert (c.fpn_batch_norm, c.rpn_conv_depth, c.box_head, c.head_batch_norm) == (False, 1, "TwoMLPHead", False)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_by_name(name):
    config = preset(name, num_classes=3)
    assert config == PRESETS[name](num_classes=3) and config.num_classes == 3


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown configuration 'resnet18'.*maskrcnn_resnet50_fpn_v2"):
        preset("resnet18")


@pytest.mark.parametrize(("setting", "value", "error", "message"), [
    ("fpn_batch_norm", 1, TypeError, "fpn_batch_norm must be True or False"),
    ("head_batch_norm", "yes", TypeError, "head_batch_norm must be True or False"),
    ("rpn_conv_depth", 0, ValueError, "rpn_conv_depth"),
    ("rpn_conv_depth", 1.5, TypeError, "rpn_conv_depth"),
    ("box_head", "MLP", ValueError, "unknown box_head 'MLP'; expected one of"),
    ("box_head", None, TypeError, "box_head must be a name"),
    ("box_conv_layers", (), TypeError, "box_conv_layers must be a non-empty tuple"),
    ("box_conv_layers", (64, 0), ValueError, "box_conv_layers"),
])
def test_bad_v2_settings_are_refused_by_name(setting, value, error, message):
    with pytest.raises(error, match=message):
        MaskRCNNConfig(**{setting: value})


def test_v2_settings_round_trip_through_json_and_old_dicts_load_as_v1():
    d = config_to_dict(tiny_v2(box_conv_layers=[32, 16]))
    assert d["box_conv_layers"] == [32, 16] and d["box_head"] == "FastRCNNConvFCHead"
    assert config_from_dict(d) == tiny_v2(box_conv_layers=(32, 16))
    for name in ("fpn_batch_norm", "rpn_conv_depth", "box_head", "box_conv_layers", "head_batch_norm"):
        del d[name]  # a configuration saved before the v2 settings existed
    old = config_from_dict(d)
    assert (old.fpn_batch_norm, old.rpn_conv_depth, old.box_head, old.head_batch_norm) == (False, 1, "TwoMLPHead",
                                                                                          False)


def test_the_modules_the_v2_settings_build():
    model = MaskRCNN(tiny_v2(box_conv_layers=(32, 16)), rng=0)
    fpn, head, heads = model.backbone.fpn, model.rpn.head, model.roi_heads
    assert isinstance(fpn.inner_blocks[0][1], nn.BatchNorm2d) and fpn.inner_blocks[0][0].bias is None
    assert len(head.conv) == 2
    assert isinstance(heads.box_head, FastRCNNConvFCHead) and heads.box_head.num_convs == 2
    assert heads.box_head[3].weight.shape == (256, 16 * 7 * 7)  # 2 convs, Flatten, then the fc: keys "3.weight"
    assert "roi_heads.box_head.3.weight" in model.state_dict()
    assert isinstance(heads.mask_head[0][1], nn.BatchNorm2d) and heads.mask_head[0][0].bias is None
    v1 = MaskRCNN(tiny(), rng=0)
    assert isinstance(v1.roi_heads.box_head, TwoMLPHead) and len(v1.rpn.head.conv) == 1
    assert len(v1.backbone.fpn.inner_blocks[0]) == 1 and len(v1.roi_heads.mask_head[0]) == 2


def test_fpn_with_batch_norm_normalises_each_conv():
    """In train mode each FPN output is a BatchNorm's: zero mean and unit variance per channel
    (weight 1, bias 0), whatever the input's scale."""
    rng = np.random.default_rng(0)
    fpn = FeaturePyramidNetwork([8, 16], 4, nn.BatchNorm2d, rng=0, dtype=np.float64)
    out = fpn([rng.normal(5, 3, (2, 8, 8, 8)), rng.normal(-2, 7, (2, 16, 4, 4))])
    for level in ("0", "1"):
        x = out[level].data
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-12)
        np.testing.assert_allclose(x.var(axis=(0, 2, 3)), 1, rtol=1e-4)


def test_conv_fc_head_equals_its_layers_written_out():
    rng = np.random.default_rng(1)
    head = FastRCNNConvFCHead((6, 7, 7), (5, 4), (9,), nn.BatchNorm2d, rng=0, dtype=np.float64).eval()
    for block in list(head)[:2]:
        block[1].running_mean[...] = rng.normal(size=block[1].running_mean.shape)
        block[1].running_var[...] = rng.uniform(0.5, 2, block[1].running_var.shape)
    x = rng.normal(size=(3, 6, 7, 7))
    expected = x
    for block in list(head)[:2]:
        expected = np.maximum(block[1](block[0](expected)).data, 0)
    expected = np.maximum(expected.reshape(3, -1) @ head[3].weight.data.T + head[3].bias.data, 0)
    np.testing.assert_allclose(head(x).data, expected, rtol=1e-12, atol=1e-13)
    with no_grad():  # folded: BatchNorm2d in eval mode has fixed statistics
        np.testing.assert_allclose(head(x).data, expected, rtol=1e-12, atol=1e-13)


def test_rpn_head_depth_two_runs_both_convs():
    rng = np.random.default_rng(2)
    head = RPNHead(4, 3, conv_depth=2, rng=0, dtype=np.float64)
    x = rng.normal(size=(1, 4, 6, 6))
    t = x
    for block in head.conv:
        t = np.maximum(block[0](t).data, 0)
    logits, deltas = head([x])
    np.testing.assert_allclose(logits[0].data, head.cls_logits(t).data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(deltas[0].data, head.bbox_pred(t).data, rtol=1e-12, atol=1e-14)


def test_mask_head_with_norm_has_no_conv_bias_and_folds():
    rng = np.random.default_rng(3)
    heads = MaskRCNNHeads(4, (5, 5), 1, nn.BatchNorm2d, rng=0, dtype=np.float64).eval()
    assert all(block[0].bias is None and len(block) == 3 for block in heads)
    x = rng.normal(size=(2, 4, 14, 14))
    with fusion(False):
        separate = heads(x).data
    with no_grad():
        np.testing.assert_allclose(heads(x).data, separate, rtol=1e-12, atol=1e-13)


def test_tiny_v2_trains_and_predicts():
    """A training step gives finite losses and gradients for every trainable parameter (the norms'
    included); inference in eval mode gives detections of the right shapes."""
    model = MaskRCNN(tiny_v2(min_size=96, max_size=96), rng=0)
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 1, (96, 96, 3))
    masks = np.zeros((1, 96, 96), np.uint8)
    masks[0, 20:60, 30:70] = 1
    target = {"boxes": np.array([[30.0, 20, 70, 60]]), "labels": np.array([1]), "masks": masks}
    losses = model([image], [target], rng=0)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and np.isfinite(p.grad).all(), name
    assert model.roi_heads.box_head[0][1].num_batches_tracked == 1
    model.eval()
    out = model.predict([image])[0]
    assert out["boxes"].shape[1] == 4 and out["masks"].shape[1:] == (1, 96, 96)
