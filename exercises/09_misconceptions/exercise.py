"""Exercise 09 -- what the tutorials get wrong, measured: RoIPool, proposal recall, RoIPool's misalignment.

Fill in the three graded functions below (tasks a-c in README.md) with NumPy only, then run

    mrcnn-np check 09                      # grades this file
    mrcnn-np check 09 --path my_copy.py    # grades your copy
    mrcnn-np check 09 --hint               # one more hint for the first unfinished task

Conventions (the same as torchvision): arrays are float64 in the grader. Feature maps are
(N, C, H, W); on a map, the value of pixel (row i, column j) sits at the point y = i, x = j.
Boxes are ``x1, y1, x2, y2`` in image pixels (width x2 - x1); RoIPool takes them as an (R, 5)
array of rois ``batch_index, x1, y1, x2, y2``. ``spatial_scale`` is feature size / image size
(1/4 on P2, 1/32 on P5); its inverse is the level's stride.
"""

import math  # noqa: F401  (math.floor, math.ceil, math.copysign may help)

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def roi_pool(features, rois, output_size, spatial_scale):
    """torchvision.ops.roi_pool (Fast R-CNN, sec. 2.1): a (ph, pw) grid of maxima for every roi.

    features: (N, C, H, W) float64; rois: (R, 5) rows ``batch_index, x1, y1, x2, y2`` in image
    pixels (R may be 0); output_size: (ph, pw) ints; spatial_scale: float.
    Returns (R, C, ph, pw) float64 (R may be 0: a (0, C, ph, pw) array), exactly the numbers of
    torchvision.ops.roi_pool(features, rois, output_size, spatial_scale) (and of
    mrcnn_np.ops.roi_pool): out[r, c, p, q] is the maximum of channel c over the whole feature
    pixels of image batch_index that bin (p, q) of roi r covers, where RoIPool, unlike RoIAlign,
    quantises the box and its bins to whole pixels (torchvision's rounding: see the hints).
    Edge cases, as torchvision's: a roi may lie partly or wholly outside the map (only the
    pixels on the map count); a bin that covers no pixel of the map reads 0; a roi smaller than
    a pixel still covers at least one.
    """
    raise NotImplementedError("task (a): write roi_pool")


# --- task (b) ----------------------------------------------------------------------------------
def proposal_recall(proposals, gt_boxes, iou_threshold):
    """The proposal recall of section 9.1: how many objects some proposal finds.

    proposals: (P, 4) xyxy (P may be 0); gt_boxes: (G, 4) xyxy, G >= 1, every box of positive
    area; iou_threshold: float in [0, 1].
    Returns a float in [0, 1]: the fraction of the G ground-truth boxes whose best proposal
    (highest IoU, intersection over union as torchvision.ops.box_iou) has IoU at least
    iou_threshold -- a box exactly at the threshold counts. With no proposals, 0.0.
    """
    raise NotImplementedError("task (b): write proposal_recall")


# --- task (c) ----------------------------------------------------------------------------------
def roi_pool_misalignment(box, output_size, spatial_scale):
    """Where RoIPool's bins sit compared with RoIAlign's, in image pixels (section 9.2).

    box: (4,) ``x1, y1, x2, y2`` in image pixels, inside the image (x1, y1 >= 0, x1 <= x2,
    y1 <= y2); output_size: (ph, pw); spatial_scale: float. Assume the map is large enough:
    nothing is clamped.
    Returns a tuple (dy, dx) of float64 arrays of shapes (ph,) and (pw,): for every row of bins
    (dy) and every column of bins (dx), the centre of the pixels RoIPool's bin reads (the mean
    of its first and last pixel, task (a)'s rule) minus the centre of the same bin of
    torchvision.ops.roi_align (``aligned=False``: the box scaled as it is, at least one feature
    pixel wide and high, cut into equal bins), converted from feature pixels to image pixels.
    """
    raise NotImplementedError("task (c): write roi_pool_misalignment")
