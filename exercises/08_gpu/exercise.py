"""Exercise 08 -- GPU kernels with numba.cuda: pairwise IoU, a flat thread index, RoIAlign forward.

Write the kernels and their launchers below (tasks a-c in README.md) with NumPy and numba.cuda,
then run

    mrcnn-np check 08                      # grades this file
    mrcnn-np check 08 --path my_copy.py    # grades your copy

No GPU is needed: without one, the grader runs your kernels in numba.cuda's simulator, thread by
thread, on the CPU (slowly: the grader's cases are small). Launchers take and return host
(NumPy) arrays; what crosses to the GPU and back is theirs to do. Arrays are float64 or float32:
compute in the dtype you are given.
"""

import math  # noqa: F401  (math.ceil may help)

import numpy as np  # noqa: F401  (you will need it)
from numba import cuda


# --- task (a) ----------------------------------------------------------------------------------
@cuda.jit
def box_iou_kernel(b1, b2, out):
    """Thread (i, j) computes out[i, j] = IoU(b1[i], b2[j]); a thread without an element does nothing.

    b1 (n, 4), b2 (m, 4): boxes ``x1, y1, x2, y2``; out (n, m), written here. The thread's
    (x, y) is ``cuda.grid(2)``: x is the column j, y the row i. IoU as mrcnn_np.ops.box_iou:
    the overlap's width and height clamped at 0, inter = w * h, union = area_i + area_j - inter,
    IoU = inter / union, and 0 where union is 0.
    """
    raise NotImplementedError("task (a): write box_iou_kernel")


def box_iou(boxes1, boxes2):
    """(n, 4), (m, 4) host arrays of one float dtype -> (n, m) host array of that dtype.

    Launches box_iou_kernel on a 2-D grid with a thread for every element of the output. n or
    m may be 0: then return the empty (n, m) array without launching (a GPU refuses a grid of
    0 blocks).
    """
    raise NotImplementedError("task (a): write box_iou")


# --- task (b) ----------------------------------------------------------------------------------
@cuda.jit(device=True)
def element_index(k, C, PH, PW):
    """The flat index k of an element of a C-ordered (R, C, PH, PW) array -> its (r, c, p, q).

    C order: the last index, q, varies fastest, as ``np.unravel_index(k, (R, C, PH, PW))``.
    A device function: kernels call it; the grader calls it too (its Python function, on the host).
    """
    raise NotImplementedError("task (b): write element_index")


# --- task (c) ----------------------------------------------------------------------------------
@cuda.jit
def roi_align_kernel(features, batch, y_low, y_high, y_w_low, y_w_high, x_low, x_high, x_w_low, x_w_high, count,
                     out):
    """Thread k computes element k of out (R, C, PH, PW), out[r, c, p, q]; one without an element does nothing.

    The arguments are the plan's arrays (README.md, task (c)); these are a suggestion, the
    grader checks only what roi_align returns. With b = batch[r], the sum over the points iy of
    bin p (along y) and ix of bin q (along x) of

        y_w_low * x_w_low * features[b, c, y_low, x_low]  + y_w_low * x_w_high * features[b, c, y_low, x_high]
      + y_w_high * x_w_low * features[b, c, y_high, x_low] + y_w_high * x_w_high * features[b, c, y_high, x_high]

    (y taps at [r, p, iy], x taps at [r, q, ix]), divided by count[r].
    """
    raise NotImplementedError("task (c): write roi_align_kernel")


def roi_align(features, plan, output_size):
    """(N, C, H, W) host features, a SamplingPlan, (PH, PW) -> (R, C, PH, PW) host array of the features' dtype.

    ``plan`` is ``mrcnn_np.ops.roi_align.sampling_plan(...)``: ``plan.batch`` (R,), ``plan.y`` and
    ``plan.x`` (each ``low, high, w_low, w_high``, arrays (R, PH, G_y) and (R, PW, G_x)),
    ``plan.count`` (R,). Launches roi_align_kernel on a 1-D grid, a thread per output element.
    R may be 0: return the empty (0, C, PH, PW) array without launching.
    """
    raise NotImplementedError("task (c): write roi_align")
