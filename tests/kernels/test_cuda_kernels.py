"""numba.cuda box_iou, nms and RoIAlign against the NumPy reference, on NumPy arrays: the
host path of :mod:`mrcnn_np.kernels.device` (copies in, device-side zeros, copies out).

Marked ``cudasim``: scripts/test.sh runs these in their own pytest process with
NUMBA_ENABLE_CUDASIM=1 (the simulator must be chosen before numba is imported), and on a
machine with a GPU they run on the device when that variable is not set.

The CuPy path (zero-copy hand-off, CuPy allocations, CuPy's stream) is in
test_cuda_handoff.py: under the simulator against a stand-in for CuPy; the real
``cuda.as_cuda_array`` / ``cuda.external_stream`` hand-off runs only on a GPU (that file
with real CuPy, and benchmarks/gpu_check.py). test_ptx.py compiles every kernel for sm_90.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from mrcnn_np.ops import box_iou, nms
from tests.kernels.strategies import box_set

pytestmark = pytest.mark.cudasim


def test_a_cuda_target_is_present():
    """Fails (never skips) when neither the simulator nor a GPU is there."""
    assert cuda.is_available(), "run with NUMBA_ENABLE_CUDASIM=1 or on a machine with a CUDA GPU"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_iou_cuda_equals_numpy(seed, dtype):
    b1, _ = box_set(seed, 37, dtype)
    b2, _ = box_set(seed + 100, 21, dtype)
    np.testing.assert_array_equal(box_iou(b1, b2, impl="cuda"), box_iou(b1, b2, impl="numpy"))


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 5), (2, 63), (3, 64), (4, 65), (5, 150)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_cuda_equals_numpy(seed, n, dtype):
    """Sizes around the 64-box block edge, where the bitmask bookkeeping can go wrong."""
    boxes, scores = box_set(seed, n, dtype)
    for threshold in (0.3, 0.7):
        np.testing.assert_array_equal(nms(boxes, scores, threshold, impl="cuda"),
                                      nms(boxes, scores, threshold, impl="numpy"))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sampling,aligned", [(2, False), (-1, True)])
def test_roi_align_cuda_equals_numpy(seed, dtype, sampling, aligned):
    from mrcnn_np import Tensor
    from mrcnn_np.ops.roi_align import roi_align

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    xy = rng.uniform(-5, 30, (5, 2))
    rois = np.concatenate([rng.integers(0, 2, (5, 1)), xy, xy + rng.uniform(0, 25, (5, 2))], axis=1).astype(dtype)
    g = rng.standard_normal((5, 3, 3, 2)).astype(dtype)
    results = []
    for impl in ("cuda", "numpy"):
        t = Tensor(x, requires_grad=True)
        out = roi_align(t, rois, (3, 2), 0.5, sampling, aligned, impl=impl)
        out.backward(g)
        results.append((out.data, t.grad))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for ours, ref in zip(results[0], results[1], strict=True):
        assert type(ours) is np.ndarray and ours.flags.c_contiguous  # NCHW, written in place: no transposed view
        np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)
