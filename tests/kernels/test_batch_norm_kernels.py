"""Batch norm in training with two passes per channel (:mod:`mrcnn_np.kernels.batch_norm`,
``impl="numba"``) against its specification (:func:`mrcnn_np.nn.functional.batch_norm`,
``impl="numpy"``): output, running statistics, input, weight and bias gradients, float32 and
float64, (N, C, H, W) and (N, C) inputs, with and without the affine parameters, on one thread and
with the channels shared out over 2 and 3 threads (the same bits on any count: channels never
interact). The kernels sum in float64, the specification in the input's dtype, so they agree to
rounding (float64: 1e-12 relative; float32: 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.autograd import Tensor
from mrcnn_np.kernels import batch_norm as bn_kernels
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.nn import functional as F

from .test_conv_kernels import DTYPES, close, counting_hand_offs

# (input shape, affine)
CASES = [
    ((4, 6, 9, 7), True),
    ((1, 3, 5, 1), True),        # one image, one column
    ((2, 5, 3, 3), False),       # no weight and bias
    ((16, 8), True),             # (N, C): a norm after a linear layer
    ((3, 64, 32, 32), True),     # a tiny backbone's map: several channel ranges at the default size
]


def run(impl, x, w, b, running):
    """(out, d_input, d_weight, d_bias, running_mean, running_var) of ``batch_norm`` in training."""
    xt = Tensor(x, requires_grad=True)
    wt = None if w is None else Tensor(w, requires_grad=True)
    bt = None if b is None else Tensor(b, requires_grad=True)
    rm, rv = (r.copy() for r in running)
    out = F.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.1, eps=1e-5, impl=impl)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(x.dtype)
    (out * Tensor(g)).sum().backward()
    return (out.data, xt.grad, None if wt is None else wt.grad, None if bt is None else bt.grad, rm, rv)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{'' if c[1] else ' no affine'}")
def test_batch_norm_kernels_equal_the_specification(case, dtype, threads, monkeypatch):
    monkeypatch.setattr(kernel_threads, "THREADS", threads)
    shape, affine = case
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal(shape) + 2).astype(dtype)  # off-centre, so the mean matters
    C = shape[1]
    w = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    running = (rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype))
    expected, got = run("numpy", x, w, b, running), run("numba", x, w, b, running)
    names = ("out", "d_input", "d_weight", "d_bias", "running_mean", "running_var")
    for name, g, e in zip(names, got, expected, strict=True):
        if e is None:
            assert g is None, name
        else:
            assert g.dtype == e.dtype, name
            close(g, e, dtype)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


def test_channels_are_shared_out_and_give_the_same_bits_on_any_count(monkeypatch):
    """A (4, 64, 32, 32) map goes to both threads in two channel ranges; 1, 2 and 3 threads agree bit for bit."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 64, 32, 32)).astype(np.float32)
    w, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    running = (np.zeros(64, np.float32), np.ones(64, np.float32))
    shares = counting_hand_offs(monkeypatch, bn_kernels)
    results = []
    for count in (1, 2, 3):
        monkeypatch.setattr(kernel_threads, "THREADS", count)
        results.append(run("numba", x, w, b, running))
    assert shares == [1, 1, 2, 2, 3, 3]  # forward and backward per count
    for other in results[1:]:
        for got, first in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(got, first)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


def test_a_channel_of_one_value_is_refused_by_either_impl():
    for impl in ("numpy", "numba"):
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            F.batch_norm(np.ones((1, 3, 1, 1), np.float32), None, None, training=True, impl=impl)


def test_auto_is_the_kernels_on_the_host_and_the_specification_on_a_gpu(fake_gpu):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert F.BATCH_NORM_TRAIN.resolve("auto", x) == "numba"
    assert F.BATCH_NORM_TRAIN.resolve("auto", fake_gpu.asarray(x)) == "numpy"
    out = F.batch_norm(fake_gpu.asarray(x), None, None, training=True)
    np.testing.assert_array_equal(out.numpy(), F.batch_norm(x, None, None, training=True, impl="numpy").data)
