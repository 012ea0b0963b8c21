"""ResNet-FPN backbone against torchvision's resnet_fpn_backbone: outputs, gradients,
the trainable-layers rule, and state-dict round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np import Tensor, nn, no_grad
from mrcnn_np.convert import export_to_torchvision, state_dict_from_torch
from mrcnn_np.model.backbone import resnet_fpn_backbone
from tests.helpers import assert_rel
from tests.reference.torch_models import backbone_pair

LEVELS = ["0", "1", "2", "3", "pool"]


def run_both(tv, ours, x):
    with no_grad():
        out = ours(x)
    with torch.no_grad():
        ref = tv(torch.from_numpy(x))
    return out, ref


@pytest.fixture(scope="module")
def resnet50_float64():
    return backbone_pair("resnet50", np.float64)


@pytest.mark.parametrize("shape", [
    (1, 3, 224, 224),
    pytest.param((2, 3, 320, 480), marks=pytest.mark.slow),
    (1, 3, 100, 150),  # not a multiple of 32: FPN upsamples to the lateral's exact odd size
])
def test_resnet50_fpn_float64(resnet50_float64, shape):
    tv, ours = resnet50_float64
    x = np.random.default_rng(0).standard_normal(shape)
    out, ref = run_both(tv, ours, x)
    assert list(out) == LEVELS == list(ref)
    for k in LEVELS:
        assert_rel(out[k].data, ref[k].numpy(), 1e-9, f"level {k}")


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (2, 3, 320, 480)])
def test_resnet50_fpn_float32(shape):
    tv, ours = backbone_pair("resnet50", np.float32)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    out, ref = run_both(tv, ours, x)
    for k in LEVELS:
        assert out[k].dtype == np.float32
        assert_rel(out[k].data, ref[k].numpy(), 1e-4, f"level {k}")


@pytest.mark.slow
def test_resnet101_fpn_float64():
    tv, ours = backbone_pair("resnet101", np.float64)
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224))
    out, ref = run_both(tv, ours, x)
    for k in LEVELS:
        assert_rel(out[k].data, ref[k].numpy(), 1e-9, f"level {k}")


def test_backward_matches_torch_autograd(resnet50_float64):
    """d(sum_k <P_k, W_k>)/d(param) for every trainable parameter; frozen ones get nothing."""
    tv, ours = resnet50_float64
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 64, 96))
    out = ours(Tensor(x))
    weights = {k: rng.standard_normal(v.shape) for k, v in out.items()}
    sum(((out[k] * w).sum() for k, w in weights.items()), Tensor(0.0)).backward()

    tv.zero_grad()
    ref = tv(torch.from_numpy(x))
    sum((ref[k] * torch.from_numpy(w)).sum() for k, w in weights.items()).backward()

    theirs = dict(tv.named_parameters())
    trainable = [n for n, p in ours.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in theirs.items() if p.requires_grad]
    assert any(n.startswith("body.layer2") for n in trainable) and any(n.startswith("fpn.") for n in trainable)
    for name, p in ours.named_parameters():
        if p.requires_grad:
            assert_rel(p.grad, theirs[name].grad.numpy(), 1e-8, name)
        else:
            assert p.grad is None and theirs[name].grad is None, f"frozen {name} received a gradient"


@pytest.mark.parametrize("trainable_layers", range(6))
@pytest.mark.parametrize("norm", ["frozen", "batchnorm"])
def test_trainable_layers_rule(trainable_layers, norm):
    if norm == "frozen":
        tv = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=trainable_layers)
        ours = resnet_fpn_backbone("resnet50", trainable_layers=trainable_layers)
    else:
        tv = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=trainable_layers,
                                    norm_layer=torch.nn.BatchNorm2d)
        ours = resnet_fpn_backbone("resnet50", trainable_layers=trainable_layers, norm_layer=nn.BatchNorm2d)
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == [
        n for n, p in tv.named_parameters() if p.requires_grad
    ]
    assert list(ours.state_dict()) == list(tv.state_dict())


def test_trainable_layers_out_of_range():
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 5\], got 6"):
        resnet_fpn_backbone("resnet50", trainable_layers=6)
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'"):
        resnet_fpn_backbone("resnet18")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_is_bit_identical(dtype):
    ours = resnet_fpn_backbone("resnet50", dtype=dtype, rng=5)
    for name, b in ours.named_buffers():  # non-default buffers, so the round trip carries information
        b[...] = np.random.default_rng(len(name)).uniform(0.5, 1.5, b.shape)
    tv = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32)
    export_to_torchvision(ours, tv)
    back = resnet_fpn_backbone("resnet50", dtype=dtype, rng=6)
    back.load_state_dict(state_dict_from_torch(tv))
    original, returned = ours.state_dict(), back.state_dict()
    assert list(original) == list(returned)
    for k in original:
        assert returned[k].dtype == original[k].dtype and np.array_equal(returned[k], original[k]), k
