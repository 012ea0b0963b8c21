"""Numba box_iou and nms against the NumPy reference, on many random sets (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.ops import box_iou, nms
from tests.kernels.strategies import box_set

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n1=st.integers(0, 70), n2=st.integers(0, 40),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_box_iou_numba_equals_numpy(seed, n1, n2, dtype):
    b1, _ = box_set(seed, n1, dtype)
    b2, _ = box_set(seed + 1, n2, dtype)
    np.testing.assert_array_equal(box_iou(b1, b2, impl="numba"), box_iou(b1, b2, impl="numpy"))


def test_box_iou_numba_parallel_and_serial_loops_equal_numpy(monkeypatch):
    """Large outputs run the rows in parallel, small ones serially (PARALLEL_MIN): both are checked."""
    from mrcnn_np.kernels import box_iou as kernels

    b1, _ = box_set(3, 700, np.float32)
    b2, _ = box_set(4, 300, np.float32)
    expected = box_iou(b1, b2, impl="numpy")
    monkeypatch.setattr("mrcnn_np.kernels.PARALLEL", True)  # parallel CPU kernels switched on
    for threshold in (0, 10**9):
        monkeypatch.setattr(kernels, "PARALLEL_MIN", threshold)
        np.testing.assert_array_equal(box_iou(b1, b2, impl="numba"), expected)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), threshold=st.floats(0.0, 1.0),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_nms_numba_equals_numpy(seed, n, threshold, dtype):
    boxes, scores = box_set(seed, n, dtype)
    np.testing.assert_array_equal(nms(boxes, scores, threshold, impl="numba"),
                                  nms(boxes, scores, threshold, impl="numpy"))
