"""The fully connected layer with its products' rows on the CPU threads (:mod:`mrcnn_np.kernels.linear`,
``impl="numba"``) against its specification (:func:`mrcnn_np.nn.functional.linear`, ``impl="numpy"``):
output, input, weight and bias gradients, float32 and float64, 2-D and 3-D inputs, with and without
a bias, no rows at all, on one thread and with every product of two or more rows shared out over 2
and 3 threads. Each output value has the specification's whole reduction, so one thread is the
specification bit for bit and more agree to rounding (float64: 1e-12 relative; float32: 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.autograd import Tensor
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.nn import functional as F

from .test_conv_kernels import DTYPES, close, close_and_repeated, counting_hand_offs

# (input shape, out_features, bias)
CASES = [
    ((7, 5), 3, True),
    ((64, 300), 48, True),       # a box head's fc: rows shared out
    ((2, 9, 6), 11, True),       # (*, in): the leading dimensions kept
    ((33, 17), 20, False),       # no bias; rows not a multiple of any block
    ((1, 8), 4, True),           # one row: nothing to share
    ((0, 8), 4, True),           # no RoIs: empty results
]


@pytest.fixture(params=[1, 2, 3])
def threads(request, monkeypatch):
    """``THREADS`` for the test; with more than one, every product of two or more rows shared out."""
    monkeypatch.setattr(kernel_threads, "THREADS", request.param)
    monkeypatch.setattr(kernel_threads, "MIN_PARALLEL_MACS", 1)
    monkeypatch.setattr(kernel_threads, "ROW_BLOCK", 1)
    yield request.param
    monkeypatch.undo()
    kernel_threads.cpu_threads()  # THREADS back as it was: BLAS held (or given back) accordingly


def run(impl, x, w, b):
    """(out, d_input, d_weight, d_bias) of ``linear`` with ``impl``, for a fixed output gradient."""
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    bt = None if b is None else Tensor(b, requires_grad=True)
    out = F.linear(xt, wt, bt, impl=impl)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(x.dtype)
    (out * Tensor(g)).sum().backward()
    return out.data, xt.grad, wt.grad, None if bt is None else bt.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}->{c[1]}{'' if c[2] else ' no bias'}")
def test_linear_on_threads_equals_the_specification(case, dtype, threads):
    shape, out_features, with_bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((out_features, shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    expected, got = run("numpy", x, w, b), run("numba", x, w, b)
    for name, g, e in zip(("out", "d_input", "d_weight", "d_bias"), got, expected, strict=True):
        if e is None:
            assert g is None, name
        elif threads == 1:  # the same products as the specification's
            assert g.shape == e.shape and g.dtype == e.dtype, name
            np.testing.assert_array_equal(g, e, err_msg=name)
        else:
            close(g, e, dtype)


def test_a_box_head_fc_shares_its_rows_and_repeats_bit_for_bit(monkeypatch):
    """fc6 of the demo's box head at full size (256 RoIs of 64x7x7 -> 256): at the default
    thresholds each of its three products is split over two threads; the result is the
    specification's to rounding and the same call gives the same bits every time."""
    monkeypatch.setattr(kernel_threads, "THREADS", 2)
    shares = counting_hand_offs(monkeypatch, kernel_threads)
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((256, 3136), (256, 3136), (256,)))
    spec = run("numpy", x, w, b)
    fast = [run("numba", x, w, b) for _ in range(2)]
    assert shares == [2, 2, 2] * len(fast)  # out, d_input, d_weight
    close_and_repeated(fast, spec, np.float32)
    monkeypatch.undo()
    kernel_threads.cpu_threads()


def test_auto_is_the_threaded_products_on_the_host_and_the_specification_on_a_gpu(fake_gpu):
    """There is no device version: on CuPy arrays ``auto`` is the specification, which runs there."""
    x, w = np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    assert F.LINEAR.resolve("auto", x) == "numba"
    assert F.LINEAR.resolve("auto", fake_gpu.asarray(x)) == "numpy"
    out = F.linear(fake_gpu.asarray(x), fake_gpu.asarray(w))
    np.testing.assert_array_equal(out.numpy(), x @ w.T)
