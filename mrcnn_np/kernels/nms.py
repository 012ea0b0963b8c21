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

Overlaps use the reference's operations in the boxes' dtype; the threshold comparison is
in float64, as torchvision's (double) threshold makes it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, uint64

from ..backend import get_array_module
from .device import to_cuda
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
    """mask[i, col] bit k <=> IoU(box i, box col*64 + k) > threshold, for k after i."""
    n = boxes.shape[0]
    row, col, t = cuda.blockIdx.y, cuda.blockIdx.x, cuda.threadIdx.x
    i = row * BLOCK + t
    if i >= n or col < row:  # earlier columns hold higher-scored boxes: never suppressed by i
        return
    bits = uint64(0)
    start = t + 1 if row == col else 0
    for k in range(start, min(BLOCK, n - col * BLOCK)):
        j = col * BLOCK + k
        w = max(min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]), zero)
        h = max(min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]), zero)
        inter = w * h
        area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
        union = area_i + area_j - inter
        if union > 0 and inter / union > threshold:  # 0/0 (two empty boxes) never suppresses
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
    xp = get_array_module(boxes)
    order = score_order(scores)
    sorted_boxes = to_cuda(boxes[order])
    n = len(order)
    blocks = math.ceil(n / BLOCK)
    mask = cuda.to_device(np.zeros((n, blocks), dtype=np.uint64))
    _overlap_mask[(blocks, blocks), BLOCK](sorted_boxes, boxes.dtype.type(0), np.float64(iou_threshold), mask)
    kept = _walk_masks(mask.copy_to_host())
    return order[xp.asarray(kept)].astype(np.int64)
