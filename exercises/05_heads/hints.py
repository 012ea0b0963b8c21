"""Progressive hints of exercise 05, revealed one at a time by ``mrcnn-np check 05 --hint``."""

HINTS = {
    "postprocess_detections": [
        "Read torchvision's RoIHeads.postprocess_detections (models/detection/roi_heads.py): softmax,\n"
        "decode, clip, drop the background, filter, batched_nms, sort, top-k. Every (proposal, class)\n"
        "pair is a candidate with its own box and score; NMS compares boxes of one class only.",
        "In this order:\n"
        "  1. scores = softmax over the K classes of each row (subtract the row's max first);\n"
        "  2. decode every class's deltas against its proposal (weights 10, 10, 5, 5; dw / 5 and\n"
        "     dh / 5 clamped from above at log(1000 / 16)) -> (R, K, 4);\n"
        "  3. clip x to [0, width], y to [0, height];\n"
        "  4. drop column 0 and flatten proposal-major: (R, K-1, 4) -> (R*(K-1), 4), label k;\n"
        "  5. keep score > score_thresh and width, height >= 1e-2;\n"
        "  6. NMS within each class;  7. sort by decreasing score (stable), keep the first\n"
        "     detections_per_img.",
        "Decoding, with w, h, cx, cy of the proposal:\n"
        "  cx' = dx / 10 * w + cx        w' = exp(min(dw / 5, log(1000/16))) * w\n"
        "  cy' = dy / 10 * h + cy        h' = exp(min(dh / 5, log(1000/16))) * h\n"
        "  box = (cx' - 0.5 w', cy' - 0.5 h', cx' + 0.5 w', cy' + 0.5 h')\n"
        "deltas.reshape(R, K, 4); with widths[:, None] (R, 1) everything broadcasts to (R, K).\n"
        "np.broadcast_to(np.arange(K), (R, K)) gives the labels before flattening.",
        "NMS per class: for each label, members = np.nonzero(labels == label)[0], kept =\n"
        "members[nms(boxes[members], scores[members], nms_thresh)]; collect them all, SORT them by\n"
        "candidate index, then stably by decreasing score: kept[np.argsort(-scores[kept],\n"
        "kind='stable')]. Return labels.astype(np.int64); (0, 4), (0,), (0,) when nothing survives.",
    ],
    "paste_masks_in_image": [
        "Read torchvision's paste_masks_in_image, expand_masks, expand_boxes and paste_mask_in_image\n"
        "(models/detection/roi_heads.py): pad the mask, grow the box to match, truncate the\n"
        "corners, resize with F.interpolate(bilinear, align_corners=False), paste.",
        "Per mask and box:\n"
        "  scale = (M + 2 * padding) / M;  mask = np.pad(mask, padding)   (a ring of zeros)\n"
        "  half_w = (x2 - x1) * 0.5 * scale,  cx = (x2 + x1) * 0.5   (the same along y)\n"
        "  corners = int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h)\n"
        "  w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)   (both ends included)\n"
        "  resized = resize_bilinear(mask, h, w);  canvas[y1 : y2 + 1, x1 : x2 + 1] = resized",
        "resize_bilinear, along an axis of n_in input and n_out output pixels:\n"
        "  scale = n_in / n_out;  src = max((d + 0.5) * scale - 0.5, 0)\n"
        "  low = int(src);  high = min(low + 1, n_in - 1);  frac = src - low\n"
        "  out[d] = (1 - frac) * in[low] + frac * in[high]      (along x, then along y)",
        "Clip the paste: rows max(y1, 0) .. min(y2 + 1, H) and columns likewise, taken from the\n"
        "resized mask at the same place: resized[ya - y1 : yb - y1, xa - x1 : xb - x1]. int()\n"
        "truncates towards 0 (int(-3.7) = -3); math.floor would give -4. Use the padding argument.",
    ],
    "mask_targets": [
        "The target of a proposal is exercise 04's RoIAlign of its matched ground-truth mask into\n"
        "the proposal: torchvision's project_masks_on_boxes calls roi_align(gt_masks, rois, (M, M),\n"
        "1.0) with the defaults sampling_ratio=-1 and aligned=False.",
        "Paste your roi_align from exercise 04 and call, per proposal r:\n"
        "  mask = gt_masks[matched_idxs[r]].astype(float)\n"
        "  roi_align(mask[None, None], np.array([[0.0, x1, y1, x2, y2]]), (M, M), 1.0, -1, False)[0, 0]\n"
        "Index the masks with matched_idxs[r], not with r.",
        "Or vectorise, as the library: the weights are separable. Along y, a matrix W_y (M, H) whose\n"
        "row p holds the summed bilinear weights of bin p's sample rows (roi_h = max(y2 - y1, 1),\n"
        "g_h = ceil(roi_h / M) points per bin); along x, W_x (M, W); then\n"
        "  target = W_y @ mask @ W_x.T / (g_h * g_w)",
    ],
    "mask_loss": [
        "Only the ground-truth class's channel of each RoI is trained (Mask R-CNN, sec. 3), with a\n"
        "per-pixel sigmoid (binary cross-entropy), not a softmax over the classes.",
        "mask_logits[np.arange(R), labels] picks one channel per RoI, (R, M, M);\n"
        "mask_logits[:, labels] would be (R, R, M, M). Then the mean over all R x M x M pixels of\n"
        "the stable BCE with logits, max(x, 0) - x t + log(1 + exp(-|x|)), the rearranged\n"
        "-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], which never takes log(0).",
        "The steps, nearly in code:\n"
        "  if R == 0: return 0.0\n"
        "  x = mask_logits[np.arange(R), labels]\n"
        "  loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))   (never overflows)\n"
        "  return float(loss.mean())",
    ],
    "box_loss_backward": [
        "The loss is a sum of independent terms, one per coordinate of each positive RoI's box of\n"
        "its own class, divided by R: its gradient is each term's derivative divided by R, written\n"
        "into the columns that term reads, and zero everywhere else.",
        "Smooth L1 of d = prediction - target: 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta\n"
        "elsewhere. Its derivative is d / beta where |d| < beta and sign(d) elsewhere (the two agree\n"
        "at |d| = beta). R counts every sampled RoI, background included, not only the positives.",
        "The steps, nearly in code:\n"
        "  grad = np.zeros_like(box_regression)\n"
        "  pos = np.flatnonzero(labels > 0)\n"
        "  cols = 4 * labels[pos][:, None] + np.arange(4)         (P, 4)\n"
        "  d = box_regression[pos[:, None], cols] - regression_targets[pos]\n"
        "  grad[pos[:, None], cols] = where(|d| < beta, d / beta, sign(d)) / R",
    ],
    "mask_loss_backward": [
        "The loss reads one channel per RoI and averages R x M x M per-pixel BCE terms: the\n"
        "gradient is the derivative of each term, divided by R * M * M, in the channel it was read\n"
        "from; every other channel gets 0.",
        "For BCE with logits, d/dx [max(x, 0) - x t + log(1 + exp(-|x|))] = sigmoid(x) - t: the\n"
        "sigmoid's own derivative cancels. Compute sigmoid(x) without overflow: with e = exp(-|x|),\n"
        "it is 1 / (1 + e) where x >= 0 and e / (1 + e) where x < 0.",
        "The steps, nearly in code:\n"
        "  grad = np.zeros_like(mask_logits);  rows = np.arange(R)\n"
        "  x = mask_logits[rows, labels]                           (R, M, M)\n"
        "  grad[rows, labels] = (sigmoid(x) - mask_targets) / x.size\n"
        "With R = 0, there is nothing to divide: return the zeros.",
    ],
}
