"""Exercise 04 -- RoIAlign: bilinear sampling, pooling a fixed-size grid per box, FPN levels.

Fill in the three graded functions below (tasks a-c in README.md) with NumPy only, then run

    mrcnn-np check 04                      # grades this file
    mrcnn-np check 04 --path my_copy.py    # grades your copy

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
    """The feature vector at the point (y, x), bilinearly interpolated as torchvision's RoIAlign.

    feature: (C, H, W) one image's feature map; y, x: floats (a row and a column coordinate,
    not necessarily whole, possibly outside the map).  Returns (C,):
      - zeros when y < -1 or y > H or x < -1 or x > W (more than one pixel outside);
      - otherwise clamp y and x at 0 from below; ``y_low = int(y)``; if y_low >= H - 1, use
        ``y_low = y_high = H - 1`` and ``y = H - 1``, else ``y_high = y_low + 1`` (the same for x);
        with ``ly = y - y_low``, ``lx = x - x_low``, ``hy = 1 - ly``, ``hx = 1 - lx``:

            hy * hx * feature[:, y_low, x_low]  + hy * lx * feature[:, y_low, x_high]
          + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high]
    """
    raise NotImplementedError("task (a): write bilinear_interpolate")


# --- task (b) ----------------------------------------------------------------------------------
def roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """torchvision.ops.roi_align: a (ph, pw) grid of averaged bilinear samples for every box.

    features: (N, C, H, W); rois: (R, 5) ``batch_index, x1, y1, x2, y2`` in image pixels;
    output_size: (ph, pw) ints; spatial_scale: float; sampling_ratio: int (<= 0: adaptive);
    aligned: bool.  Returns (R, C, ph, pw). For each roi, on the map of image batch_index:
        offset = 0.5 if aligned else 0
        x1, y1, x2, y2 = each coordinate * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1          (each at least 1 when not aligned)
        bin_w, bin_h = roi_w / pw, roi_h / ph
        g_h = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / ph)   (g_w likewise)
        out[r, :, p, q] = sum over i < g_h, j < g_w of
                              bilinear_interpolate(feature, y1 + p * bin_h + (i + 0.5) * bin_h / g_h,
                                                            x1 + q * bin_w + (j + 0.5) * bin_w / g_w)
                          / max(g_h * g_w, 1)
    Points outside the map read 0 and still count in the average. R may be 0.
    """
    raise NotImplementedError("task (b): write roi_align")


# --- task (c) ----------------------------------------------------------------------------------
def map_levels(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6):
    """The FPN level each box is pooled from (FPN paper, eq. 1), as torchvision's LevelMapper.

    boxes: (R, 4) ``x1, y1, x2, y2`` in image pixels, every box of positive area.
    Returns (R,) int64 levels k in [k_min, k_max]:
        k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)   clamped to [k_min, k_max]
    with area = (x2 - x1) * (y2 - y1): a 224 x 224 box goes to level 4 (P4), a 112 x 112 box to
    level 3. R may be 0: then return an empty int64 array.
    """
    raise NotImplementedError("task (c): write map_levels")
