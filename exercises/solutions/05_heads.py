"""Reference solution of exercise 05 (the box and mask heads). Try the exercise before reading this.

NumPy only. The library's versions: RoIHeads.postprocess_detections, project_masks_on_boxes
and maskrcnn_loss in mrcnn_np/model/roi_heads.py (batched over images, on the autograd
Tensors training needs), paste_masks_in_image in mrcnn_np/model/transform.py, and the
operations they use in mrcnn_np/ops/ (box_coder, nms, roi_align) and mrcnn_np/nn/functional.py
(interpolate). Here every function works on plain arrays, one image at a time.
"""

import math

import numpy as np

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # the clamp of dw, dh in decode: a box grows at most 62.5x
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the box head's BoxCoder weights (wx, wy, ww, wh)


# --- task (a) ----------------------------------------------------------------------------------
def softmax(x):
    """Softmax along the last axis, shifted by the row's max so that exp never overflows."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decode_boxes(deltas, proposals, weights=BOX_WEIGHTS, clip=BBOX_XFORM_CLIP):
    """(R, 4K) deltas, (R, 4) proposals -> (R, K, 4) boxes: class k's deltas are columns 4k..4k+3."""
    R = len(proposals)
    deltas = deltas.reshape(R, -1, 4)  # (R, 4K) -> (R, K, 4)
    wx, wy, ww, wh = weights
    widths = (proposals[:, 2] - proposals[:, 0])[:, None]  # (R, 1): broadcasts over the classes
    heights = (proposals[:, 3] - proposals[:, 1])[:, None]
    ctr_x = proposals[:, 0][:, None] + 0.5 * widths
    ctr_y = proposals[:, 1][:, None] + 0.5 * heights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy  # (R, K) each
    dw = np.minimum(deltas[..., 2] / ww, clip)  # clamped after removing the weight, from above only
    dh = np.minimum(deltas[..., 3] / wh, clip)
    pred_ctr_x, pred_ctr_y = dx * widths + ctr_x, dy * heights + ctr_y
    half_w, half_h = 0.5 * (np.exp(dw) * widths), 0.5 * (np.exp(dh) * heights)
    return np.stack([pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h],
                    axis=-1)  # 4 x (R, K) -> (R, K, 4)


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
        iou = box_iou(boxes[best][None], boxes[rest])[0]  # (1, 4), (n, 4) -> (n,)
        order = rest[~(iou > iou_threshold)]  # suppress only IoU > threshold
    return np.array(keep, dtype=np.int64)


def postprocess_detections(class_logits, box_regression, proposals, image_shape, score_thresh=0.05,
                           nms_thresh=0.5, detections_per_img=100):
    """One image's detections: boxes (D, 4), scores (D,), labels (D,) int64, by decreasing score."""
    R, K = class_logits.shape
    scores = softmax(class_logits)  # (R, K): a distribution over the classes of each proposal
    boxes = decode_boxes(box_regression, proposals)  # (R, K, 4): one box per class
    height, width = image_shape
    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)  # x1, x2
    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)  # y1, y2
    labels = np.broadcast_to(np.arange(K), (R, K))

    # every (proposal, class) pair is a candidate, background (class 0) excluded;
    # flattened proposal-major: candidate r * (K - 1) + (k - 1) is proposal r, class k
    boxes = boxes[:, 1:].reshape(-1, 4)  # (R, K-1, 4) -> (R*(K-1), 4)
    scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)  # (R*(K-1),)

    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (scores > score_thresh) & (widths >= 1e-2) & (heights >= 1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]

    kept = [np.zeros(0, dtype=np.int64)]
    for label in np.unique(labels):  # NMS within each class: two classes never suppress each other
        members = np.nonzero(labels == label)[0]
        kept.append(members[nms(boxes[members], scores[members], nms_thresh)])
    kept = np.sort(np.concatenate(kept))  # candidate order, so that the stable sort breaks ties by it
    kept = kept[np.argsort(-scores[kept], kind="stable")][:detections_per_img]
    return boxes[kept], scores[kept], labels[kept].astype(np.int64)


# --- task (b) ----------------------------------------------------------------------------------
def source_taps(in_size, out_size):
    """Along one axis: (low, high, frac), each (out_size,): output pixel d reads
    ``(1 - frac) * signal[low] + frac * signal[high]`` (torch's bilinear, align_corners=False)."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)  # pixel centres; clamped at 0
    low = np.floor(src).astype(np.int64)  # src >= 0, so floor is int()
    low = np.minimum(low, in_size - 1)
    high = np.minimum(low + 1, in_size - 1)  # past the last pixel: read the last pixel twice
    return low, high, src - low


def resize_bilinear(image, out_h, out_w):
    """(h, w) -> (out_h, out_w), as F.interpolate(mode="bilinear", align_corners=False)."""
    x_low, x_high, fx = source_taps(image.shape[1], out_w)
    y_low, y_high, fy = source_taps(image.shape[0], out_h)
    rows = image[:, x_low] * (1 - fx) + image[:, x_high] * fx  # (h, out_w): along x first
    return rows[y_low] * (1 - fy)[:, None] + rows[y_high] * fy[:, None]  # then along y: (out_h, out_w)


def paste_masks_in_image(masks, boxes, image_shape, padding=1):
    """(R, 1, M, M) probabilities, (R, 4) boxes -> (R, 1, H, W): each mask resized into its box."""
    R, _, M, _ = masks.shape
    im_h, im_w = image_shape
    out = np.zeros((R, 1, im_h, im_w), dtype=masks.dtype)
    scale = (M + 2 * padding) / M  # the padded mask is this much larger than the mask
    padded = np.pad(masks[:, 0], ((0, 0), (padding, padding), (padding, padding)))  # (R, M+2p, M+2p)
    for r in range(R):
        x1, y1, x2, y2 = boxes[r]
        half_w, half_h = (x2 - x1) * 0.5 * scale, (y2 - y1) * 0.5 * scale  # the box grows with the mask
        ctr_x, ctr_y = (x2 + x1) * 0.5, (y2 + y1) * 0.5
        # int() truncates towards 0, as torch's .to(torch.int64): -3.7 -> -3
        x1, y1, x2, y2 = (int(v) for v in (ctr_x - half_w, ctr_y - half_h, ctr_x + half_w, ctr_y + half_h))
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)  # whole pixels, both ends included
        resized = resize_bilinear(padded[r], h, w)  # (h, w)
        x_start, x_stop = max(x1, 0), min(x2 + 1, im_w)  # the part of the box inside the image
        y_start, y_stop = max(y1, 0), min(y2 + 1, im_h)
        if x_stop > x_start and y_stop > y_start:
            out[r, 0, y_start:y_stop, x_start:x_stop] = resized[y_start - y1 : y_stop - y1, x_start - x1 : x_stop - x1]
    return out


# --- task (c) ----------------------------------------------------------------------------------
def axis_weights(start, length, bins, size):
    """RoIAlign along one axis (aligned=False, adaptive sampling): (bins, size), row p the summed
    bilinear weights of bin p's sample points on the ``size`` pixels, and the points per bin."""
    length = max(length, 1.0)  # aligned=False: a box is at least 1 pixel long
    bin_size = length / bins
    grid = math.ceil(length / bins)  # adaptive: about one sample point per pixel
    weights = np.zeros((bins, size))
    for p in range(bins):
        for i in range(grid):
            t = start + p * bin_size + (i + 0.5) * bin_size / grid  # the centre of sub-bin i
            if t < -1.0 or t > size:  # more than one pixel outside: reads 0 (and still counts)
                continue
            t = max(t, 0.0)
            low = int(t)
            if low >= size - 1:
                low = high = size - 1
                t = float(low)
            else:
                high = low + 1
            weights[p, low] += 1.0 - (t - low)
            weights[p, high] += t - low
    return weights, grid


def mask_targets(gt_masks, proposals, matched_idxs, M=28):
    """(G, H, W) masks, (R, 4) proposals, (R,) matched indices -> (R, M, M) RoIAlign targets."""
    _, H, W = gt_masks.shape
    out = np.zeros((len(proposals), M, M))
    for r, (x1, y1, x2, y2) in enumerate(proposals):
        mask = gt_masks[matched_idxs[r]].astype(np.float64)  # (H, W): the proposal's own object
        Wy, g_h = axis_weights(y1, y2 - y1, M, H)  # (M, H)
        Wx, g_w = axis_weights(x1, x2 - x1, M, W)  # (M, W)
        # separable: the weight of a sample point on pixel (y, x) is (its weight on y) * (its weight on x)
        out[r] = Wy @ mask @ Wx.T / (g_h * g_w)  # (M, H) @ (H, W) @ (W, M) -> (M, M)
    return out


# --- task (d) ----------------------------------------------------------------------------------
def mask_loss(mask_logits, labels, mask_targets):
    """Mean BCE-with-logits of each RoI's ground-truth-class mask against its target; 0 without RoIs."""
    if len(labels) == 0:
        return 0.0  # no positive RoI: nothing to learn from (torchvision: mask_logits.sum() * 0)
    x = mask_logits[np.arange(len(labels)), labels]  # (R, K, M, M) -> (R, M, M): one channel per RoI
    loss = np.maximum(x, 0) - x * mask_targets + np.log1p(np.exp(-np.abs(x)))  # never overflows
    return float(loss.mean())


# --- task (e) ----------------------------------------------------------------------------------
SMOOTH_L1_BETA = 1.0 / 9  # the box loss's beta (torchvision's fastrcnn_loss)


def box_loss_backward(box_regression, labels, regression_targets):
    """d box_loss / d box_regression, (R, 4K): smooth L1's derivative on each positive's true-class
    box, divided by the number R of sampled RoIs; zero everywhere else."""
    R = len(labels)
    grad = np.zeros_like(box_regression)
    pos = np.flatnonzero(labels > 0)  # (P,) positives: the background has no box to regress
    cols = 4 * labels[pos][:, None] + np.arange(4)  # (P, 4): the columns 4k..4k+3 of each one's class k
    d = box_regression[pos[:, None], cols] - regression_targets[pos]  # (P, 4) prediction - target
    d_loss = np.where(np.abs(d) < SMOOTH_L1_BETA, d / SMOOTH_L1_BETA, np.sign(d))  # 0.5 d^2 / beta, |d| - beta / 2
    grad[pos[:, None], cols] = d_loss / max(R, 1)  # the sum over positives is divided by every sampled RoI
    return grad


# --- task (f) ----------------------------------------------------------------------------------
def mask_loss_backward(mask_logits, labels, mask_targets):
    """d mask_loss / d mask_logits, (R, K, M, M): (sigmoid(x) - t) / (R M M) on each RoI's
    ground-truth channel, zero on the others (and nothing to divide when R = 0)."""
    grad = np.zeros_like(mask_logits)
    rows = np.arange(len(labels))
    x = mask_logits[rows, labels]  # (R, M, M): the channels the loss reads
    e = np.exp(-np.abs(x))  # <= 1: never overflows
    sigmoid = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    grad[rows, labels] = (sigmoid - mask_targets) / max(x.size, 1)  # the mean over R x M x M pixels
    return grad
