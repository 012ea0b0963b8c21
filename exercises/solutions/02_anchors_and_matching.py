"""Reference solution of exercise 02 (anchors and matching). Try the exercise before reading this.

NumPy only. The library's versions live in mrcnn_np/ops/boxes.py (box_iou),
mrcnn_np/model/anchors.py (anchors), mrcnn_np/ops/box_coder.py (BoxCoder) and
mrcnn_np/ops/nms.py (nms); they validate their inputs and have compiled kernels beside
them, but the arithmetic is the same, in the same order, as torchvision's.
"""

import math

import numpy as np

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # decode's default clamp of dw, dh: boxes grow at most 62.5x


def box_area(boxes):
    """(R, 4) xyxy -> (R,) areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


# --- task (a) ----------------------------------------------------------------------------------
def box_iou(boxes1, boxes2):
    """(R1, 4), (R2, 4) -> (R1, R2): area of the intersection / area of the union."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (R1, 1, 2) vs (1, R2, 2) -> (R1, R2, 2)
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (R1, R2, 2)
    wh = np.clip(bottom_right - top_left, 0, None)  # (R1, R2, 2); 0 where the boxes do not overlap
    inter = wh[..., 0] * wh[..., 1]  # (R1, R2)
    union = area1[:, None] + area2[None, :] - inter  # the intersection is in both areas: count it once
    return inter / union


# --- task (b) ----------------------------------------------------------------------------------
def cell_anchors(sizes, aspect_ratios):
    """(len(ratios) * len(sizes), 4) float32 anchors centred on (0, 0); ratios outer, sizes inner."""
    scales = np.asarray(sizes, dtype=np.float32)  # (S,)
    ratios = np.asarray(aspect_ratios, dtype=np.float32)  # (K,)
    h_ratios = np.sqrt(ratios)  # h / size
    w_ratios = 1 / h_ratios  # w / size: h / w = ratio and w * h = size**2 (stays float32)
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (K, S) -> (K*S,): ratio k, size s at k*S + s
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)  # (K, S) -> (K*S,)
    corners = np.stack([-ws, -hs, ws, hs], axis=1) / 2  # (A, 4), still float32
    return np.round(corners)  # half to even, as torch.round: 22.5 -> 22, 23.5 -> 24


def grid_anchors(image_size, feature_sizes, sizes, aspect_ratios):
    """All anchors of all levels: (sum_l h_l * w_l * A_l, 4) float32, level -> location -> anchor."""
    height, width = image_size
    levels = []
    for (h, w), level_sizes, level_ratios in zip(feature_sizes, sizes, aspect_ratios, strict=True):
        base = cell_anchors(level_sizes, level_ratios)  # (A, 4)
        stride_h, stride_w = height // h, width // w  # integer division, as torchvision
        shift_y, shift_x = np.meshgrid(np.arange(h) * stride_h, np.arange(w) * stride_w, indexing="ij")  # (h, w)
        shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1)  # (h, w, 4): row-major locations
        anchors = shifts.reshape(-1, 1, 4) + base[None, :, :]  # (h*w, 1, 4) + (1, A, 4) -> (h*w, A, 4)
        levels.append(anchors.reshape(-1, 4))  # (h*w, A, 4) -> (h*w*A, 4)
    return np.concatenate(levels, axis=0).astype(np.float32)  # whole numbers: exact in float32


# --- task (c) ----------------------------------------------------------------------------------
def _centres_and_sizes(boxes):
    """(R, 4) xyxy -> centre x, centre y, width, height, each (R,)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def encode(reference_boxes, proposals, weights):
    """Deltas (R, 4) that move each proposal (R, 4) onto its reference (ground-truth) box (R, 4)."""
    wx, wy, ww, wh = weights
    px, py, pw, ph = _centres_and_sizes(proposals)
    gx, gy, gw, gh = _centres_and_sizes(reference_boxes)
    return np.stack([
        wx * (gx - px) / pw,
        wy * (gy - py) / ph,
        ww * np.log(gw / pw),
        wh * np.log(gh / ph),
    ], axis=1)  # 4 x (R,) -> (R, 4)


def decode(deltas, boxes, weights, clip=BBOX_XFORM_CLIP):
    """Apply deltas (R, 4) to boxes (R, 4) -> (R, 4) xyxy; dw and dh are clamped above at ``clip``."""
    wx, wy, ww, wh = weights
    cx, cy, widths, heights = _centres_and_sizes(boxes)
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = np.minimum(deltas[:, 2] / ww, clip)  # clamp after removing the weight, and only from above
    dh = np.minimum(deltas[:, 3] / wh, clip)
    pred_cx = dx * widths + cx
    pred_cy = dy * heights + cy
    pred_w = np.exp(dw) * widths
    pred_h = np.exp(dh) * heights
    return np.stack([pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,
                     pred_cx + 0.5 * pred_w, pred_cy + 0.5 * pred_h], axis=1)  # 4 x (R,) -> (R, 4)


# --- task (d) ----------------------------------------------------------------------------------
def nms(boxes, scores, iou_threshold):
    """Indices (K,) int64 of the boxes greedy NMS keeps, by decreasing score."""
    order = np.argsort(-scores, kind="stable")  # decreasing score; equal scores: lower index first
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(best)  # the best remaining box is never suppressed
        ious = box_iou(boxes[best][None, :], boxes[rest])[0]  # (1, 4), (n, 4) -> (n,)
        suppressed = ious > iou_threshold  # strictly: IoU == threshold survives
        order = rest[~suppressed]  # still sorted by score
    return np.array(keep, dtype=np.int64)  # dtype matters when keep is empty
