"""Progressive hints of exercise 02, revealed one at a time by ``mrcnn-np check 02 --hint``."""

HINTS = {
    "box_iou": [
        "The overlap of two boxes is a box too: its top-left corner is the larger of the two\n"
        "top-left corners, its bottom-right corner the smaller of the two bottom-right corners.\n"
        "The union is both areas minus the intersection, which both areas contain.",
        "No loops: boxes1[:, None, :2] (R1, 1, 2) against boxes2[None, :, :2] (1, R2, 2) broadcasts\n"
        "to all (R1, R2, 2) pairs at once (np.maximum for the top-left corners, np.minimum for the\n"
        "bottom-right). Clamp the overlap's width and height at 0, each, then multiply them.",
        "The steps, nearly in code:\n"
        "  area1, area2 = box_area(boxes1), box_area(boxes2)\n"
        "  top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])          (R1, R2, 2)\n"
        "  bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])\n"
        "  wh = np.clip(bottom_right - top_left, 0, None)\n"
        "  inter = wh[..., 0] * wh[..., 1]\n"
        "  iou = inter / (area1[:, None] + area2[None, :] - inter)",
        "Pitfalls: clamping the product instead of each side fails for boxes apart on both axes\n"
        "(two negative sides, a positive product). Forgetting to subtract the intersection gives\n"
        "identical boxes an IoU of 0.5.",
    ],
    "cell_anchors": [
        "An anchor of size s and aspect ratio r (height / width) has area s**2 and h / w = r:\n"
        "h = s * sqrt(r), w = s / sqrt(r). Read generate_anchors in torchvision's\n"
        "models/detection/anchor_utils.py, and note the dtype it computes in.",
        "Make float32 arrays of the sizes and ratios first and stay in float32. An outer product\n"
        "(ratios as rows, sizes as columns) flattened row by row gives ratios outer, sizes inner.\n"
        "Stack the corners (-w, -h, w, h) / 2 and round them with np.round (half to even).",
        "The steps, nearly in code:\n"
        "  scales = np.asarray(sizes, dtype=np.float32); ratios = np.asarray(aspect_ratios, np.float32)\n"
        "  h_ratios = np.sqrt(ratios); w_ratios = 1 / h_ratios\n"
        "  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)       (K*S,), hs likewise\n"
        "  return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)",
        "Pitfalls: floor(x + 0.5) rounds half up (22.5 -> 23): size 45, ratio 1 must give\n"
        "[-22, -22, 22, 22]. In float64, ratio 1.69 with size 10 gives 6.5 (rounds to 6) where float32\n"
        "gives 6.5000005 (rounds to 7, torchvision's answer).",
    ],
    "grid_anchors": [
        "Each level repeats its cell anchors at every location of its feature map, shifted by the\n"
        "location's position in image pixels: column x times the x stride, row y times the y stride.\n"
        "torchvision: AnchorGenerator.grid_anchors.",
        "Per level: the strides (integer division of the image size by the feature size), a\n"
        "row-major grid of shifts (np.meshgrid(..., indexing='ij')), shifts (h*w, 1, 4) plus cell\n"
        "anchors (1, A, 4) broadcast to (h*w, A, 4); reshape to (h*w*A, 4); concatenate the levels.",
        "The steps, nearly in code:\n"
        "  for (h, w), s, r in zip(feature_sizes, sizes, aspect_ratios):\n"
        "      base = cell_anchors(s, r)                                         (A, 4)\n"
        "      stride_h, stride_w = H // h, W // w\n"
        "      sy, sx = np.meshgrid(np.arange(h) * stride_h, np.arange(w) * stride_w, indexing='ij')\n"
        "      shifts = np.stack([sx, sy, sx, sy], axis=-1).reshape(-1, 1, 4)\n"
        "      levels.append((shifts + base[None]).reshape(-1, 4))\n"
        "  return np.concatenate(levels).astype(np.float32)",
        "Pitfalls: locations outer, anchors inner (the RPN's outputs are flattened that way, so\n"
        "anchor i meets prediction i). x moves by W // w_l, y by H // h_l; true division gives\n"
        "fractional strides torchvision does not use.",
    ],
    "encode": [
        "Turn both sets of boxes into centres and sizes first; then the deltas are the centre shift\n"
        "measured in the proposal's size, and the log of the size ratio, each times its weight.\n"
        "R-CNN, appendix C; torchvision's encode_boxes in models/detection/_utils.py.",
        "A helper (R, 4) corners -> (cx, cy, w, h), each (R,), with w = x2 - x1 and cx = x1 + 0.5 w.\n"
        "Careful with the names: the reference boxes are the targets G, the proposals are P.",
        "The steps, nearly in code:\n"
        "  px, py, pw, ph = centres_and_sizes(proposals)\n"
        "  gx, gy, gw, gh = centres_and_sizes(reference_boxes)\n"
        "  deltas = np.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,\n"
        "                     ww * np.log(gw / pw), wh * np.log(gh / ph)], axis=1)",
    ],
    "decode": [
        "Invert encode: from dx, dy, dw, dh and the box P, recover the centre and the size of G,\n"
        "then its corners. The only new thing is the clamp of dw / ww and dh / wh at clip.",
        "Divide each delta by its weight first, then clamp the size deltas from above only\n"
        "(np.minimum(dw, clip)), then: centre = delta * size + centre of P, size = exp(delta) * size\n"
        "of P; corners at centre -/+ half the size.",
        "The steps, nearly in code:\n"
        "  cx, cy, w, h = centres_and_sizes(boxes)\n"
        "  dw = np.minimum(deltas[:, 2] / ww, clip);  dh = np.minimum(deltas[:, 3] / wh, clip)\n"
        "  px = deltas[:, 0] / wx * w + cx;  py = deltas[:, 1] / wy * h + cy\n"
        "  pw = np.exp(dw) * w;  ph = np.exp(dh) * h\n"
        "  return np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=1)",
        "Pitfalls: np.clip(dw, -clip, clip) also clamps from below (wrong); min(dw, clip) / ww clamps\n"
        "before the weight (wrong for weights other than 1); use the clip argument, not the constant.",
    ],
    "nms": [
        "Greedy: the best remaining box is always kept; it then removes every remaining box that\n"
        "overlaps it too much; repeat with the best of what is left. The loop runs over kept boxes,\n"
        "not over pairs.",
        "Sort once by decreasing score with a stable sort (np.argsort(-scores, kind='stable')), so\n"
        "ties keep index order. Each round compares one box with all the remaining ones, with your\n"
        "box_iou (boxes[best][None] is a (1, 4) array), and filters them, which keeps them sorted.",
        "The steps, nearly in code:\n"
        "  order = np.argsort(-scores, kind='stable');  keep = []\n"
        "  while order.size:\n"
        "      best, rest = order[0], order[1:];  keep.append(best)\n"
        "      iou = box_iou(boxes[best][None], boxes[rest])[0]\n"
        "      order = rest[~(iou > iou_threshold)]\n"
        "  return np.array(keep, dtype=np.int64)",
        "Pitfalls: > not >= (an IoU equal to the threshold survives); np.argsort(scores)[::-1] visits\n"
        "ties backwards; return indices into boxes, not positions in the sorted order; np.array([])\n"
        "is float64, so give the dtype.",
    ],
}
