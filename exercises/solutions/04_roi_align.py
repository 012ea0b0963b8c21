"""Reference solution of exercise 04 (RoIAlign). Try the exercise before reading this.

NumPy only, written to be read: loops over boxes, bins and sample points, in the order
torchvision's C++ kernel (``roi_align_kernel.cpp``) visits them. The library's version,
mrcnn_np/ops/roi_align.py, computes the same numbers for all boxes at once: the weights are
separable (a point's weight on pixel (y, x) is its weight on row y times its weight on
column x), so each box is two small matrix products, ``W_y @ feature @ W_x.T``.
mrcnn_np/ops/poolers.py holds LevelMapper and MultiScaleRoIAlign. The backward pass
(task c) is the adjoint of the same loops: ``W_y.T @ grad @ W_x`` per box in the library.
"""

import math

import numpy as np


# --- task (a) ----------------------------------------------------------------------------------
def _neighbours(t, size):
    """Along one axis of ``size`` pixels: (low, high, weight of low, weight of high) for a point
    at ``t`` that is inside the margin (-1 <= t <= size)."""
    t = max(t, 0.0)  # between -1 and 0: read the first pixel
    low = int(t)  # t >= 0 here, so int() is floor()
    if low >= size - 1:  # at (or past) the last pixel: no pixel after it to blend with
        low = high = size - 1
        t = float(low)
    else:
        high = low + 1
    frac = t - low  # how far past ``low``: the weight of ``high``
    return low, high, 1.0 - frac, frac


def bilinear_interpolate(feature, y, x):
    """(C, H, W) feature map, a point (y, x) -> (C,) bilinearly interpolated values."""
    _, H, W = feature.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:  # more than one pixel outside: reads 0
        return np.zeros(feature.shape[0], dtype=feature.dtype)
    y_low, y_high, hy, ly = _neighbours(y, H)
    x_low, x_high, hx, lx = _neighbours(x, W)
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])  # 4 x (C,) -> (C,)


# --- task (b) ----------------------------------------------------------------------------------
def roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """(N, C, H, W) features, (R, 5) rois -> (R, C, ph, pw): each bin the mean of a grid of samples."""
    _, C, _, _ = features.shape
    ph, pw = output_size
    out = np.zeros((len(rois), C, ph, pw), dtype=features.dtype)
    offset = 0.5 if aligned else 0.0  # aligned: pixel i covers [i - 0.5, i + 0.5] of the scaled box
    for r, (batch_index, *box) in enumerate(rois):
        feature = features[int(batch_index)]  # (C, H, W), the map of this box's image
        x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)  # the box on the feature map
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:  # the original RoIAlign: a tiny box is read as at least 1 x 1 pixel
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / pw, roi_h / ph
        g_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)  # sample rows per bin
        g_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)  # sample columns per bin
        count = max(g_h * g_w, 1)  # a box of zero size has no samples: its bins stay 0, not 0 / 0
        for p in range(ph):
            for q in range(pw):
                total = np.zeros(C, dtype=features.dtype)
                for i in range(g_h):
                    y = y1 + p * bin_h + (i + 0.5) * bin_h / g_h  # the centre of sub-row i of the bin
                    for j in range(g_w):
                        x = x1 + q * bin_w + (j + 0.5) * bin_w / g_w
                        total += bilinear_interpolate(feature, y, x)  # (C,); 0 outside the map
                out[r, :, p, q] = total / count  # the points outside count too
    return out


# --- task (c) ----------------------------------------------------------------------------------
def roi_align_backward(grad_output, rois, input_shape, spatial_scale, sampling_ratio, aligned):
    """(R, C, ph, pw) gradient of roi_align's output -> (N, C, H, W) gradient of its features.

    RoIAlign is linear in the features: each output bin is a weighted sum of feature pixels, so
    the adjoint hands each bin's gradient back to the same pixels with the same weights."""
    _, _, ph, pw = grad_output.shape
    _, _, H, W = input_shape
    grad_input = np.zeros(input_shape, dtype=grad_output.dtype)
    shift = 0.5 if aligned else 0.0
    for r in range(len(rois)):
        grad_map = grad_input[int(rois[r, 0])]  # (C, H, W) a view: the map of this box's image
        x1, y1, x2, y2 = rois[r, 1:] * spatial_scale - shift  # the box on the feature map, as the forward
        roi_w, roi_h = (x2 - x1, y2 - y1) if aligned else (max(x2 - x1, 1.0), max(y2 - y1, 1.0))
        n_y = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)  # sample rows per bin
        n_x = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)  # sample columns per bin
        bin_w, bin_h = roi_w / pw, roi_h / ph
        share = 1.0 / max(n_y * n_x, 1)  # each point's weight in its bin's average
        for p in range(ph):
            for q in range(pw):
                g = grad_output[r, :, p, q] * share  # (C,) what each sample point of bin (p, q) receives
                for i in range(n_y):
                    y = y1 + p * bin_h + (i + 0.5) * bin_h / n_y  # the forward's point, in its arithmetic
                    for j in range(n_x):
                        x = x1 + q * bin_w + (j + 0.5) * bin_w / n_x
                        if not (-1.0 <= y <= H and -1.0 <= x <= W):  # read 0: no gradient flows back
                            continue
                        y_low, y_high, hy, ly = _neighbours(y, H)
                        x_low, x_high, hx, lx = _neighbours(x, W)
                        # += : the taps of one point may coincide (the last row), and points and boxes overlap
                        grad_map[:, y_low, x_low] += hy * hx * g
                        grad_map[:, y_low, x_high] += hy * lx * g
                        grad_map[:, y_high, x_low] += ly * hx * g
                        grad_map[:, y_high, x_high] += ly * lx * g
    return grad_input


# --- task (d) ----------------------------------------------------------------------------------
def map_levels(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6):
    """(R, 4) boxes -> (R,) int64 FPN level in [k_min, k_max]: floor(4 + log2(sqrt(area) / 224) + eps)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (R,)
    scale = np.sqrt(area)  # the side of the square of the same area
    # eps: a box of 112 x 112 px stays on level 3 when float rounding makes it 111.99999999999994 px
    k = np.floor(canonical_level + np.log2(scale / canonical_scale) + eps)  # (R,) floats
    return np.clip(k, k_min, k_max).astype(np.int64)  # no level below k_min or above k_max
