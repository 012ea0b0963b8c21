"""Pairwise IoU kernels; the specification is :func:`mrcnn_np.ops.boxes.box_iou_numpy`.

``box_iou_numba``: one pass over the (R1, R2) output, rows in parallel (``prange``); no
(R1, R2, 2) temporaries as the vectorised form needs, which is what makes it fast.
``box_iou_cuda``: one GPU thread per output element.
Both evaluate the overlap with the reference's operations in the reference's order, in
the boxes' dtype (``zero`` is passed typed so that float32 never widens to float64).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, prange

from .device import from_cuda, to_cuda


@njit(parallel=True, cache=True, error_model="numpy")
def _box_iou_cpu(b1, b2, zero, out):
    for i in prange(b1.shape[0]):
        area1 = (b1[i, 2] - b1[i, 0]) * (b1[i, 3] - b1[i, 1])
        for j in range(b2.shape[0]):
            area2 = (b2[j, 2] - b2[j, 0]) * (b2[j, 3] - b2[j, 1])
            w = max(min(b1[i, 2], b2[j, 2]) - max(b1[i, 0], b2[j, 0]), zero)
            h = max(min(b1[i, 3], b2[j, 3]) - max(b1[i, 1], b2[j, 1]), zero)
            inter = w * h
            union = area1 + area2 - inter
            out[i, j] = inter / union if union > 0 else 0


def box_iou_numba(boxes1, boxes2):
    out = np.empty((len(boxes1), len(boxes2)), dtype=boxes1.dtype)
    _box_iou_cpu(np.ascontiguousarray(boxes1), np.ascontiguousarray(boxes2), boxes1.dtype.type(0), out)
    return out


@cuda.jit(cache=True)
def _box_iou_gpu(b1, b2, zero, out):
    i, j = cuda.grid(2)
    if i < b1.shape[0] and j < b2.shape[0]:
        area1 = (b1[i, 2] - b1[i, 0]) * (b1[i, 3] - b1[i, 1])
        area2 = (b2[j, 2] - b2[j, 0]) * (b2[j, 3] - b2[j, 1])
        w = max(min(b1[i, 2], b2[j, 2]) - max(b1[i, 0], b2[j, 0]), zero)
        h = max(min(b1[i, 3], b2[j, 3]) - max(b1[i, 1], b2[j, 1]), zero)
        inter = w * h
        union = area1 + area2 - inter
        out[i, j] = inter / union if union > 0 else 0


def box_iou_cuda(boxes1, boxes2):
    """Runs on the GPU (or the simulator); returns an array of the inputs' kind (CuPy or NumPy)."""
    d1, d2 = to_cuda(boxes1), to_cuda(boxes2)
    out = cuda.device_array((len(boxes1), len(boxes2)), dtype=boxes1.dtype)
    threads = (16, 16)
    blocks = (math.ceil(len(boxes1) / 16), math.ceil(len(boxes2) / 16))
    _box_iou_gpu[blocks, threads](d1, d2, boxes1.dtype.type(0), out)
    return from_cuda(out, boxes1)
