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
