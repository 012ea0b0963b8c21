"""The classic mistakes of exercise 05, each declared once (how the grader uses them: exercises/README.md)."""

SUPPRESS = "order = rest[~(iou > iou_threshold)]"
DW, DH = "dw = np.minimum(deltas[..., 2] / ww, clip)", "dh = np.minimum(deltas[..., 3] / wh, clip)"
CLIP_X = "    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)  # x1, x2\n"
CLIP_Y = "    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)  # y1, y2\n"
FLAT_BOXES = "boxes = boxes[:, 1:].reshape(-1, 4)"
FLAT_SCORES = "scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)"
FILTER = "keep = (scores > score_thresh) & (widths >= 1e-2) & (heights >= 1e-2)"
SELECTED = "    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]\n"
SOFTMAX = "scores = softmax(class_logits)"
SORT_KEPT = "kept = np.sort(np.concatenate(kept))"
FINAL = 'kept = kept[np.argsort(-scores[kept], kind="stable")][:detections_per_img]'
RETURN_A = "return boxes[kept], scores[kept], labels[kept].astype(np.int64)"
SCALE = "scale = (M + 2 * padding) / M"
PAD = "padded = np.pad(masks[:, 0], ((0, 0), (padding, padding), (padding, padding)))"
TO_INT = "(int(v) for v in (ctr_x - half_w"
SRC = "src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)"
LOW = "low = np.floor(src).astype(np.int64)"
MIN_ONE = "    length = max(length, 1.0)  # aligned=False: a box is at least 1 pixel long\n"
GRID = "grid = math.ceil(length / bins)"
TARGET = "out[r] = Wy @ mask @ Wx.T / (g_h * g_w)"
MATCHED = "mask = gt_masks[matched_idxs[r]].astype(np.float64)"
PICK = "x = mask_logits[np.arange(len(labels)), labels]"
BCE = "loss = np.maximum(x, 0) - x * mask_targets + np.log1p(np.exp(-np.abs(x)))"
MEAN = "return float(loss.mean())"
POS = "pos = np.flatnonzero(labels > 0)"
DIFF = "d = box_regression[pos[:, None], cols] - regression_targets[pos]"
BRANCH = "d_loss = np.where(np.abs(d) < SMOOTH_L1_BETA, d / SMOOTH_L1_BETA, np.sign(d))"
PER_ROI = "grad[pos[:, None], cols] = d_loss / max(R, 1)"
SIGMOID_GRAD = "grad[rows, labels] = (sigmoid - mask_targets) / max(x.size, 1)"

MISTAKES = {
    "postprocess_detections": [
        (">= in NMS", [(SUPPRESS, SUPPRESS.replace(">", ">="))],
         "NMS suppresses a box only when its IoU with a kept box is > nms_thresh, strictly: two boxes of IoU exactly "
         "0.5 are both kept"),
        ("NMS over all classes together", [("np.unique(labels):", "np.unique(labels)[:1]:"),
                                           ("np.nonzero(labels == label)[0]", "np.arange(len(labels))")],
         "NMS runs within each class: boxes of different classes never suppress each other"),
        ("no NMS", [("kept.append(members[nms(boxes[members], scores[members], nms_thresh)])", "kept.append(members)")],
         "no box was suppressed: run NMS (nms_thresh) within each class"),
        ("no clamp", [(DW, "dw = deltas[..., 2] / ww"), (DH, "dh = deltas[..., 3] / wh")],
         "clamp dw / ww and dh / wh from above at log(1000 / 16) before exp: a box grows at most 62.5 times"),
        ("clamp before dividing by the weights", [(DW, "dw = np.minimum(deltas[..., 2], clip) / ww"),
                                                  (DH, "dh = np.minimum(deltas[..., 3], clip) / wh")],
         "clamp after dividing by the weight: min(dw / 5, log(1000 / 16)), not min(dw, log(1000 / 16)) / 5"),
        ("clamp from both sides", [(DW, "dw = np.clip(deltas[..., 2] / ww, -clip, clip)"),
                                   (DH, "dh = np.clip(deltas[..., 3] / wh, -clip, clip)")],
         "dw and dh are clamped from above only (np.minimum): a very negative dw just makes a small box"),
        ("no weights", [("    wx, wy, ww, wh = weights\n", "    wx, wy, ww, wh = 1.0, 1.0, 1.0, 1.0\n")],
         "the box head's deltas are scaled by the weights (10, 10, 5, 5): dx / 10, dy / 10, dw / 5, dh / 5"),
        ("deltas read coordinate-major", [("deltas = deltas.reshape(R, -1, 4)",
                                           "deltas = deltas.reshape(R, 4, -1).transpose(0, 2, 1)")],
         "box_regression (R, 4K) holds class k's deltas in columns 4k..4k+3: reshape to (R, K, 4), not (R, 4, K)"),
        ("no clip", [(CLIP_X, ""), (CLIP_Y, "")], "clip the boxes to the image: x to [0, width], y to [0, height]"),
        ("image_shape read as (width, height)", [("height, width = image_shape", "width, height = image_shape")],
         "image_shape is (height, width): x is clipped to [0, width], y to [0, height]"),
        ("background kept", [(FLAT_BOXES, "boxes = boxes.reshape(-1, 4)"),
                             (FLAT_SCORES, "scores, labels = scores.reshape(-1), labels.reshape(-1)")],
         "drop the background: class 0 is never a detection (boxes[:, 1:], scores[:, 1:])"),
        ("labels counted from 0", [(RETURN_A, RETURN_A + " - 1")],
         "labels are class indices 1..K-1 (the background is 0): after dropping column 0, add 1 back"),
        ("scores >= score_thresh", [(FILTER, FILTER.replace("scores > score_thresh", "scores >= score_thresh"))],
         "keep scores > score_thresh, strictly: a score equal to it is dropped"),
        ("small boxes kept", [(FILTER, "keep = scores > score_thresh")],
         "drop boxes whose width or height is < 1e-2 once clipped (a box outside the image is 0 px wide)"),
        ("sigmoid instead of softmax", [(SOFTMAX, "scores = 1 / (1 + np.exp(-class_logits))")],
         "the scores are a softmax over the K classes of each proposal, not a sigmoid of each logit"),
        ("softmax over the proposals", [("x.max(axis=-1, keepdims=True)", "x.max(axis=0, keepdims=True)"),
                                        ("e.sum(axis=-1, keepdims=True)", "e.sum(axis=0, keepdims=True)")],
         "softmax over the classes (axis 1, each row sums to 1), not over the proposals (axis 0)"),
        ("logits as scores", [(SOFTMAX, "scores = class_logits.copy()")],
         "the scores are probabilities: softmax(class_logits) over the classes"),
        ("top detections_per_img before NMS", [(SELECTED, SELECTED + "    first = np.sort(np.argsort(-scores, kind='sta"
                                                "ble')[:detections_per_img])\n" + SELECTED.replace("keep", "first"))],
         "keep the best detections_per_img after NMS, not before"),
        ("no detections_per_img", [(FINAL, FINAL.replace("[:detections_per_img]", ""))],
         "keep at most detections_per_img detections (the best, after NMS)"),
        ("ties class-major (kept indices not sorted)", [(SORT_KEPT, "kept = np.concatenate(kept)")],
         "equal scores keep the candidates' order, proposal-major (candidate r * (K - 1) + k - 1): sort the kept "
         "indices before the stable sort by score, or the classes you looped over come first"),
        ("ties reversed", [('np.argsort(-scores, kind="stable")\n', 'np.argsort(scores, kind="stable")[::-1]\n'),
                           (FINAL, 'kept = kept[np.argsort(scores[kept], kind="stable")[::-1]][:detections_per_img]')],
         "equal scores: the earlier candidate first, in NMS and in the final order (np.argsort(-scores, "
         "kind='stable'); np.argsort(scores)[::-1] puts ties backwards)"),
        ("class after class, not sorted by score", [(SORT_KEPT, "kept = np.concatenate(kept)"),
                                                    (FINAL, "kept = kept[:detections_per_img]")],
         "return the detections of all classes together by decreasing score, not class after class"),
    ],
    "paste_masks_in_image": [
        ("no padding, no expansion", [(SCALE, "scale = 1.0"), (PAD, "padded = masks[:, 0]")],
         "pad the mask with one pixel of zeros on every side and grow the box by (M + 2) / M about its centre: the "
         "mask's edge then fades out across the box's border instead of stopping at it"),
        ("padding without expansion", [(SCALE, "scale = 1.0")],
         "the padded mask is (M + 2) / M larger than the mask: grow the box by that scale about its centre "
         "(half_w = (x2 - x1) * 0.5 * scale)"),
        ("expansion without padding", [(PAD, "padded = masks[:, 0]")],
         "the box grows by (M + 2) / M because the mask is padded: pad it with np.pad(mask, padding) first"),
        ("padding argument ignored", [(SCALE, "scale = (M + 2) / M"),
                                      (PAD, "padded = np.pad(masks[:, 0], ((0, 0), (1, 1), (1, 1)))")],
         "use the padding argument (the grader passes padding=2 once): scale = (M + 2 * padding) / M"),
        ("corners rounded", [(TO_INT, TO_INT.replace("int(v)", "round(v)"))],
         "truncate the grown box's corners towards 0 (int(), as torch's .to(torch.int64)), do not round them"),
        ("corners floored", [(TO_INT, TO_INT.replace("int(v)", "math.floor(v)"))],
         "truncate towards 0 (int(-3.7) = -3), not floor (-4): they differ for corners left of or above the image"),
        ("corners rounded up", [(TO_INT, TO_INT.replace("int(v)", "math.ceil(v)"))],
         "truncate the grown box's corners towards 0 (int()), not ceil"),
        ("align_corners=True", [("    scale = in_size / out_size\n    " + SRC, "    src = np.arange(out_size) * ("
                                 "(in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)")],
         "align_corners=False: src = (d + 0.5) * in / out - 0.5, pixel centres to pixel centres, not "
         "d * (in - 1) / (out - 1)"),
        ("source not clamped at 0", [(SRC, "src = (np.arange(out_size) + 0.5) * scale - 0.5"),
                                     (LOW, LOW.replace("np.floor(src)", "src"))],
         "clamp the source coordinate at 0: src = max((d + 0.5) * scale - 0.5, 0)"),
        ("scale inverted", [("    scale = in_size / out_size\n", "    scale = out_size / in_size\n")],
         "scale = in_size / out_size (how many input pixels per output pixel)"),
    ],
    "mask_targets": [
        ("targets aligned=True", [(MIN_ONE, "    start -= 0.5  # aligned=True\n")],
         "aligned=False (torchvision's project_masks_on_boxes): no half-pixel shift, and a box is at least 1 x 1 "
         "pixel"),
        ("targets without the minimum size", [(MIN_ONE, "")],
         "aligned=False reads a box smaller than a pixel as 1 pixel: roi_w = max(x2 - x1, 1), roi_h = max(y2 - y1, 1)"),
        ("sampling_ratio=2", [(GRID, "grid = 2")],
         "sampling_ratio is -1 here (adaptive: ceil(roi_h / M) x ceil(roi_w / M) points per bin), not 2 as in the "
         "heads' MultiScaleRoIAlign"),
        ("sampling_ratio=1", [(GRID, "grid = 1")],
         "sampling_ratio is -1 (adaptive): ceil(roi_h / M) x ceil(roi_w / M) points per bin, not one"),
        ("adaptive grid rounded", [(GRID, "grid = round(length / bins)")],
         "the adaptive grid rounds up: ceil(roi_h / M), not round"),
        ("adaptive grid rounded down", [(GRID, "grid = int(length / bins)")],
         "the adaptive grid rounds up: ceil(roi_h / M), not floor or int()"),
        ("targets transposed", [(TARGET, "out[r] = (Wy @ mask @ Wx.T / (g_h * g_w)).T")],
         "the targets are transposed: out[r, i, j] is bin row i (along y), column j (along x)"),
        ("every proposal reads the first mask", [(MATCHED, "mask = gt_masks[0].astype(np.float64)")],
         "each proposal reads its own matched object's mask: gt_masks[matched_idxs[r]]"),
        ("targets thresholded", [(TARGET, TARGET + " >= 0.5")],
         "do not threshold the targets: they are RoIAlign's fractions in [0, 1] (the BCE takes soft targets)"),
        ("box read as y1, x1, y2, x2", [("Wy, g_h = axis_weights(y1, y2 - y1, M, H)",
                                         "Wy, g_h = axis_weights(x1, x2 - x1, M, H)"),
                                        ("Wx, g_w = axis_weights(x1, x2 - x1, M, W)",
                                         "Wx, g_w = axis_weights(y1, y2 - y1, M, W)")],
         "a proposal is x1, y1, x2, y2: x (columns) first"),
    ],
    "mask_loss": [
        ("every class's mask in the loss", [(PICK, "x, mask_targets = mask_logits, mask_targets[:, None]")],
         "only the ground-truth class's channel counts: mask_logits[np.arange(R), labels], not every class's mask "
         "(Mask R-CNN decouples mask and class)"),
        ("channel labels - 1", [(PICK, PICK.replace("labels]", "labels - 1]"))],
         "channel k is class k, the background included (channel 0): use labels as they are, not labels - 1"),
        ("mask_logits[:, labels]", [(PICK, "x = mask_logits[:, labels]")],
         "mask_logits[:, labels] is (R, R, M, M): pick one channel per RoI with mask_logits[np.arange(R), labels]"),
        ("softmax over the classes", [(PICK + "  # (R, K, M, M) -> (R, M, M): one channel per RoI\n    " + BCE,
                                       "e = np.exp(mask_logits - mask_logits.max(axis=1, keepdims=True))\n"
                                       "    p = (e / e.sum(axis=1, keepdims=True))[np.arange(len(labels)), labels]\n"
                                       "    loss = -(mask_targets * np.log(p) + (1 - mask_targets) * np.log1p(-p))")],
         "a per-pixel sigmoid of the ground-truth class's logit, not a softmax over the classes: in Mask R-CNN the "
         "classes do not compete for a pixel"),
        ("a sum, not a mean", [(MEAN, "return float(loss.sum())")],
         "the loss is a mean over the R x M x M pixels, not a sum"),
        ("a mean per RoI, summed", [(MEAN, "return float(loss.mean(axis=(1, 2)).sum())")],
         "average over the RoIs too: a mean over all R x M x M pixels"),
        ("targets thresholded in the loss", [(BCE, BCE.replace("x * mask_targets", "x * (mask_targets >= 0.5)"))],
         "use the targets as they are (fractions), do not threshold them"),
    ],
    "box_loss_backward": [
        ("not divided by the number of sampled RoIs", [(PER_ROI, "grad[pos[:, None], cols] = d_loss")],
         "the summed smooth L1 is divided by the number R of sampled RoIs (fastrcnn_loss: / labels.numel()): "
         "divide the gradient by R too"),
        ("divided by the number of positives", [(PER_ROI, PER_ROI.replace("max(R, 1)", "max(len(pos), 1)"))],
         "divide by the number of sampled RoIs R, background included, not by the number of positives"),
        ("the quadratic branch not divided by beta", [(BRANCH, BRANCH.replace("d / SMOOTH_L1_BETA", "d"))],
         "where |d| < beta the loss is 0.5 d^2 / beta: its derivative is d / beta, not d"),
        ("the branches swapped", [(BRANCH, BRANCH.replace("<", ">="))],
         "d / beta where |d| < beta (the quadratic part), sign(d) where |d| >= beta (the linear part), not the "
         "other way round"),
        ("the sign flipped (target - prediction)", [(DIFF, "d = regression_targets[pos] - box_regression[pos[:, None], "
                                                           "cols]")],
         "differentiate with respect to the prediction: d = box_regression - target, so a prediction that is too "
         "large gets a positive gradient"),
        ("background RoIs trained too", [(POS, "pos = np.arange(R)")],
         "background RoIs (label 0) have no box target: only the positives' boxes get a gradient"),
    ],
    "mask_loss_backward": [
        ("not divided by the number of elements", [(SIGMOID_GRAD, "grad[rows, labels] = sigmoid - mask_targets")],
         "the loss is the mean over the R x M x M pixels: divide sigmoid(x) - t by R * M * M"),
        ("divided by the number of RoIs only", [(SIGMOID_GRAD, SIGMOID_GRAD.replace("max(x.size, 1)",
                                                                                    "len(labels)"))],
         "the mean is over every pixel of every RoI: divide by R * M * M, not by R"),
        ("divided by every channel's elements", [(SIGMOID_GRAD, SIGMOID_GRAD.replace("x.size", "mask_logits.size"))],
         "the mean is over the picked channels only: divide by R * M * M, not by R * K * M * M"),
        ("the sign flipped (t - sigmoid)", [(SIGMOID_GRAD, SIGMOID_GRAD.replace("sigmoid - mask_targets",
                                                                                "mask_targets - sigmoid"))],
         "d BCE / d x = sigmoid(x) - t: positive where the prediction is above its target"),
        ("the sigmoid's derivative chained in", [(SIGMOID_GRAD, SIGMOID_GRAD.replace(
            "(sigmoid - mask_targets)", "(sigmoid - mask_targets) * sigmoid * (1 - sigmoid)"))],
         "the logistic's derivative cancels in BCE with logits: d loss / d x = (sigmoid(x) - t) / (R M M), with no "
         "extra factor sigmoid(x) (1 - sigmoid(x))"),
    ],
}
