"""Module: registration, names, state dicts, modes, requires_grad, dtype conversion, init."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrcnn_np import nn
from mrcnn_np.autograd import Tensor


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=1)
        self.bn1 = nn.FrozenBatchNorm2d(4)
        self.layer = nn.Sequential(nn.Conv2d(4, 4, 1, rng=2), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 2, rng=3)
        self.scale = 2.0  # plain attribute, not state

    def forward(self, x):
        x = self.layer(nn.functional.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(axis=(2, 3)))


def test_names_follow_torch_state_dict_keys():
    m = Block()
    assert list(m.state_dict()) == [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "layer.0.weight", "layer.0.bias", "layer.1.weight", "layer.1.bias", "layer.1.running_mean",
        "layer.1.running_var", "layer.1.num_batches_tracked", "fc.weight", "fc.bias",
    ]
    assert [n for n, _ in m.named_parameters()] == [
        "conv1.weight", "layer.0.weight", "layer.0.bias", "layer.1.weight", "layer.1.bias",
        "fc.weight", "fc.bias",
    ]
    assert "scale" not in m.state_dict()


def test_state_dict_round_trip_and_in_place_load():
    a, b = Block(), Block()
    b.fc.weight.data += 1
    weight_array = a.fc.weight.data
    a.load_state_dict({k: v.copy() for k, v in b.state_dict().items()})
    assert a.fc.weight.data is weight_array  # loaded in place
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[k], v)


def test_strict_load_names_missing_and_unexpected_keys():
    m = Block()
    sd = dict(m.state_dict())
    del sd["fc.bias"]
    sd["fc.extra"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing keys \['fc.bias'\].*unexpected keys \['fc.extra'\]"):
        m.load_state_dict(sd)
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc.bias"] and result.unexpected_keys == ["fc.extra"]


def test_load_shape_and_dtype_errors_name_key_and_shapes():
    m = Block()
    sd = dict(m.state_dict())
    sd["fc.weight"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"fc.weight: expected shape \(2, 4\), got \(3, 4\)"):
        m.load_state_dict(sd)
    sd = dict(m.state_dict())
    sd["fc.weight"] = np.zeros((2, 4), np.int64)
    with pytest.raises(TypeError, match="fc.weight: expected dtype float32, got int64"):
        m.load_state_dict(sd)


def test_load_casts_float64_to_parameter_dtype():
    m = Block()
    sd = {k: np.asarray(v, np.float64) if v.dtype.kind == "f" else v for k, v in m.state_dict().items()}
    sd["fc.bias"] = np.array([1.5, -2.0])
    m.load_state_dict(sd)
    assert m.fc.bias.dtype == np.float32
    np.testing.assert_array_equal(m.fc.bias.data, [1.5, -2.0])


def test_train_eval_and_batch_norm_statistics():
    m = Block()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    before = m.layer[1].running_mean.copy()
    m.train()
    m(x)
    assert not np.array_equal(m.layer[1].running_mean, before)
    assert int(m.layer[1].num_batches_tracked) == 1
    m.eval()
    assert all(not mod.training for mod in m.modules())
    frozen = m.layer[1].running_mean.copy()
    m(x)
    np.testing.assert_array_equal(m.layer[1].running_mean, frozen)


def test_requires_grad_toggling_freezes_parameters():
    m = Block()
    m.conv1.requires_grad_(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    m(x).sum().backward()
    assert m.conv1.weight.grad is None
    assert m.fc.weight.grad is not None and m.layer[0].weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_to_float64_converts_parameters_and_buffers():
    m = Block().to(np.float64)
    assert all(v.dtype == np.float64 for v in m.state_dict().values() if v.dtype.kind == "f")
    assert m.layer[1].num_batches_tracked.dtype == np.int64


@pytest.mark.parametrize("cls,args,fan_in", [
    (nn.Conv2d, (6, 5, 3), 6 * 9),
    (nn.Linear, (40, 7), 40),
    (nn.ConvTranspose2d, (6, 5, 2), 5 * 4),  # torch's fan_in for a transposed conv: C_out*kh*kw
])
def test_default_init_matches_torch_distribution(cls, args, fan_in):
    layer = cls(*args, rng=0, dtype=np.float64)
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound
    w = layer.weight.data
    assert np.abs(w).max() > 0.9 * bound  # spread over the whole interval
    assert abs(w.std() - bound / math.sqrt(3)) < 0.15 * bound  # std of U(-b, b) is b/sqrt(3)


def test_init_is_seeded():
    a, b, c = nn.Conv2d(3, 4, 3, rng=7), nn.Conv2d(3, 4, 3, rng=7), nn.Conv2d(3, 4, 3, rng=8)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    g = np.random.default_rng(0)
    d, e = nn.Linear(3, 3, rng=g), nn.Linear(3, 3, rng=g)  # a shared Generator advances
    assert not np.array_equal(d.weight.data, e.weight.data)


def test_kaiming_normal_fan_out_std():
    w = np.empty((256, 64, 3, 3))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", rng=0)
    assert abs(w.std() - math.sqrt(2 / (256 * 9))) < 0.02 * math.sqrt(2 / (256 * 9))
