"""The CPU kernels with a parallel loop run it serially by default (:data:`mrcnn_np.kernels.PARALLEL`,
whose docstring gives the measurement); both versions compute each element with the same
arithmetic in the same order, so the parallel one equals the serial one bit for bit. The
serial versions are what the other kernel tests check against the NumPy specification."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import kernels
from mrcnn_np.kernels import box_iou as box_iou_kernels
from mrcnn_np.kernels import paste as paste_kernels
from mrcnn_np.kernels import roi_align as roi_align_kernels
from mrcnn_np.ops.roi_align import sampling_plan
from tests.kernels.strategies import box_set
from tests.kernels.test_paste import assert_bitwise, int_boxes


@pytest.fixture
def parallel(monkeypatch):
    """Run a function with the kernels' parallel loops, then serially: ``parallel(fn) -> (par, ser)``."""
    def both(fn):
        monkeypatch.setattr(kernels, "PARALLEL", True)
        par = fn()
        monkeypatch.setattr(kernels, "PARALLEL", False)
        return par, fn()
    return both


def test_serial_is_the_default():
    assert kernels.PARALLEL is False and kernels.parallel_cpu() is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_iou_parallel_equals_serial(dtype, parallel, monkeypatch):
    monkeypatch.setattr(box_iou_kernels, "PARALLEL_MIN", 0)
    b1, _ = box_set(0, 300, dtype)
    b2, _ = box_set(1, 200, dtype)
    assert_bitwise(*parallel(lambda: box_iou_kernels.box_iou_numba(b1, b2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paste_parallel_equals_serial(dtype, parallel):
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, (25, 30, 30)).astype(dtype)
    boxes = int_boxes(rng, 25, 90, 120)
    assert_bitwise(*parallel(lambda: paste_kernels.paste_masks_numba(masks, boxes, 90, 120)))


def roi_align_case(seed: int, dtype):
    """``(x, plan, g)``: features (2, 5, 24, 20), a sampling plan of 40 random boxes (some partly outside)
    for 7x7 bins, and an output gradient (40, 5, 7, 7)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, 24, 20)).astype(dtype)
    xy = rng.uniform(-5, 60, (40, 2))
    rois = np.concatenate([rng.integers(0, 2, (40, 1)), xy, xy + rng.uniform(1, 40, (40, 2))], axis=1).astype(dtype)
    plan = sampling_plan(rois, 0.5, (7, 7), 2, False, 24, 20, np.dtype(dtype))
    return x, plan, rng.standard_normal((40, 5, 7, 7)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_align_parallel_equals_serial(dtype, parallel):
    x, plan, g = roi_align_case(3, dtype)
    out = parallel(lambda: np.ascontiguousarray(roi_align_kernels.roi_align_numba(x, plan, (7, 7))))
    grad = parallel(lambda: np.ascontiguousarray(roi_align_kernels.roi_align_backward_numba(g, plan, x.shape)))
    assert_bitwise(*out)
    assert_bitwise(*grad)


@pytest.mark.parametrize("threads", [2, 3, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_align_on_the_kernel_threads_equals_one_thread(threads, dtype, monkeypatch):
    """With numba's threads off (the default), RoIAlign's forward shares its 40 boxes out over the threads of
    mrcnn_np.kernels.threads (runs of 20+20, 14+14+12, or 5 each on 8 threads) and its backward runs on one
    thread; the same bits."""
    from mrcnn_np.kernels import threads as kernel_threads

    x, plan, g = roi_align_case(4, dtype)
    shares = []
    monkeypatch.setattr(roi_align_kernels, "in_parallel", lambda work, chunks: shares.append(len(chunks)) or
                        kernel_threads.in_parallel(work, chunks))
    monkeypatch.setattr(roi_align_kernels, "MIN_PARALLEL", 0)

    def run(n):
        monkeypatch.setattr(kernel_threads, "THREADS", n)
        return (np.ascontiguousarray(roi_align_kernels.roi_align_numba(x, plan, (7, 7))),
                np.ascontiguousarray(roi_align_kernels.roi_align_backward_numba(g, plan, x.shape)))

    one, many = run(1), run(threads)
    assert shares == [1, threads]  # the forwards' runs of boxes; the backwards hand nothing off
    assert_bitwise(one[0], many[0])
    assert_bitwise(one[1], many[1])
    monkeypatch.undo()
    kernel_threads.cpu_threads()
