"""NMS kernels; the specification is :func:`mrcnn_np.ops.nms.nms_numpy`.

``nms_numba``: torchvision's greedy loop, compiled, over coordinates gathered once into
score order. Visiting contiguous arrays (instead of indexing through ``order`` as
torchvision's C++ does) keeps the inner loop in cache, which is what makes it fast.

``nms_cuda``: the bitmask scheme of torchvision's CUDA kernel. Boxes (in score order)
are split into blocks of 64; GPU thread ``t`` of block (row, col) compares box
``row*64 + t`` with the 64 boxes of block ``col`` and sets bit ``k`` of a 64-bit word when
their IoU exceeds the threshold. The host then walks the boxes in order once, keeping a box
unless a kept box's word has its bit set -- the same greedy decision, with all the
quadratic work done in parallel.

What makes the GPU kernel fast: the quadratic part is one launch, and within a block all 64
threads read the same box ``j`` at each step (a broadcast load served by the cache) while
each keeps its own box ``i`` in registers. The mask goes to the host once (n x blocks words);
only the walk, linear in n, is sequential, as in torchvision.

As in :mod:`.box_iou`, the GPU kernel's products are :func:`~.device.mul_rn` (no FMA: the
same IoU as the reference, bit for bit, so the same boxes are kept; ``EXACT``) and
``max``/``min`` are written as comparisons (so that ``compile_ptx`` works without a GPU on
the numba.cuda built into numba too).

Overlaps use the reference's operations in the boxes' dtype; the threshold comparison is
in float64, as torchvision's (double) threshold makes it: in the float32 kernel that is the
one documented float64 arithmetic (``FLOAT64_IN_FLOAT32``, checked in the PTX).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, njit, uint64

from .device import Launcher, mul_rn
from .order import score_order

BLOCK = 64  # boxes per block = bits per mask word


@njit(cache=True, error_model="numpy")
def _greedy_nms_sorted(x1, y1, x2, y2, zero, threshold):
    """Greedy NMS over boxes already in decreasing score order; kept positions (K,)."""
    n = x1.shape[0]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(n, dtype=np.bool_)
    keep = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if suppressed[i]:
            continue
        keep[k] = i
        k += 1
        for j in range(i + 1, n):
            if suppressed[j]:
                continue
            w = max(min(x2[i], x2[j]) - max(x1[i], x1[j]), zero)
            h = max(min(y2[i], y2[j]) - max(y1[i], y1[j]), zero)
            inter = w * h
            if inter / (areas[i] + areas[j] - inter) > threshold:
                suppressed[j] = True
    return keep[:k]


def nms_numba(boxes, scores, iou_threshold: float):
    order = score_order(scores)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, c]) for c in range(4))
    kept = _greedy_nms_sorted(x1, y1, x2, y2, boxes.dtype.type(0), np.float64(iou_threshold))
    return order[kept].astype(np.int64)


@cuda.jit(cache=True)
def _overlap_mask(boxes, zero, threshold, mask):
    """mask[i, col] bit k <=> IoU(box i, box col*64 + k) > threshold, for k after i.

    Block (row, col), thread t: box ``i = row*64 + t`` against the 64 boxes of block ``col``.
    Blocks left of the diagonal return at once and leave their words unwritten: the walk never
    reads them (earlier columns hold higher-scored boxes, never suppressed by a later one).
    """
    n = boxes.shape[0]
    row, col, t = cuda.blockIdx.y, cuda.blockIdx.x, cuda.threadIdx.x
    i = row * BLOCK + t
    if i >= n or col < row:
        return
    area_i = mul_rn(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1])
    bits = uint64(0)
    start = t + 1 if row == col else 0
    stop = n - col * BLOCK if n - col * BLOCK < BLOCK else BLOCK  # min(): see the module doc
    for k in range(start, stop):
        j = col * BLOCK + k
        left = boxes[i, 0] if boxes[i, 0] > boxes[j, 0] else boxes[j, 0]  # max(x1), min(x2) ...
        right = boxes[i, 2] if boxes[i, 2] < boxes[j, 2] else boxes[j, 2]
        top = boxes[i, 1] if boxes[i, 1] > boxes[j, 1] else boxes[j, 1]
        bottom = boxes[i, 3] if boxes[i, 3] < boxes[j, 3] else boxes[j, 3]
        w, h = right - left, bottom - top
        inter = mul_rn(w if w > zero else zero, h if h > zero else zero)
        area_j = mul_rn(boxes[j, 2] - boxes[j, 0], boxes[j, 3] - boxes[j, 1])
        union = area_i + area_j - inter
        if union > zero and inter / union > threshold:  # 0/0 (two empty boxes) never suppresses
            bits |= uint64(1) << uint64(k)
    mask[i, col] = bits


@njit(cache=True)
def _walk_masks(mask):
    """The sequential part: keep box i unless a kept box's mask has bit i set."""
    n, blocks = mask.shape
    removed = np.zeros(blocks, dtype=np.uint64)
    keep = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if (removed[i // BLOCK] >> np.uint64(i % BLOCK)) & np.uint64(1):
            continue
        keep[k] = i
        k += 1
        for b in range(i // BLOCK, blocks):
            removed[b] |= mask[i, b]
    return keep[:k]


def nms_cuda(boxes, scores, iou_threshold: float):
    """Kept indices (K,) int64, an array of the inputs' kind (CuPy or NumPy)."""
    run = Launcher(boxes, scores)
    order = score_order(scores)
    n = len(order)
    blocks = math.ceil(n / BLOCK)
    mask = run.empty((n, blocks), np.uint64)  # every word the walk reads is written
    run.launch(_overlap_mask, (blocks, blocks), BLOCK,
               run.input(boxes[order]), boxes.dtype.type(0), np.float64(iou_threshold), mask)
    kept = _walk_masks(run.to_host(mask))  # the one device-to-host copy (and sync) of the call
    return order[run.xp.asarray(kept)].astype(np.int64)


# numba.cuda kernels of this module -> their argument types for a float type f (float32 or
# float64); tests/kernels/test_ptx.py compiles each to PTX for sm_90 in both.
CUDA_KERNELS = {
    "_overlap_mask": lambda f: (f[:, ::1], f, float64, uint64[:, ::1]),
}
EXACT = {"_overlap_mask"}  # the reference's IoU bit for bit: no FMA in the PTX
# the float64 arithmetic a float32 kernel does on purpose, as PTX opcodes: the float32 IoU is
# widened and compared with the float64 threshold (as the reference and torchvision compare)
# (``setp.f64`` stands for any float64 comparison: the compiler may test the negation, ``leu``)
FLOAT64_IN_FLOAT32 = {
    "_overlap_mask": {"ld.param.f64": "the threshold argument", "cvt.f64.f32": "the IoU, widened",
                      "setp.f64": "IoU > threshold"},
}
