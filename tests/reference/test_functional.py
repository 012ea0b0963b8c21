"""Every layer of mrcnn_np.nn.functional against torch.nn.functional: forward and backward,
float64 (relative error <= 1e-10) and float32 (<= 1e-5), on odd, non-square, batched inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import mrcnn_np.nn.functional as F
from tests.reference.harness import compare_with_torch

DTYPES = [np.float64, np.float32]


def randn(rng, *shape):
    return rng.standard_normal(shape)


# --- conv2d: (N, C_in, H, W, C_out, kernel, stride, padding, dilation, bias) -------------------
CONV_CASES = {
    "3x3 odd non-square batch2": (2, 3, 9, 7, 4, 3, 1, 1, 1, True),
    "7x7 stride2 pad3 (stem)": (1, 3, 17, 13, 5, 7, 2, 3, 1, True),
    "1x1 batch2 no bias": (2, 4, 8, 10, 6, 1, 1, 0, 1, False),
    "1x1 stride2 (downsample)": (2, 4, 9, 11, 3, 1, 2, 0, 1, False),
    "3x3 stride2 pad1": (2, 3, 12, 9, 4, 3, 2, 1, 1, True),
    "3x3 dilation2 pad2": (2, 3, 11, 9, 4, 3, 1, 2, 2, True),
    "rect kernel, mixed stride/pad/dilation": (1, 2, 10, 12, 3, (3, 5), (2, 1), (1, 2), (1, 2), True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case, dtype):
    N, C, H, W, O, k, s, p, d, bias = CONV_CASES[case]
    rng = np.random.default_rng(1)
    kh, kw = (k, k) if isinstance(k, int) else k
    arrays = [randn(rng, N, C, H, W), randn(rng, O, C, kh, kw)] + ([randn(rng, O)] if bias else [])
    wrt = list(range(len(arrays)))
    compare_with_torch(
        lambda x, w, b=None: F.conv2d(x, w, b, s, p, d),
        lambda x, w, b=None: TF.conv2d(x, w, b, s, p, d),
        arrays, wrt, dtype, what=case,
    )


# --- conv_transpose2d: (N, C_in, H, W, C_out, kernel, stride, padding, output_padding, dilation)
DECONV_CASES = {
    "2x2 stride2 (mask head)": (2, 4, 5, 7, 3, 2, 2, 0, 0, 1),
    "3x3 stride2 pad1 outpad1": (1, 3, 6, 5, 2, 3, 2, 1, 1, 1),
    "3x3 dilation2 pad1": (2, 2, 4, 6, 3, 3, 1, 1, 0, 2),
    "rect kernel and strides": (1, 3, 5, 4, 2, (3, 5), (2, 3), (1, 2), (1, 0), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DECONV_CASES)
def test_conv_transpose2d(case, dtype):
    N, C, H, W, O, k, s, p, op, d = DECONV_CASES[case]
    rng = np.random.default_rng(2)
    kh, kw = (k, k) if isinstance(k, int) else k
    arrays = [randn(rng, N, C, H, W), randn(rng, C, O, kh, kw), randn(rng, O)]
    compare_with_torch(
        lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op, d),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, s, p, op, 1, d),
        arrays, [0, 1, 2], dtype, what=case,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,bias", [((4, 7), True), ((2, 3, 7), True), ((5, 7), False)])
def test_linear(shape, bias, dtype):
    rng = np.random.default_rng(3)
    arrays = [randn(rng, *shape), randn(rng, 6, 7)] + ([randn(rng, 6)] if bias else [])
    compare_with_torch(F.linear, TF.linear, arrays, list(range(len(arrays))), dtype, what="linear")


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(dtype):
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 7))
    compare_with_torch(F.relu, TF.relu, [x], [0], dtype, what="relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid(dtype):
    x = np.random.default_rng(5).standard_normal((3, 11)) * 10
    x[0, :4] = [-60.0, -30.0, 30.0, 60.0]  # far tails, where a naive formula overflows
    compare_with_torch(F.sigmoid, torch.sigmoid, [x], [0], dtype, what="sigmoid")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, dim, dtype):
    x = np.random.default_rng(6).standard_normal((3, 5, 4)) * 3
    compare_with_torch(
        lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), [x], [0], dtype, what=name
    )


# --- max_pool2d: (input shape, kernel, stride, padding, dilation) -----------------------------
POOL_CASES = {
    "3x3 s2 p1 (stem) odd": ((2, 3, 13, 10), 3, 2, 1, 1),
    "1x1 s2 (P6)": ((1, 4, 7, 9), 1, 2, 0, 1),
    "2x2 s2": ((2, 2, 8, 6), 2, 2, 0, 1),
    "3x3 s1 p1 dilation2": ((1, 2, 9, 8), 3, 1, 1, 2),
    "rect 2x3 s(1,2)": ((1, 3, 7, 11), (2, 3), (1, 2), (1, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d(case, dtype):
    shape, k, s, p, d = POOL_CASES[case]
    x = np.random.default_rng(7).standard_normal(shape)
    compare_with_torch(
        lambda t: F.max_pool2d(t, k, s, p, d), lambda t: TF.max_pool2d(t, k, s, p, d), [x], [0], dtype, what=case
    )


def test_max_pool2d_ties_go_to_first_maximum():
    x = np.zeros((1, 1, 4, 4))  # every window is a tie
    compare_with_torch(lambda t: F.max_pool2d(t, 3, 1, 1), lambda t: TF.max_pool2d(t, 3, 1, 1),
                       [x], [0], np.float64, what="ties")


@pytest.mark.parametrize("dtype", DTYPES)
def test_frozen_batch_norm2d(dtype):
    from torchvision.ops.misc import FrozenBatchNorm2d

    rng = np.random.default_rng(8)
    C = 5
    x = randn(rng, 2, C, 6, 7)
    w, b, rm = randn(rng, C), randn(rng, C), randn(rng, C)
    rv = rng.uniform(0.1, 2.0, C)
    ref = FrozenBatchNorm2d(C).to(torch.float64 if dtype == np.float64 else torch.float32)
    for name, v in zip(("weight", "bias", "running_mean", "running_var"), (w, b, rm, rv), strict=True):
        getattr(ref, name).copy_(torch.tensor(v))
    compare_with_torch(
        lambda t: F.frozen_batch_norm2d(t, *(a.astype(dtype) for a in (w, b, rm, rv))),
        ref, [x], [0], dtype, what="frozen_batch_norm2d",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (6, 3)])
def test_batch_norm(shape, training, dtype):
    rng = np.random.default_rng(9)
    C = shape[1]
    rm0, rv0 = randn(rng, C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)
    ours_stats = [rm0.copy(), rv0.copy()]
    torch_stats = [torch.tensor(rm0.copy()), torch.tensor(rv0.copy())]
    compare_with_torch(
        lambda x, w, b: F.batch_norm(x, *ours_stats, w, b, training, 0.1, 1e-5),
        lambda x, w, b: TF.batch_norm(x, *torch_stats, w, b, training, 0.1, 1e-5),
        [randn(rng, *shape) * 2 + 1, randn(rng, C), randn(rng, C)], [0, 1, 2], dtype, what="batch_norm",
    )
    for ours, ref in zip(ours_stats, torch_stats, strict=True):  # running statistics updated alike
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-12 if dtype == np.float64 else 1e-6)


# --- interpolate: (input shape, kwargs) ---------------------------------------------------------
INTERP_CASES = {
    "nearest 2x (FPN)": ((1, 3, 6, 5), dict(size=(12, 10), mode="nearest")),
    "nearest odd up (FPN 13->25)": ((2, 2, 13, 7), dict(size=(25, 13), mode="nearest")),
    "nearest arbitrary up": ((1, 2, 7, 9), dict(size=(15, 20), mode="nearest")),
    "nearest down": ((1, 2, 10, 9), dict(size=(4, 7), mode="nearest")),
    "nearest scale_factor": ((1, 2, 5, 6), dict(scale_factor=1.7, mode="nearest")),
    "bilinear up size": ((2, 3, 7, 5), dict(size=(16, 11), mode="bilinear", align_corners=False)),
    "bilinear down size": ((1, 3, 19, 16), dict(size=(7, 9), mode="bilinear", align_corners=False)),
    "bilinear scale_factor recompute (transform)": (
        (1, 3, 17, 23), dict(scale_factor=1.37, mode="bilinear", align_corners=False, recompute_scale_factor=True)),
    "bilinear scale_factor": ((1, 3, 9, 11), dict(scale_factor=0.63, mode="bilinear", align_corners=False)),
    "bilinear align_corners": ((1, 2, 6, 8), dict(size=(11, 5), mode="bilinear", align_corners=True)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", INTERP_CASES)
def test_interpolate(case, dtype):
    shape, kwargs = INTERP_CASES[case]
    x = np.random.default_rng(10).standard_normal(shape)
    compare_with_torch(
        lambda t: F.interpolate(t, **kwargs), lambda t: TF.interpolate(t, **kwargs), [x], [0], dtype, what=case
    )


# --- losses -------------------------------------------------------------------------------------
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy(reduction, dtype):
    rng = np.random.default_rng(11)
    x = randn(rng, 9, 5) * 3
    t = rng.integers(0, 5, 9)
    t[[2, 6]] = -100  # ignored
    compare_with_torch(
        lambda a, b: F.cross_entropy(a, b, reduction=reduction),
        lambda a, b: TF.cross_entropy(a, b, reduction=reduction),
        [x, t], [0], dtype, what="cross_entropy",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_with_logits(weighted, reduction, dtype):
    rng = np.random.default_rng(12)
    x = randn(rng, 4, 7) * 4
    x[0, :3] = [-40.0, 0.0, 40.0]
    t = rng.uniform(0, 1, (4, 7))
    t[1] = (t[1] > 0.5)  # hard labels too
    arrays = [x, t] + ([rng.uniform(0, 2, (4, 7))] if weighted else [])
    compare_with_torch(
        lambda a, b, w=None: F.binary_cross_entropy_with_logits(a, b, w, reduction=reduction),
        lambda a, b, w=None: TF.binary_cross_entropy_with_logits(a, b, w, reduction=reduction),
        arrays, [0, 1], dtype, what="bce_with_logits",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1 / 9, 1.0, 0.0])
def test_smooth_l1_loss(beta, reduction, dtype):
    rng = np.random.default_rng(13)
    x, t = randn(rng, 6, 4), randn(rng, 6, 4)
    compare_with_torch(
        lambda a, b: F.smooth_l1_loss(a, b, reduction=reduction, beta=beta),
        lambda a, b: TF.smooth_l1_loss(a, b, reduction=reduction, beta=beta),
        [x, t], [0, 1], dtype, what="smooth_l1",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_l1_loss(reduction, dtype):
    rng = np.random.default_rng(14)
    x, t = randn(rng, 5, 3), randn(rng, 5, 3)
    compare_with_torch(
        lambda a, b: F.l1_loss(a, b, reduction=reduction),
        lambda a, b: TF.l1_loss(a, b, reduction=reduction),
        [x, t], [0, 1], dtype, what="l1",
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_float32_full_width(stride):
    """256 -> 256 channels, 3x3: 2304-term sums, where float32 rounding accumulates."""
    rng = np.random.default_rng(15)
    arrays = [randn(rng, 1, 256, 38, 50), randn(rng, 256, 256, 3, 3) * 0.02, randn(rng, 256)]
    compare_with_torch(
        lambda x, w, b: F.conv2d(x, w, b, stride, 1), lambda x, w, b: TF.conv2d(x, w, b, stride, 1),
        arrays, [0, 1, 2], np.float32, what="conv 256->256 float32",
    )
