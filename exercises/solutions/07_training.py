"""Exercise 07 -- a reference solution: SGD with momentum, the warm-up schedule, COCO's average precision.

Try the exercise first (exercises/07_training/). The library's optimiser and schedule are
mrcnn_np/nn/optim.py; its evaluation (pycocotools' COCOeval, used as it is) mrcnn_np/evaluate.py.
"""

import numpy as np


# --- task (a) ----------------------------------------------------------------------------------
def sgd_momentum_step(params, grads, velocities, lr, momentum, weight_decay):
    """One step of torch.optim.SGD: weight decay into the gradient, then momentum, then the update."""
    new_params, new_velocities = [], []
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = g + weight_decay * p  # the gradient of loss + (weight_decay / 2) |p|^2
        v = d.copy() if velocities is None else momentum * velocities[i] + d  # torch: the buffer starts at d
        new_params.append(p - lr * v)  # lr multiplies the buffer at each step, outside it
        new_velocities.append(v)
    return new_params, new_velocities


# --- task (b) ----------------------------------------------------------------------------------
def warmup_lr(iteration, base_lr, warmup_iters, warmup_factor, milestones, gamma):
    """The lr of iteration ``iteration``: linear warm-up from warmup_factor times multi-step decay."""
    if warmup_iters > 0:
        progress = min(iteration, warmup_iters) / warmup_iters  # 0 at the start, 1 from warmup_iters on
        warm = warmup_factor + (1 - warmup_factor) * progress
    else:
        warm = 1.0
    passed = sum(1 for m in milestones if m <= iteration)  # the lr drops at the milestone itself
    return base_lr * warm * gamma**passed


# --- task (c) ----------------------------------------------------------------------------------
MAX_DETS = 100  # COCO's limit per image for AP
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs


def box_overlaps(boxes, gt_boxes, gt_iscrowd):
    """(D, 4), (G, 4), (G,) -> (D, G): IoU, or intersection / detection area for a crowd region."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (D,)
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])  # (G,)
    top_left = np.maximum(boxes[:, None, :2], gt_boxes[None, :, :2])  # (D, G, 2)
    bottom_right = np.minimum(boxes[:, None, 2:], gt_boxes[None, :, 2:])  # (D, G, 2)
    wh = np.clip(bottom_right - top_left, 0, None)  # (D, G, 2)
    inter = wh[..., 0] * wh[..., 1]  # (D, G)
    union = np.where(gt_iscrowd[None, :], area[:, None], area[:, None] + gt_area[None, :] - inter)
    return inter / union


def match_image(boxes, gt_boxes, gt_iscrowd, threshold):
    """Greedy matching of one image's detections (sorted by score) -> (true positive, ignored) per detection."""
    overlaps = box_overlaps(boxes, gt_boxes, gt_iscrowd)  # (D, G)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    true_positive = np.zeros(len(boxes), dtype=bool)
    ignored = np.zeros(len(boxes), dtype=bool)
    for d in range(len(boxes)):
        best, match = min(threshold, 1 - 1e-10), -1
        for g in range(len(gt_boxes)):  # the objects first, then the crowd regions
            if taken[g] and not gt_iscrowd[g]:
                continue  # an object is found once
            if match > -1 and not gt_iscrowd[match] and gt_iscrowd[g]:
                break  # matched to an object: the crowd regions do not matter
            if overlaps[d, g] < best:
                continue
            best, match = overlaps[d, g], g
        if match == -1:
            continue  # a false positive
        if gt_iscrowd[match]:
            ignored[d] = True  # on a crowd region: neither a hit nor a false positive
        else:
            taken[match] = True
            true_positive[d] = True
    return true_positive, ignored


def average_precision(boxes, scores, image_ids, gt_boxes, gt_image_ids, gt_iscrowd, iou_threshold):
    """COCO's AP of one class at one IoU threshold: greedy matching, 101-point interpolated precision."""
    gt_iscrowd = np.asarray(gt_iscrowd, dtype=bool)
    all_scores, all_tp, all_ignored = [], [], []
    for image in np.unique(np.concatenate([image_ids, gt_image_ids])):  # ascending image ids
        d = np.flatnonzero(image_ids == image)
        d = d[np.argsort(-scores[d], kind="stable")][:MAX_DETS]  # (D_i,) by decreasing score
        g = np.flatnonzero(gt_image_ids == image)
        g = g[np.argsort(gt_iscrowd[g], kind="stable")]  # (G_i,) objects first, then crowd regions
        tp, ignored = match_image(boxes[d], gt_boxes[g], gt_iscrowd[g], iou_threshold)
        all_scores.append(scores[d])
        all_tp.append(tp)
        all_ignored.append(ignored)
    order = np.argsort(-np.concatenate(all_scores), kind="stable")  # ties: the image with the smaller id first
    tp = np.concatenate(all_tp)[order]
    counted = ~np.concatenate(all_ignored)[order]
    tp_sum = np.cumsum(tp[counted])  # (D',) true positives among the first k counted detections
    fp_sum = np.cumsum(~tp[counted])
    recall = tp_sum / np.count_nonzero(~gt_iscrowd)
    if len(tp_sum) == 0:
        return 0.0  # every detection lies on a crowd region: no recall level is reached
    precision = tp_sum / (tp_sum + fp_sum)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: the best precision at any higher recall
    index = np.searchsorted(recall, RECALL_LEVELS, side="left")  # the first detection reaching each recall level
    interpolated = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(np.mean(interpolated))
