"""Progressive hints of exercise 03, revealed one at a time by ``mrcnn-np check 03 --hint``."""

HINTS = {
    "flatten_head_outputs": [
        "A convolution puts the anchors on the channel axis, outside the locations; the anchors'\n"
        "order has them inside (level, then location, then anchor). Per level, move the anchor\n"
        "axis behind H and W before flattening, then concatenate the levels along axis 1.",
        "Logits: (N, A, H, W) -> transpose to (N, H, W, A) -> reshape (N, H*W*A). Deltas: the 4A\n"
        "channels are anchor-major (channel 4a + k), so first reshape (N, 4A, H, W) to\n"
        "(N, A, 4, H, W), then transpose to (N, H, W, A, 4) and reshape to (N, H*W*A, 4).",
        "The steps, nearly in code:\n"
        "  for lg, dl in zip(logits, deltas):\n"
        "      N, A, H, W = lg.shape\n"
        "      flat_logits.append(lg.transpose(0, 2, 3, 1).reshape(N, H * W * A))\n"
        "      flat_deltas.append(dl.reshape(N, A, 4, H, W).transpose(0, 3, 4, 1, 2).reshape(N, -1, 4))\n"
        "  return np.concatenate(flat_logits, axis=1), np.concatenate(flat_deltas, axis=1)",
        "Pitfalls: a plain reshape(N, -1) of (N, A, H, W) puts the anchors outer (the classic mistake);\n"
        "(N, 4, A, H, W) splits the channels the wrong way round. The grader's message names the\n"
        "input entry it expected at the first wrong position and the one you put there.",
    ],
    "decode_proposals": [
        "This is exercise 02's decode with weights (1, 1, 1, 1), for a batch: the anchors are\n"
        "the same for every image, so compute their widths, heights and centres once, as (total,)\n"
        "arrays, and let them broadcast against the (N, total) deltas.",
        "deltas[..., 0] is (N, total); (N, total) * (total,) broadcasts over the images. Clamp dw\n"
        "and dh from above at BBOX_XFORM_CLIP, exponentiate, and build the corners at the centre\n"
        "minus and plus half the size; np.stack(..., axis=-1) gives (N, total, 4).",
        "The steps, nearly in code:\n"
        "  w = anchors[:, 2] - anchors[:, 0];  cx = anchors[:, 0] + 0.5 * w   (h, cy likewise)\n"
        "  dw = np.minimum(deltas[..., 2], BBOX_XFORM_CLIP)                    (dh likewise)\n"
        "  px = deltas[..., 0] * w + cx;  pw = np.exp(dw) * w                  (py, ph likewise)\n"
        "  return np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=-1)",
        "Pitfalls: without the clamp an untrained head's dw = 50 gives inf; np.clip(dw, -c, c)\n"
        "clamps from below too, which the grader's very negative deltas show.",
    ],
    "select_proposals": [
        "Why per level: P2 holds three quarters of the anchors, so a global top-n would starve the\n"
        "large objects. Read filter_proposals in torchvision's models/detection/rpn.py: top-n per\n"
        "level, sigmoid, clip, remove small boxes, remove low scores, batched NMS by level, keep.",
        "Top-n per level: np.argsort(-logits_of_level, kind='stable')[:pre_nms_top_n], plus the\n"
        "level's offset, and remember each pick's level. Fancy indexing (proposals[picks]) copies,\n"
        "so clipping the copy in place leaves the input alone. Filter boxes, scores and levels with\n"
        "one boolean mask.",
        "The steps, nearly in code:\n"
        "  picks, levels = top-n indices of each level, concatenated; the level of each\n"
        "  boxes, scores = proposals[picks], sigmoid(objectness[picks])\n"
        "  boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width);  boxes[:, 1::2] likewise with height\n"
        "  keep = (widths >= min_size) & (heights >= min_size) & (scores >= score_thresh)\n"
        "  boxes, scores, levels = boxes[keep], scores[keep], levels[keep]\n"
        "  for each level: members = np.nonzero(levels == level)[0]\n"
        "                  kept += members[nms(boxes[members], scores[members], nms_thresh)]\n"
        "  kept = np.sort(kept);  kept = kept[np.argsort(-scores[kept], kind='stable')][:post_nms_top_n]\n"
        "  return boxes[kept], scores[kept]",
        "Pitfalls: score >= score_thresh keeps a score equal to it; min_size is tested on the\n"
        "clipped box; np.argsort(x)[::-1] puts ties backwards; sort the kept indices before the\n"
        "stable sort by score so that ties go in candidate order; nothing surviving must give\n"
        "(0, 4) and (0,), not an error.",
    ],
    "rpn_loss": [
        "Only the sampled anchors count (sampled_pos | sampled_neg), never the ignored ones and never\n"
        "the positives the sampler did not draw. Both losses are divided by the same number, the size\n"
        "of the sample. torchvision: RegionProposalNetwork.compute_loss.",
        "BCE with logits, stably: max(x, 0) - x * t + log1p(exp(-|x|)), the rearranged\n"
        "-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]. Smooth L1 with beta: 0.5 d**2 / beta where\n"
        "|d| < beta, |d| - 0.5 * beta elsewhere (np.where).",
        "The steps, nearly in code:\n"
        "  pos = np.nonzero(sampled_pos)[0];  sampled = np.concatenate([pos, np.nonzero(sampled_neg)[0]])\n"
        "  loss_objectness = bce_with_logits(objectness[sampled], labels[sampled]).mean()\n"
        "  loss_box = smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9).sum() / len(sampled)\n"
        "  return float(loss_objectness), float(loss_box)",
        "Pitfalls: the naive log(1 - sigmoid(40)) is log(0) = -inf in float64; dividing the box loss\n"
        "by the number of positives (not of sampled anchors) blows up images with few objects;\n"
        "labels == 1 instead of sampled_pos counts positives the sampler did not draw.",
    ],
}
