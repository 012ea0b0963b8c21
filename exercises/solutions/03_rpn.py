"""Reference solution of exercise 03 (the region proposal network). Try the exercise before reading this.

NumPy only. The library's version is mrcnn_np/model/rpn.py: batched over images, on the
autograd Tensors that training needs, with faster NMS kernels. Here every function works
on plain arrays, and select_proposals handles one image.
"""

import math

import numpy as np

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # largest dw, dh used in exp: a box at most 62.5x its anchor


# --- task (a) ----------------------------------------------------------------------------------
def flatten_head_outputs(logits, deltas):
    """Per-level (N, A, H, W) logits and (N, 4A, H, W) deltas -> (N, total) and (N, total, 4),
    ordered level, then location (row-major), then anchor: the order of the anchors."""
    flat_logits, flat_deltas = [], []
    for level_logits, level_deltas in zip(logits, deltas, strict=True):
        N, A, H, W = level_logits.shape
        # anchors inner: (N, A, H, W) -> (N, H, W, A) -> (N, H*W*A)
        flat_logits.append(level_logits.transpose(0, 2, 3, 1).reshape(N, H * W * A))
        # channel 4a + k is coordinate k of anchor a: (N, 4A, H, W) -> (N, A, 4, H, W)
        level_deltas = level_deltas.reshape(N, A, 4, H, W)
        # -> (N, H, W, A, 4) -> (N, H*W*A, 4)
        flat_deltas.append(level_deltas.transpose(0, 3, 4, 1, 2).reshape(N, H * W * A, 4))
    return np.concatenate(flat_logits, axis=1), np.concatenate(flat_deltas, axis=1)


# --- task (b) ----------------------------------------------------------------------------------
def decode_proposals(deltas, anchors):
    """(N, total, 4) deltas (dx, dy, dw, dh) applied to the (total, 4) anchors -> (N, total, 4) boxes."""
    widths = anchors[:, 2] - anchors[:, 0]  # (total,)
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + 0.5 * widths
    ctr_y = anchors[:, 1] + 0.5 * heights
    dx, dy = deltas[..., 0], deltas[..., 1]  # (N, total) each; weights (1, 1, 1, 1): nothing to divide
    dw = np.minimum(deltas[..., 2], BBOX_XFORM_CLIP)  # clamped from above only
    dh = np.minimum(deltas[..., 3], BBOX_XFORM_CLIP)
    pred_ctr_x = dx * widths + ctr_x  # (N, total): the (total,) anchor arrays broadcast over the images
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * (np.exp(dw) * widths)
    half_h = 0.5 * (np.exp(dh) * heights)
    corners = [pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h]
    return np.stack(corners, axis=-1)  # 4 x (N, total) -> (N, total, 4)


# --- task (c) ----------------------------------------------------------------------------------
def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for very negative x."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def box_iou(boxes1, boxes2):
    """(R1, 4), (R2, 4) -> (R1, R2) intersection over union."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (R1, R2, 2)
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def nms(boxes, scores, iou_threshold):
    """Greedy NMS: indices (K,) of the kept boxes by decreasing score (ties: lower index first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = box_iou(boxes[best][None], boxes[rest])[0]  # (1, 4), (R, 4) -> (R,)
        order = rest[~(iou > iou_threshold)]  # suppress only IoU > threshold
    return np.array(keep, dtype=np.int64)


def top_n_per_level(objectness, num_anchors_per_level, top_n):
    """Indices (K,) of the ``top_n`` largest logits of each level (descending, ties: lower
    index first), levels in order, and the level of each (K,)."""
    picks, levels, offset = [], [], 0
    for level, n in enumerate(num_anchors_per_level):
        order = np.argsort(-objectness[offset : offset + n], kind="stable")[:top_n]
        picks.append(order + offset)
        levels.append(np.full(len(order), level))
        offset += n
    return np.concatenate(picks), np.concatenate(levels)


def select_proposals(proposals, objectness, num_anchors_per_level, image_size, pre_nms_top_n=1000,
                     post_nms_top_n=1000, nms_thresh=0.7, min_size=1e-3, score_thresh=0.0):
    """One image: (total, 4) proposals and (total,) logits -> boxes (P, 4), scores (P,), by decreasing score."""
    picks, levels = top_n_per_level(objectness, num_anchors_per_level, pre_nms_top_n)
    boxes, scores = proposals[picks], sigmoid(objectness[picks])  # (K, 4), (K,): copies

    height, width = image_size
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)  # x1, x2
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)  # y1, y2

    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size) & (scores >= score_thresh)
    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]

    kept = [np.zeros(0, dtype=np.int64)]
    for level in np.unique(levels):  # NMS within each level, never across
        members = np.nonzero(levels == level)[0]
        kept.append(members[nms(boxes[members], scores[members], nms_thresh)])
    kept = np.sort(np.concatenate(kept))  # index order, so that the stable sort breaks ties by index
    kept = kept[np.argsort(-scores[kept], kind="stable")][:post_nms_top_n]
    return boxes[kept], scores[kept]


# --- task (d) ----------------------------------------------------------------------------------
def binary_cross_entropy_with_logits(x, t):
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], elementwise, never overflowing."""
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def smooth_l1(d, beta):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, elementwise."""
    abs_d = np.abs(d)
    return np.where(abs_d < beta, 0.5 * d * d / beta, abs_d - 0.5 * beta)


def rpn_loss(objectness, deltas, labels, regression_targets, sampled_pos, sampled_neg):
    """BCE over the sampled anchors (mean); smooth L1 (beta 1/9) over the sampled positives,
    summed and divided by the number sampled. -> (loss_objectness, loss_box)."""
    pos = np.nonzero(sampled_pos)[0]
    sampled = np.concatenate([pos, np.nonzero(sampled_neg)[0]])
    loss_objectness = binary_cross_entropy_with_logits(objectness[sampled], labels[sampled]).mean()
    loss_box = smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9).sum() / len(sampled)
    return float(loss_objectness), float(loss_box)
