"""The ResNet-C4 model as configuration (``architecture="c4"``): its settings checked, the modules it
builds, a module shared by two paths (res5) counted once for training and twice in the state dict,
and the small C4 model training. (Parity with its torchvision twin: tests/reference/test_c4.py.)"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from mrcnn_np import nn
from mrcnn_np.config import C4, MaskRCNNConfig, config_from_dict, config_to_dict, resnet50_c4, resnet50_fpn, tiny_c4
from mrcnn_np.model.backbone import BackboneC4
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import Res5Head


def test_the_preset_changes_only_the_c4_settings():
    fpn, c4 = resnet50_fpn(), resnet50_c4()
    differing = {f.name for f in fields(MaskRCNNConfig) if getattr(fpn, f.name) != getattr(c4, f.name)}
    # the same as the FPN model: 14x14 RoIAlign for masks, 2000 / 1000 proposals kept after NMS
    assert differing == set(C4) - {"mask_roi_output_size", "rpn_post_nms_top_n"}
    assert c4.feature_channels == 1024 and fpn.feature_channels == 256
    assert tiny_c4().feature_channels == 16 * 16 and tiny_c4().rpn_post_nms_top_n == {"training": 300, "testing": 100}


@pytest.mark.parametrize(("settings", "error", "message"), [
    ({"architecture": "C5"}, ValueError, "architecture must be one of"),
    ({"architecture": 4}, TypeError, "architecture must be one of"),
    # C4 has one feature map: one anchor tuple, the FPN's five are an error (and the other way round)
    ({**C4, "anchor_sizes": ((32,), (64,), (128,), (256,), (512,))}, ValueError, "one tuple per feature map"),
    ({"anchor_sizes": ((32, 64, 128, 256, 512),), "aspect_ratios": ((0.5, 1.0, 2.0),)}, ValueError,
     "one tuple per FPN level"),
    ({**C4, "roi_featmap_names": ("0", "1")}, ValueError, r"roi_featmap_names must be \('0',\)"),
])
def test_inconsistent_c4_settings_are_refused(settings, error, message):
    with pytest.raises(error, match=message):
        MaskRCNNConfig(**settings)


def test_c4_settings_round_trip_through_json():
    d = config_to_dict(tiny_c4())
    assert d["architecture"] == "c4" and config_from_dict(d) == tiny_c4()


def test_the_c4_model_is_built_of_a_c4_backbone_and_a_shared_res5():
    model = MaskRCNN(tiny_c4(), rng=0)
    assert isinstance(model.backbone, BackboneC4) and model.backbone.out_channels == 256
    heads = model.roi_heads
    assert isinstance(heads.box_head, Res5Head) and heads.mask_head is heads.box_head.res5
    assert heads.box_predictor.cls_score.weight.shape == (4, 512) and heads.mask_predictor.conv5_mask.weight.shape[0] == 512
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 96)).astype(np.float32)
    features = model.backbone(x)
    assert list(features) == ["0"] and features["0"].shape == (1, 256, 4, 6)  # stride 16
    assert heads.box_head(np.zeros((3, 256, 14, 14), np.float32)).shape == (3, 512)
    assert model.rpn.head.cls_logits.weight.shape[0] == 15


def test_a_shared_module_is_one_set_of_parameters_and_two_sets_of_keys():
    """As in torch: ``named_parameters``/``modules`` visit a shared module once, ``state_dict`` by every path."""
    shared = nn.Linear(2, 3, rng=0)
    root = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in root.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(root.modules())) == 3  # root, the Linear once, the ReLU
    assert list(root.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert root.state_dict()["2.weight"] is shared.weight.data
    root.load_state_dict({"0.weight": np.ones((3, 2)), "0.bias": np.zeros(3), "2.weight": np.ones((3, 2)),
                          "2.bias": np.zeros(3)})
    assert (shared.weight.data == 1).all()
    root.to(np.float64)
    assert shared.weight.dtype == np.float64


def test_the_small_c4_model_trains_and_predicts():
    model = MaskRCNN(tiny_c4(min_size=96, max_size=96), rng=0)
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 1, (96, 96, 3))
    masks = np.zeros((1, 96, 96), np.uint8)
    masks[0, 20:60, 30:70] = 1
    losses = model([image], [{"boxes": np.array([[30.0, 20, 70, 60]]), "labels": np.array([1]), "masks": masks}],
                   rng=0)
    assert len(losses) == 5 and all(np.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and np.isfinite(p.grad).all(), name
    model.eval()
    out = model.predict([image])[0]
    assert out["masks"].shape[1:] == (1, 96, 96) and out["boxes"].shape[1] == 4
