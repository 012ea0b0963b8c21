"""Each function's backward against float64 central differences (independent of torch)."""

from __future__ import annotations

import numpy as np
import pytest

import mrcnn_np.autograd as ag
import mrcnn_np.nn.functional as F
from tests.helpers import check_gradients


def rng(seed=0):
    return np.random.default_rng(seed)


def test_conv2d():
    r = rng(1)
    check_gradients(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=1),
                    [r.standard_normal((2, 2, 5, 6)), r.standard_normal((3, 2, 3, 3)), r.standard_normal(3)],
                    wrt=[0, 1, 2])


def test_conv2d_dilated_rect():
    r = rng(2)
    check_gradients(lambda x, w: F.conv2d(x, w, None, stride=(1, 2), padding=(2, 1), dilation=2),
                    [r.standard_normal((1, 2, 6, 7)), r.standard_normal((2, 2, 3, 2))], wrt=[0, 1])


def test_conv_transpose2d():
    r = rng(3)
    check_gradients(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                    [r.standard_normal((2, 2, 3, 4)), r.standard_normal((2, 3, 3, 3)), r.standard_normal(3)],
                    wrt=[0, 1, 2])


def test_linear():
    r = rng(4)
    check_gradients(F.linear, [r.standard_normal((2, 3, 5)), r.standard_normal((4, 5)), r.standard_normal(4)],
                    wrt=[0, 1, 2])


def test_relu():
    x = rng(5).standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink at 0
    check_gradients(F.relu, [x], wrt=[0])


@pytest.mark.parametrize("k,s,p,d", [(3, 2, 1, 1), (1, 2, 0, 1), (2, 2, 0, 1), (3, 1, 1, 2)])
def test_max_pool2d(k, s, p, d):
    x = rng(6).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0  # distinct values: no ties
    check_gradients(lambda t: F.max_pool2d(t, k, s, p, d), [x], wrt=[0])


def test_frozen_batch_norm2d():
    r = rng(7)
    w, b, m, v = r.standard_normal(3), r.standard_normal(3), r.standard_normal(3), r.uniform(0.5, 2, 3)
    check_gradients(lambda x: F.frozen_batch_norm2d(x, w, b, m, v), [r.standard_normal((2, 3, 4, 5))], wrt=[0])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 4, 3), (5, 2)])
def test_batch_norm(shape, training):
    r = rng(8)
    C = shape[1]
    mean, var = r.standard_normal(C), r.uniform(0.5, 2, C)

    def f(x, w, b):  # fresh running statistics each call: the update must not leak between calls
        return F.batch_norm(x, mean.copy(), var.copy(), w, b, training=training)

    check_gradients(f, [r.standard_normal(shape), r.standard_normal(C), r.standard_normal(C)], wrt=[0, 1, 2])


@pytest.mark.parametrize("kwargs", [
    dict(size=(9, 7), mode="nearest"),
    dict(size=(3, 5), mode="nearest"),
    dict(size=(9, 11), mode="bilinear", align_corners=False),
    dict(scale_factor=0.6, mode="bilinear", align_corners=False),
    dict(size=(7, 4), mode="bilinear", align_corners=True),
])
def test_interpolate(kwargs):
    check_gradients(lambda x: F.interpolate(x, **kwargs), [rng(9).standard_normal((2, 2, 5, 6))], wrt=[0])


def test_sigmoid():
    check_gradients(F.sigmoid, [rng(10).standard_normal((4, 5)) * 5], wrt=[0])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax(name, dim):
    check_gradients(lambda x: getattr(F, name)(x, dim), [rng(11).standard_normal((3, 4, 2))], wrt=[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction):
    r = rng(12)
    t = np.array([0, 3, -100, 2, 1])
    check_gradients(lambda x: F.cross_entropy(x, t, reduction=reduction), [r.standard_normal((5, 4))], wrt=[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(reduction):
    r = rng(13)
    w = r.uniform(0, 2, (3, 4))
    check_gradients(lambda x, t: F.binary_cross_entropy_with_logits(x, t, w, reduction=reduction),
                    [r.standard_normal((3, 4)) * 3, r.uniform(0, 1, (3, 4))], wrt=[0, 1])


@pytest.mark.parametrize("beta", [1 / 9, 1.0])
def test_smooth_l1_loss(beta):
    r = rng(14)
    x = r.standard_normal((4, 4))
    d = r.choice([-1, 1], (4, 4)) * r.uniform(0.01, 2, (4, 4))  # no difference sits on a kink
    d[np.abs(np.abs(d) - beta) < 1e-3] += 0.01
    check_gradients(lambda a, b: F.smooth_l1_loss(a, b, beta=beta, reduction="sum"), [x, x - d], wrt=[0, 1])


def test_l1_loss():
    r = rng(15)
    x = r.standard_normal((3, 5))
    d = r.choice([-1, 1], (3, 5)) * r.uniform(0.01, 1, (3, 5))
    check_gradients(F.l1_loss, [x, x - d], wrt=[0, 1])


# --- tensor operations ---------------------------------------------------------------------
def test_arithmetic_with_broadcasting():
    r = rng(16)
    check_gradients(lambda a, b, c: (a + b) * c - a / (c * c + 1) + (b - 2.0) ** 3,
                    [r.standard_normal((2, 3, 4)), r.standard_normal((3, 1)), r.standard_normal(4)],
                    wrt=[0, 1, 2])


def test_exp_log_matmul():
    r = rng(17)
    check_gradients(lambda a, b: ag.log(ag.exp(a @ b) + 1.0),
                    [r.standard_normal((2, 3, 4)), r.standard_normal((4, 5))], wrt=[0, 1])


def test_shape_ops():
    r = rng(18)

    def f(a, b):
        x = ag.concat([a, b], axis=1)  # (2, 5, 3)
        y = ag.permute(x, (2, 0, 1)).reshape(3, 10)  # (2, 5, 3) -> (3, 2, 5) -> (3, 10)
        return ag.stack([y, y * 2], axis=1)[:, 1, ::3]

    check_gradients(f, [r.standard_normal((2, 2, 3)), r.standard_normal((2, 3, 3))], wrt=[0, 1])


def test_indexing_with_repeats_and_masks():
    r = rng(19)
    idx = np.array([0, 2, 2, 1, 0])
    mask = np.array([True, False, True, True])

    def f(a):
        return ag.concat([a[idx].reshape(-1), a[:, mask].reshape(-1), a[1:, -1]], axis=0)

    check_gradients(f, [r.standard_normal((3, 4))], wrt=[0])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), ((0, 2), True), (-1, True)])
def test_reductions(axis, keepdims):
    x = rng(20).standard_normal((2, 3, 4))
    check_gradients(lambda a: ag.sum(a, axis, keepdims) * 2 + ag.mean(a, axis, keepdims), [x], wrt=[0])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [2, -1])
def test_roi_align(aligned, sampling):
    from mrcnn_np.ops.roi_align import roi_align

    rois = np.array([[0, 1.3, 2.2, 9.7, 7.1], [1, -2.0, 3.5, 4.4, 12.0], [0, 6.1, 0.4, 7.0, 2.9]])
    check_gradients(lambda x: roi_align(x, rois, (3, 2), 0.5, sampling, aligned, impl="numpy"),
                    [rng(21).standard_normal((2, 2, 6, 7))], wrt=[0])
