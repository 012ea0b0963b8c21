"""RoIPool (Fast R-CNN), kept for comparison with RoIAlign: it rounds the box to whole
feature pixels, then its bins too, and takes the maximum of each bin, so a bin reads pixels
up to about one feature pixel away from where it lies (rounding the corners alone moves it by
up to half a pixel; the bins' rounding and the "+ 1" in the box size add the rest). Chapter 9
measures it: on average 1.1 image pixels on P2 and 9.1 on P5, at worst 4.2 and 32.

In:  features (N, C, H, W), boxes (R, 5) or [(R_i, 4)], output_size, spatial_scale.
Out: (R, C, ph, pw); the gradient goes to each bin's maximum (first one on ties).

Girshick, "Fast R-CNN" (2015), sec. 2.1; torchvision ``ops/roi_pool.py``: box corners
rounded half away from zero, bins ``[floor(p * size / ph), ceil((p + 1) * size / ph))``,
empty bins give 0.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import apply
from ..backend import as_array, get_array_module
from ..checks import check_batch_indices, check_float, check_number, check_output_size, check_shape
from .roi_align import convert_boxes_to_roi_format


def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool(input, boxes, output_size, spatial_scale: float = 1.0):
    """The NumPy implementation (on NumPy or CuPy arrays): max over each bin of the rounded box."""
    x = as_array(input)
    check_shape("roi_pool", "input", x, "(N, C, H, W)", ndim=4)
    check_float("roi_pool", "input", x)
    xp = get_array_module(x)
    rois = convert_boxes_to_roi_format(boxes, x.dtype)
    check_batch_indices("roi_pool", rois, x.shape[0])
    ph, pw = check_output_size(output_size, "roi_pool")
    check_number("roi_pool", "spatial_scale", spatial_scale, 0, lo_open=True)  # checked, used as given
    N, C, H, W = x.shape
    out = xp.zeros((len(rois), C, ph, pw), dtype=x.dtype)
    argmax = xp.full((len(rois), C, ph, pw), -1, dtype=np.int64)  # flat index into (H, W)
    dt = x.dtype.type
    for r, (b, *corners) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (_round_half_away(float(dt(c) * dt(spatial_scale))) for c in corners)
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bin_h, bin_w = dt(roi_h) / dt(ph), dt(roi_w) / dt(pw)
        for p in range(ph):
            h0 = min(max(math.floor(dt(p) * bin_h) + y1, 0), H)
            h1 = min(max(math.ceil(dt(p + 1) * bin_h) + y1, 0), H)
            for q in range(pw):
                w0 = min(max(math.floor(dt(q) * bin_w) + x1, 0), W)
                w1 = min(max(math.ceil(dt(q + 1) * bin_w) + x1, 0), W)
                if h1 <= h0 or w1 <= w0:
                    continue  # empty bin: 0, no gradient
                window = x[int(b), :, h0:h1, w0:w1].reshape(C, -1)  # (C, h, w) -> (C, h*w)
                k = window.argmax(axis=1)
                out[r, :, p, q] = window[xp.arange(C), k]
                argmax[r, :, p, q] = (h0 + k // (w1 - w0)) * W + (w0 + k % (w1 - w0))

    def backward(g):
        grad = xp.zeros((N, C, H * W), dtype=g.dtype)
        valid = argmax >= 0
        r_idx, c_idx, _, _ = xp.nonzero(valid)
        xp.add.at(grad, (rois[r_idx, 0].astype(np.int64), c_idx, argmax[valid]), g[valid])
        return (grad.reshape(N, C, H, W),)

    return apply(out, (input,), backward)
