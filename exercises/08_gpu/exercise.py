"""Exercise 08 -- GPU kernels with numba.cuda: pairwise IoU, a flat thread index, RoIAlign forward.

Write the kernels and their launchers below (tasks a-c in README.md) with NumPy and numba.cuda,
then run

    mrcnn-np check 08                      # grades this file
    mrcnn-np check 08 --path my_copy.py    # grades your copy
    mrcnn-np check 08 --hint               # one more hint for the first task that does not pass

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
    """A kernel on a 2-D grid: the thread at ``cuda.grid(2)`` (x, y) writes out[y, x], the IoU of b1[y]
    and b2[x] (x is the column j, y the row i); a thread without an element writes nothing.

    b1 (n, 4), b2 (m, 4): boxes ``x1, y1, x2, y2`` of one float dtype; out (n, m) of that dtype,
    written here. The IoU is mrcnn_np.ops.box_iou(impl="numpy")'s, bit for bit in the simulator:
    the overlap's area (its width and height each clamped at 0) over the union, the sum of the
    two areas minus the overlap, evaluated in that order (area_i + area_j - inter); 0 where
    the union is 0 (two boxes of zero area).
    """
    raise NotImplementedError("task (a): write box_iou_kernel")


def box_iou(boxes1, boxes2):
    """(n, 4), (m, 4) host arrays of one float dtype -> (n, m) host array of that dtype: pairwise IoU.

    Launches box_iou_kernel on a 2-D grid of whole blocks, with at least one thread per element
    of the output, x along the m columns. n or m may be 0: then return the empty (n, m) array
    without launching (a GPU refuses a grid of 0 blocks).
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
    """A kernel on a 1-D grid: thread k writes element k (C order) of out (R, C, PH, PW), out[r, c, p, q];
    a thread without an element writes nothing.

    The arguments are the plan's arrays (README.md, task (c)); they are a suggestion, the grader
    checks only what roi_align returns. out[r, c, p, q] is RoIAlign's bin (p, q) of channel c of
    box r, read on image batch[r]: the bilinear reads of the bin's sample points, each the four
    taps (rows y_low / y_high at [r, p, iy] with weights y_w_low / y_w_high, columns x_low /
    x_high at [r, q, ix] with x_w_low / x_w_high, a tap weighing the product of its two weights),
    summed over every iy < G_y and ix < G_x of the plan and divided by count[r]. Points past a
    box's own grid have weights 0.
    """
    raise NotImplementedError("task (c): write roi_align_kernel")


def roi_align(features, plan, output_size):
    """(N, C, H, W) host features, a SamplingPlan, (PH, PW) -> (R, C, PH, PW) host array of the features' dtype.

    ``plan`` is ``mrcnn_np.ops.roi_align.sampling_plan(...)``: ``plan.batch`` (R,), ``plan.y`` and
    ``plan.x`` (each ``low, high, w_low, w_high``, arrays (R, PH, G_y) and (R, PW, G_x)),
    ``plan.count`` (R,). Returns ``mrcnn_np.ops.roi_align.roi_align_numpy``'s output (to 1e-12 in
    float64, 1e-5 in float32). Launches roi_align_kernel on a 1-D grid of whole blocks, at least
    a thread per output element. R may be 0: return the empty (0, C, PH, PW) array without
    launching.
    """
    raise NotImplementedError("task (c): write roi_align")
