"""Numba RoIAlign (forward and backward) against the NumPy specification (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np import Tensor
from mrcnn_np.ops.roi_align import roi_align


def random_case(seed, n_boxes, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, int(rng.integers(1, 20)), int(rng.integers(1, 20)))).astype(dtype)
    xy = rng.uniform(-10, 40, (n_boxes, 2))
    boxes = np.concatenate([rng.integers(0, 2, (n_boxes, 1)), xy, xy + rng.uniform(0, 30, (n_boxes, 2))], axis=1)
    return rng, x, boxes.astype(dtype)


def forward_backward(x, rois, size, scale, sampling, aligned, impl, g):
    t = Tensor(x, requires_grad=True)
    out = roi_align(t, rois, size, scale, sampling, aligned, impl=impl)
    out.backward(g)
    return out.data, t.grad


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12), ph=st.integers(1, 8), pw=st.integers(1, 8),
       sampling=st.integers(-1, 3), aligned=st.booleans(), scale=st.sampled_from([1.0, 0.5, 0.25, 0.125]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_equals_numpy(seed, n, ph, pw, sampling, aligned, scale, dtype):
    rng, x, rois = random_case(seed, n, dtype)
    g = rng.standard_normal((n, 3, ph, pw)).astype(dtype)
    out, grad = forward_backward(x, rois, (ph, pw), scale, sampling, aligned, "numba", g)
    ref_out, ref_grad = forward_backward(x, rois, (ph, pw), scale, sampling, aligned, "numpy", g)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol * max(1.0, np.abs(ref_out).max(initial=0)))
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol * max(1.0, np.abs(ref_grad).max(initial=0)))


def loop_backward(g, plan, input_shape):
    """torchvision's CPU backward loop, literally: per box, bin, point and corner (in that order),
    ``grad[b, :, y, x] += g * w / count`` in the arrays' dtype. ``g`` is (R, C, ph, pw)."""
    y, x = plan.y, plan.x
    grad = np.zeros(input_shape, dtype=g.dtype)
    R, ph, gy = y.low.shape
    pw, gx = x.low.shape[1:]
    for r in range(R):
        b, n = plan.batch[r], plan.count[r]
        for p in range(ph):
            for q in range(pw):
                for iy in range(gy):
                    for ix in range(gx):
                        hy, ly, hx, lx = y.w_low[r, p, iy], y.w_high[r, p, iy], x.w_low[r, q, ix], x.w_high[r, q, ix]
                        y0, y1, x0, x1 = y.low[r, p, iy], y.high[r, p, iy], x.low[r, q, ix], x.high[r, q, ix]
                        for yy, xx, w in ((y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx)):
                            grad[b, :, yy, xx] += g[r, :, p, q] * w / n
    return grad


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), sampling=st.sampled_from([1, 2, 3, 4, -1]),
       aligned=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_backward_equals_torchvision_loop_bit_for_bit(seed, n, sampling, aligned, dtype):
    """The kernel multiplies by w * (1 / count) where count is a power of two (1, 4, 16 points) and
    divides otherwise: either way the same bits as torchvision's ``g * w / count``."""
    from mrcnn_np.kernels.roi_align import roi_align_backward_numba
    from mrcnn_np.ops.roi_align import sampling_plan

    rng, x, rois = random_case(seed, n, dtype)
    plan = sampling_plan(rois, 0.5, (3, 4), sampling, aligned, x.shape[2], x.shape[3], dtype)
    g = rng.standard_normal((n, 3, 3, 4)).astype(dtype)
    expected = loop_backward(g, plan, x.shape)
    np.testing.assert_array_equal(roi_align_backward_numba(g, plan, x.shape), expected)
