"""Exercise 04 -- RoIAlign: bilinear sampling, pooling a fixed-size grid per box, its gradient, FPN levels.

Fill in the four graded functions below (tasks a-d in README.md) with NumPy only, then run

    mrcnn-np check 04                      # grades this file
    mrcnn-np check 04 --path my_copy.py    # grades your copy
    mrcnn-np check 04 --hint               # one more hint for the first task that does not pass

Conventions (the same as torchvision): arrays are float64 in the grader. Feature maps are
(N, C, H, W); on a map, the value of pixel (row i, column j) sits at the point y = i, x = j.
A box on an image is ``x1, y1, x2, y2`` in image pixels (width x2 - x1, no "+ 1"); RoIAlign
takes them as an (R, 5) array of rois ``batch_index, x1, y1, x2, y2``, the first number the
index of the box's image in the batch (a whole number stored as a float). ``spatial_scale``
is feature size / image size (1/4 on P2, 1/32 on P5).
"""

import math  # noqa: F401  (math.ceil, math.floor, math.log2 may help)

import numpy as np  # noqa: F401  (you will need it)


# --- task (a) ----------------------------------------------------------------------------------
def bilinear_interpolate(feature, y, x):
    """The feature vector at the point (y, x), bilinearly interpolated as torchvision's RoIAlign reads it.

    feature: (C, H, W) one image's feature map; y, x: floats (a row and a column coordinate,
    not necessarily whole, possibly outside the map).
    Returns (C,): the blend of the (up to) four pixels around the point, each weighted by its
    nearness along y times its nearness along x (a point on a pixel reads that pixel).
    Edge cases, as torchvision's ``roi_align_kernel.cpp`` (``bilinear_interpolate``):
      - a point more than one pixel outside the map (y < -1, y > H, x < -1 or x > W) reads zeros;
        the limits -1, H and W themselves are inside;
      - a point between -1 and 0 reads the first row (column) as if it sat on it: no extrapolation;
      - a point at or past the last row H - 1 (column W - 1) reads the last row (column) alone.
    Mask R-CNN, section 3 ("RoIAlign"); torchvision ``ops/roi_align.py``.
    """
    raise NotImplementedError("task (a): write bilinear_interpolate")


# --- task (b) ----------------------------------------------------------------------------------
def roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """torchvision.ops.roi_align: a (ph, pw) grid of averaged bilinear samples for every box.

    features: (N, C, H, W); rois: (R, 5) ``batch_index, x1, y1, x2, y2`` in image pixels;
    output_size: (ph, pw) ints; spatial_scale: float; sampling_ratio: int (<= 0: adaptive);
    aligned: bool.
    Returns (R, C, ph, pw): box r, scaled onto the map of image batch_index (and shifted by half
    a pixel when aligned), cut into ph x pw equal bins; each bin is the mean of a regular grid of
    sample points at the centres of its sub-bins, each read as in task (a).
      - points per bin: sampling_ratio x sampling_ratio, or (sampling_ratio <= 0) the box's height
        per bin, rounded up, times its width per bin, rounded up (about one point per pixel);
      - aligned=False (Mask R-CNN's default): a box is at least 1 x 1 feature pixel; aligned=True:
        no minimum size;
      - points outside the map read 0 and still count in the mean; a bin without sample points
        (aligned, adaptive, a box of zero size) is 0, never 0 / 0.
    R may be 0: then return a (0, C, ph, pw) array.
    """
    raise NotImplementedError("task (b): write roi_align")


# --- task (c) ----------------------------------------------------------------------------------
def roi_align_backward(grad_output, rois, input_shape, spatial_scale, sampling_ratio, aligned):
    """The gradient of task (b) with respect to the features: what RoIAlign's backward pass returns.

    grad_output: (R, C, ph, pw) d loss / d out, the gradient of roi_align's output;
    rois, spatial_scale, sampling_ratio, aligned: as in task (b) (output_size is grad_output's
    last two sizes); input_shape: (N, C, H, W), the shape of the features.
    Returns (N, C, H, W) float64: d loss / d features, i.e. the gradient of
    sum(grad_output * roi_align(features, rois, ...)) with respect to the features. RoIAlign is
    linear in the features, so this does not depend on their values. Pixels no sample point
    reads get 0; where boxes overlap, their contributions add up. R may be 0 (all zeros).
    torchvision's ``roi_align_backward_kernel`` (``roi_align_kernel.cpp``); graded with torch
    autograd, mrcnn_np's autograd and central differences.
    """
    raise NotImplementedError("task (c): write roi_align_backward")


# --- task (d) ----------------------------------------------------------------------------------
def map_levels(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6):
    """The FPN level each box is pooled from (FPN paper, eq. 1), as torchvision's LevelMapper.

    boxes: (R, 4) ``x1, y1, x2, y2`` in image pixels, every box of positive area.
    Returns (R,) int64 levels in [k_min, k_max]: the level is
    floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps), clamped to [k_min, k_max],
    where area is the box's width times its height: a 224 x 224 box goes to level 4 (P4), a
    112 x 112 box to level 3. Use the arguments (the grader passes other values than the
    defaults). R may be 0: then return an empty int64 array.
    torchvision ``ops/poolers.py`` (``LevelMapper``).
    """
    raise NotImplementedError("task (d): write map_levels")
