"""Backbone shapes, small configurations, trainable BN, and weight files (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import Tensor, nn
from mrcnn_np.convert import load_weights, save_safetensors
from mrcnn_np.model.backbone import ResNet, resnet_fpn_backbone


def test_resnet50_stage_shapes_and_strides():
    body = ResNet((3, 4, 6, 3), 64)
    feats = body(np.zeros((1, 3, 64, 96), np.float32))
    assert [f.shape for f in feats] == [(1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 4, 6), (1, 2048, 2, 3)]
    assert body.out_channels == [256, 512, 1024, 2048]


def test_small_configuration_with_trainable_batch_norm_trains():
    model = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8, out_channels=32, trainable_layers=5,
                                norm_layer=nn.BatchNorm2d, rng=0)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    out = model(x)
    assert {k: v.shape for k, v in out.items()} == {
        "0": (2, 32, 16, 16), "1": (2, 32, 8, 8), "2": (2, 32, 4, 4), "3": (2, 32, 2, 2), "pool": (2, 32, 1, 1)}
    sum((v.mean() for v in out.values()), Tensor(np.float32(0))).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.body.bn1.weight.grad is not None  # trainable_layers=5 trains the stem's norm too


def test_safetensors_round_trip(tmp_path):
    a = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8, rng=1)
    b = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8, rng=2)
    path = tmp_path / "backbone.safetensors"
    save_safetensors(a, path, metadata={"config": "tiny"})
    load_weights(b, path)
    for k, v in a.state_dict().items():
        assert np.array_equal(b.state_dict()[k], v), k
    assert not (tmp_path / "backbone.safetensors.tmp").exists()


def test_fpn_rejects_wrong_number_of_levels():
    model = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8)
    with pytest.raises(ValueError, match="FPN expects 4 feature maps, got 3"):
        model.fpn([np.zeros((1, 32, 8, 8), np.float32)] * 3)
