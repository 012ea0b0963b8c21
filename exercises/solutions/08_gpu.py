"""Reference solution of exercise 08 (GPU kernels with numba.cuda). Try the exercise before reading this.

NumPy and numba.cuda, written to be read: one thread per output element, host arrays in and
out. The library's kernels (mrcnn_np/kernels/box_iou.py, mrcnn_np/kernels/roi_align.py) are
the same kernels with what a model needs around them: CuPy arrays shared without a copy, the
CuPy stream, and products that the compiler may not fuse into FMAs (mrcnn_np/kernels/device.py).
"""

import math

import numpy as np
from numba import cuda

THREADS_2D = (16, 16)  # (x, y) threads per block of box_iou: 256, eight warps, each half a row of 32
THREADS = 128  # threads per block of roi_align's 1-D grid: four warps


# --- task (a) ----------------------------------------------------------------------------------
@cuda.jit
def box_iou_kernel(b1, b2, out):
    """out[i, j] = IoU(b1[i], b2[j]): thread x is the column j, thread y the row i."""
    j, i = cuda.grid(2)  # x is the fastest index: the 32 threads of a warp write 32 neighbours of a row
    if i < out.shape[0] and j < out.shape[1]:  # the grid is rounded up to whole blocks
        area_i = (b1[i, 2] - b1[i, 0]) * (b1[i, 3] - b1[i, 1])
        area_j = (b2[j, 2] - b2[j, 0]) * (b2[j, 3] - b2[j, 1])
        w = min(b1[i, 2], b2[j, 2]) - max(b1[i, 0], b2[j, 0])  # the overlap's width, < 0 when apart
        h = min(b1[i, 3], b2[j, 3]) - max(b1[i, 1], b2[j, 1])
        inter = max(w, 0) * max(h, 0)
        union = area_i + area_j - inter  # the reference's order: the same bits
        out[i, j] = inter / union if union > 0 else 0  # two boxes of zero area: 0, not 0 / 0


def box_iou(boxes1, boxes2):
    """(n, 4), (m, 4) host arrays -> (n, m) host array of their dtype, one GPU thread per element."""
    n, m = len(boxes1), len(boxes2)
    if n == 0 or m == 0:  # a grid of 0 blocks is an error on a GPU: nothing to launch
        return np.zeros((n, m), dtype=boxes1.dtype)
    out = cuda.to_device(np.zeros((n, m), dtype=boxes1.dtype))
    blocks = (math.ceil(m / THREADS_2D[0]), math.ceil(n / THREADS_2D[1]))  # x covers the m columns, y the n rows
    box_iou_kernel[blocks, THREADS_2D](cuda.to_device(boxes1), cuda.to_device(boxes2), out)
    return out.copy_to_host()


# --- task (b) ----------------------------------------------------------------------------------
@cuda.jit(device=True)
def element_index(k, C, PH, PW):
    """Flat index k of an element of a C-ordered (R, C, PH, PW) array -> (r, c, p, q), q fastest."""
    q = k % PW
    p = (k // PW) % PH
    c = (k // (PW * PH)) % C
    r = k // (PW * PH * C)
    return r, c, p, q


# --- task (c) ----------------------------------------------------------------------------------
@cuda.jit
def roi_align_kernel(features, batch, y_low, y_high, y_w_low, y_w_high, x_low, x_high, x_w_low, x_w_high, count,
                     out):
    """out[r, c, p, q]: the mean over bin (p, q)'s sample points of their bilinear reads of channel c."""
    k = cuda.grid(1)
    R, C, PH, PW = out.shape
    if k < R * C * PH * PW:
        r, c, p, q = element_index(k, C, PH, PW)
        b = batch[r]  # the box's image
        acc = 0.0
        for iy in range(y_low.shape[2]):  # every point of the plan: those past a box's own grid weigh 0
            y0, y1, wy0, wy1 = y_low[r, p, iy], y_high[r, p, iy], y_w_low[r, p, iy], y_w_high[r, p, iy]
            for ix in range(x_low.shape[2]):
                x0, x1, wx0, wx1 = x_low[r, q, ix], x_high[r, q, ix], x_w_low[r, q, ix], x_w_high[r, q, ix]
                acc += (wy0 * wx0 * features[b, c, y0, x0] + wy0 * wx1 * features[b, c, y0, x1]
                        + wy1 * wx0 * features[b, c, y1, x0] + wy1 * wx1 * features[b, c, y1, x1])
        out[r, c, p, q] = acc / count[r]


def roi_align(features, plan, output_size):
    """(N, C, H, W) host features, a SamplingPlan -> (R, C, PH, PW) host array, one thread per element."""
    PH, PW = output_size
    R, C = len(plan.batch), features.shape[1]
    if R == 0:  # no box: nothing to launch
        return np.zeros((0, C, PH, PW), dtype=features.dtype)
    out = cuda.to_device(np.zeros((R, C, PH, PW), dtype=features.dtype))
    taps = (*plan.y, *plan.x)  # low, high, w_low, w_high along y, then along x
    args = [cuda.to_device(np.ascontiguousarray(a)) for a in (features, plan.batch, *taps, plan.count)]
    blocks = math.ceil(R * C * PH * PW / THREADS)
    roi_align_kernel[blocks, THREADS](*args, out)
    return out.copy_to_host()
