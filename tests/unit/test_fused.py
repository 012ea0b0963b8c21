"""Inference with folded norms and fused epilogues (:mod:`mrcnn_np.nn.fused`): the same detections
as the separate layers (``fusion(False)``), folded weights recomputed whenever a source changes,
and never used where a gradient or the specification is wanted."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import Tensor, no_grad
from mrcnn_np.backend import default_impl
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import random_image
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.nn import BatchNorm2d, Conv2d, FrozenBatchNorm2d
from mrcnn_np.nn.fused import conv_norm, fusion

RTOL = {np.float32: 2e-4, np.float64: 1e-10}


def images(n=2, seed=2):
    rng = np.random.default_rng(seed)
    return [random_image(rng, 96, 112)[0] for _ in range(n)]


def calibrated(model):
    """Non-trivial norm statistics, so folding changes the weights (the defaults are identity norms)."""
    rng = np.random.default_rng(5)
    for name, buffer in model.state_dict().items():
        if name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
        elif name.endswith("running_mean"):
            buffer[...] = rng.normal(0, 0.1, buffer.shape)
        elif name.endswith("bn1.weight") or name.endswith("bn3.bias"):
            buffer[...] = rng.uniform(0.5, 1.5, buffer.shape)
    return model


def assert_same_detections(a, b, dtype):
    for x, y in zip(a, b, strict=True):
        assert x["labels"].tolist() == y["labels"].tolist()
        for key in ("boxes", "scores", "masks"):
            np.testing.assert_allclose(x[key], y[key], rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("frozen", [True, False], ids=["FrozenBatchNorm2d", "BatchNorm2d-eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_features_equal_the_separate_layers(frozen, dtype):
    model = calibrated(MaskRCNN(tiny(frozen_batch_norm=frozen, dtype=dtype), rng=0).eval())
    x = np.random.default_rng(3).standard_normal((2, 3, 96, 128)).astype(dtype)
    with no_grad():
        fused = model.backbone(x)
        with fusion(False):
            separate = model.backbone(x)
    for name in separate:
        scale = float(np.abs(separate[name].data).max())
        np.testing.assert_allclose(fused[name].data, separate[name].data, rtol=0, atol=RTOL[dtype] * scale)
        assert not np.array_equal(fused[name].data, separate[name].data) or dtype == np.float64


def test_the_shipped_model_detects_the_same_objects_fused():
    from mrcnn_np.pretrained import shapes_model

    model = shapes_model()
    rng = np.random.default_rng(4)
    ims = [random_image(rng, 128, 128, max_instances=4)[0] for _ in range(4)]
    fused = model(ims)
    with fusion(False):
        separate = model(ims)
    assert sum(len(r["boxes"]) for r in fused) >= 4
    for x, y in zip(fused, separate, strict=True):
        assert x["labels"].tolist() == y["labels"].tolist()
        np.testing.assert_allclose(x["boxes"], y["boxes"], atol=1e-2)
        np.testing.assert_allclose(x["scores"], y["scores"], atol=1e-4)
        assert np.mean(x["masks"].round() != y["masks"].round()) < 1e-3


def test_the_folded_weights_follow_every_change_of_their_sources():
    conv, norm = Conv2d(3, 4, 3, padding=1, bias=False, rng=0), FrozenBatchNorm2d(4)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 7)).astype(np.float32)

    def separate():
        with fusion(False), no_grad():
            return conv_norm(conv, norm, x, relu=True).data

    def fused():
        with no_grad():
            return conv_norm(conv, norm, x, relu=True).data

    changes = [
        lambda: norm.running_var.__setitem__(Ellipsis, 3.0),   # statistics written in place
        lambda: conv.weight.data.__imul__(2),                  # a weight written in place (an SGD step)
        lambda: conv.load_state_dict({"weight": np.ones((4, 3, 3, 3))}),
        lambda: norm.bias.__setitem__(0, -5.0),
    ]
    np.testing.assert_allclose(fused(), separate(), rtol=1e-5, atol=1e-5)
    for change in changes:
        before = fused()
        change()
        after = fused()
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, separate(), rtol=1e-5, atol=1e-5)


def test_a_training_batch_norm_and_the_tape_are_never_folded():
    conv, norm = Conv2d(2, 3, 1, rng=0), BatchNorm2d(3)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2, 5, 5)))
    conv.to(np.float64)
    norm.to(np.float64)
    out = conv_norm(conv, norm.train(), x, relu=True)  # batch statistics: the running ones move
    assert out.requires_grad and "_folded" not in conv.__dict__
    with no_grad():
        conv_norm(conv, norm.train(), x)
    assert "_folded" not in conv.__dict__  # training-mode statistics are not fixed
    norm.eval()
    conv.weight.requires_grad = True
    assert conv_norm(conv, norm, x).requires_grad  # the tape is on: the separate layers
    assert "_folded" not in conv.__dict__
    with no_grad(), default_impl("numpy"):  # the specification everywhere: no folding
        conv_norm(conv, norm, x)
    assert "_folded" not in conv.__dict__
    with no_grad():
        conv_norm(conv, norm, x)
    assert "_folded" in conv.__dict__


def test_to_another_dtype_refolds():
    model = calibrated(MaskRCNN(tiny(frozen_batch_norm=True), rng=0).eval())
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64))
    with no_grad():
        model.backbone(x.astype(np.float32))
        model.to(np.float64)
        fused = model.backbone(x)
        with fusion(False):
            separate = model.backbone(x)
    assert model.backbone.body.conv1.__dict__["_folded"][1][0].dtype == np.float64
    for name in separate:
        assert fused[name].data.dtype == np.float64
        np.testing.assert_allclose(fused[name].data, separate[name].data, rtol=1e-10, atol=1e-10)
