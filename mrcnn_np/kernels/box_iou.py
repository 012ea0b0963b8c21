"""Pairwise IoU kernels; the specification is :func:`mrcnn_np.ops.boxes.box_iou_numpy`.

``box_iou_numba``: one pass over the (R1, R2) output, rows in parallel (``prange``); no
(R1, R2, 2) temporaries as the vectorised form needs, which is what makes it fast. The rows run
serially unless parallel CPU kernels are switched on (:mod:`mrcnn_np.kernels`) and the output
has at least :data:`PARALLEL_MIN` elements (anchors against a few ground-truth boxes, as
training matches them, are far fewer: starting a parallel region costs more than such a matrix).

``box_iou_cuda``: one GPU thread per output element ``out[i, j]``, the column ``j`` on the
fastest thread index, so the 32 threads of a warp write 32 neighbouring elements of a row
(one coalesced store) and all read the same box ``i`` (one broadcast load).

Both evaluate the overlap with the reference's operations in the reference's order, in
the boxes' dtype (``zero`` is passed typed, and every literal is that ``zero``, so that
float32 never widens to float64: tests/kernels/test_ptx.py checks the PTX). On the GPU the
products are :func:`~.device.mul_rn`, which the compiler cannot fuse with the following
additions into FMAs (one rounding fewer, a different last bit): the result equals the
reference bit for bit (``EXACT``, checked in the PTX). ``max``/``min`` are written as
comparisons (the same values: coordinates are finite), because the numba.cuda built into
numba compiles Python's ``max``/``min`` as device functions, which ``compile_ptx`` cannot do
without a GPU present.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, prange

from . import parallel_cpu
from .device import Launcher, mul_rn


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
            out[i, j] = inter / union if union > zero else zero


_box_iou_cpu_serial = njit(cache=True, error_model="numpy")(_box_iou_cpu.py_func)  # prange runs as range
PARALLEL_MIN = 1 << 17  # output elements from which the rows may be computed in parallel


def box_iou_numba(boxes1, boxes2):
    out = np.empty((len(boxes1), len(boxes2)), dtype=boxes1.dtype)
    kernel = _box_iou_cpu if parallel_cpu() and out.size >= PARALLEL_MIN else _box_iou_cpu_serial
    kernel(np.ascontiguousarray(boxes1), np.ascontiguousarray(boxes2), boxes1.dtype.type(0), out)
    return out


@cuda.jit(cache=True)
def _box_iou_gpu(b1, b2, zero, out):
    """out[i, j] = IoU(b1[i], b2[j]); thread x -> column j, thread y -> row i."""
    j, i = cuda.grid(2)
    if i < b1.shape[0] and j < b2.shape[0]:
        area1 = mul_rn(b1[i, 2] - b1[i, 0], b1[i, 3] - b1[i, 1])
        area2 = mul_rn(b2[j, 2] - b2[j, 0], b2[j, 3] - b2[j, 1])
        left = b1[i, 0] if b1[i, 0] > b2[j, 0] else b2[j, 0]  # max(x1), min(x2) ...: see the module doc
        right = b1[i, 2] if b1[i, 2] < b2[j, 2] else b2[j, 2]
        top = b1[i, 1] if b1[i, 1] > b2[j, 1] else b2[j, 1]
        bottom = b1[i, 3] if b1[i, 3] < b2[j, 3] else b2[j, 3]
        w, h = right - left, bottom - top
        inter = mul_rn(w if w > zero else zero, h if h > zero else zero)
        union = area1 + area2 - inter
        out[i, j] = inter / union if union > zero else zero


THREADS = (32, 8)  # (columns, rows) per block: a warp spans 32 columns of one row


def box_iou_cuda(boxes1, boxes2):
    """Runs on the GPU (or the simulator); returns an array of the inputs' kind (CuPy or NumPy)."""
    run = Launcher(boxes1, boxes2)
    out = run.empty((len(boxes1), len(boxes2)), boxes1.dtype)  # every element is written
    blocks = (math.ceil(len(boxes2) / THREADS[0]), math.ceil(len(boxes1) / THREADS[1]))
    run.launch(_box_iou_gpu, blocks, THREADS, run.input(boxes1), run.input(boxes2), boxes1.dtype.type(0), out)
    return run.result(out)


# numba.cuda kernels of this module -> their argument types for a float type f (float32 or
# float64); tests/kernels/test_ptx.py compiles each to PTX for sm_90 in both.
CUDA_KERNELS = {
    "_box_iou_gpu": lambda f: (f[:, ::1], f[:, ::1], f, f[:, ::1]),
}
EXACT = {"_box_iou_gpu"}  # equal to the NumPy reference bit for bit: no FMA in the PTX
