"""Exercise 09 -- a reference solution: RoIPool, proposal recall, RoIPool's misalignment.

Try the exercise first (exercises/09_misconceptions/). The library's RoIPool is
mrcnn_np/ops/roi_pool.py; its IoU, mrcnn_np/ops/boxes.py.
"""

import math

import numpy as np


# --- task (a) ----------------------------------------------------------------------------------
def round_half_away(v):
    """The nearest integer, halves away from zero (C's round, which torchvision's kernel uses)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def bin_range(p, bin_size, start, size):
    """The half-open pixel range [lo, hi) of bin p along one axis, clamped to the map [0, size]."""
    lo = math.floor(p * bin_size) + start
    hi = math.ceil((p + 1) * bin_size) + start
    return min(max(lo, 0), size), min(max(hi, 0), size)


def roi_pool(features, rois, output_size, spatial_scale):
    """torchvision.ops.roi_pool: (N, C, H, W), (R, 5) -> (R, C, ph, pw), max over rounded bins."""
    N, C, H, W = features.shape
    ph, pw = output_size
    out = np.zeros((len(rois), C, ph, pw), dtype=features.dtype)
    for r, (b, *box) in enumerate(np.asarray(rois, dtype=np.float64).tolist()):
        x1, y1, x2, y2 = (round_half_away(v * spatial_scale) for v in box)  # whole feature pixels
        roi_w = max(x2 - x1 + 1, 1)  # both end pixels count: a box of one pixel is 1 wide
        roi_h = max(y2 - y1 + 1, 1)
        bin_w, bin_h = roi_w / pw, roi_h / ph
        feature = features[int(b)]
        for p in range(ph):
            h0, h1 = bin_range(p, bin_h, y1, H)
            for q in range(pw):
                w0, w1 = bin_range(q, bin_w, x1, W)
                if h1 > h0 and w1 > w0:  # an empty bin (outside the map) stays 0
                    out[r, :, p, q] = feature[:, h0:h1, w0:w1].max(axis=(1, 2))
    return out


# --- task (b) ----------------------------------------------------------------------------------
def box_iou(boxes1, boxes2):
    """(A, 4), (B, 4) -> (A, B) intersection over union of xyxy boxes."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (A,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (B,)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (A, B, 2)
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (A, B, 2)
    wh = np.clip(bottom_right - top_left, 0, None)  # (A, B, 2)
    inter = wh[..., 0] * wh[..., 1]  # (A, B)
    return inter / (area1[:, None] + area2[None, :] - inter)


def proposal_recall(proposals, gt_boxes, iou_threshold):
    """The fraction of ground-truth boxes whose best proposal has IoU >= iou_threshold."""
    if len(proposals) == 0:
        return 0.0
    best = box_iou(gt_boxes, proposals).max(axis=1)  # (G,) each box's best proposal
    return float(np.mean(best >= iou_threshold))


# --- task (c) ----------------------------------------------------------------------------------
def roi_pool_misalignment(box, output_size, spatial_scale):
    """(dy (ph,), dx (pw,)): RoIPool's bin centres minus RoIAlign's, in image pixels."""
    ph, pw = output_size
    offsets = []
    for lo, hi, bins in ((box[1], box[3], ph), (box[0], box[2], pw)):
        start = round_half_away(lo * spatial_scale)
        end = round_half_away(hi * spatial_scale)
        pool_bin = max(end - start + 1, 1) / bins
        align_bin = max((hi - lo) * spatial_scale, 1.0) / bins  # RoIAlign, aligned=False: at least 1 pixel
        p = np.arange(bins)
        first = np.floor(p * pool_bin) + start  # the first pixel RoIPool's bin reads
        last = np.ceil((p + 1) * pool_bin) + start - 1  # and the last one
        pooled_centre = (first + last) / 2
        exact_centre = lo * spatial_scale + (p + 0.5) * align_bin
        offsets.append((pooled_centre - exact_centre) / spatial_scale)  # map pixels -> image pixels
    return offsets[0], offsets[1]
