"""The classic mistakes of exercise 03, each declared once (how the grader uses them: exercises/README.md)."""

LOGITS = "flat_logits.append(level_logits.transpose(0, 2, 3, 1).reshape(N, H * W * A))"
DELTAS = "flat_deltas.append(level_deltas.transpose(0, 3, 4, 1, 2).reshape(N, H * W * A, 4))"
DW = "dw = np.minimum(deltas[..., 2], BBOX_XFORM_CLIP)  # clamped from above only"
DH = "dh = np.minimum(deltas[..., 3], BBOX_XFORM_CLIP)"
CLIP = ("    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)  # x1, x2\n"
        "    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)  # y1, y2\n")
SIZES = "    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]\n"
SELECTED = "    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]\n"
FINAL = 'kept = kept[np.argsort(-scores[kept], kind="stable")][:post_nms_top_n]'
OBJECTNESS = "binary_cross_entropy_with_logits(objectness[sampled], labels[sampled]).mean()"
BOX = "smooth_l1(deltas[pos] - regression_targets[pos], beta=1 / 9)"

MISTAKES = {
    "flatten_head_outputs": [
        ("anchors before locations", [(LOGITS, "flat_logits.append(level_logits.reshape(N, A * H * W))"),
                                      (DELTAS, DELTAS.replace("(0, 3, 4, 1, 2)", "(0, 1, 3, 4, 2)"))],
         "within a level, locations go outer and anchors inner (the anchors' order): move A behind H and W, "
         "(N, A, H, W) -> (N, H, W, A), before flattening"),
        ("locations column-major", [(LOGITS, LOGITS.replace("(0, 2, 3, 1)", "(0, 3, 2, 1)")),
                                    (DELTAS, DELTAS.replace("(0, 3, 4, 1, 2)", "(0, 4, 3, 1, 2)"))],
         "locations are row-major: y outer, x inner, as (H, W) flattens"),
        ("delta channels split as (4, A)", [("level_deltas.reshape(N, A, 4, H, W)",
                                             "level_deltas.reshape(N, 4, A, H, W).transpose(0, 2, 1, 3, 4)")],
         "the 4A delta channels are anchor-major: channel 4a + k is coordinate k of anchor a, so reshape "
         "(N, 4A, H, W) to (N, A, 4, H, W), not (N, 4, A, H, W)"),
    ],
    "decode_proposals": [  # recognised on the x and the y coordinates apart: dw, dh may be wrong alone
        ("decode without the clamp", [(DW, "dw = deltas[..., 2]"), (DH, "dh = deltas[..., 3]")],
         "no clamp: use exp(min(dw, BBOX_XFORM_CLIP)) and exp(min(dh, BBOX_XFORM_CLIP))"),
        ("decode clamping from both sides", [(DH, "dh = np.clip(deltas[..., 3], -BBOX_XFORM_CLIP, BBOX_XFORM_CLIP)")],
         "dw and dh are clamped from above only (min(dw, clip)): a very negative dw just makes a tiny box"),
        ("decode with widths x2 - x1 + 1", [("anchors[:, 2] - anchors[:, 0]", "anchors[:, 2] - anchors[:, 0] + 1")],
         "width = x2 - x1, no + 1 (torchvision's boxes are continuous coordinates)"),
        ("decode with the full width on either side", [("half_w = 0.5 * (np.exp(dw) * widths)",
                                                        "half_w = np.exp(dw) * widths")],
         "the box reaches half its width on either side of its centre: centre -+ 0.5 * width"),
    ],
    "select_proposals": [  # recognised on the boxes
        ("top-n over all levels together", [(
            "picks, levels = top_n_per_level(objectness, num_anchors_per_level, pre_nms_top_n)",
            "picks = np.argsort(-objectness, kind='stable')[:pre_nms_top_n]\n"
            "    levels = np.repeat(np.arange(len(num_anchors_per_level)), num_anchors_per_level)[picks]")],
         "pre_nms_top_n is taken per level, not over all anchors together (the finest level, with most anchors, would "
         "crowd out the others)"),
        ("NMS across levels", [("np.unique(levels):", "np.unique(levels)[:1]:"),
                               ("np.nonzero(levels == level)[0]", "np.arange(len(levels))")],
         "NMS runs within each level (batched_nms with the level as the category): a box may overlap a better box of "
         "another level and still be kept"),
        ("no NMS", [("kept.append(members[nms(boxes[members], scores[members], nms_thresh)])", "kept.append(members)")],
         "no boxes were suppressed: run NMS (within each level)"),
        ("survivors ordered level by level", [(FINAL, "kept = kept[:post_nms_top_n]")],
         "after NMS per level, order the survivors of all levels together by decreasing score (batched_nms's order), "
         "not level after level"),
        ("post_nms_top_n before NMS", [(SELECTED, SELECTED + '    first = np.sort(np.argsort(-scores, kind="stable")'
                                        '[:post_nms_top_n])\n' + SELECTED.replace("keep", "first"))],
         "keep post_nms_top_n after NMS, not before"),
        ("logits as scores", [("sigmoid(objectness[picks])", "objectness[picks]")],
         "the scores are probabilities, sigmoid(logit): that is what score_thresh is compared with, and what is "
         "returned"),
        ("score threshold strict", [("(scores >= score_thresh)", "(scores > score_thresh)")],
         "score_thresh is inclusive: keep scores >= score_thresh"),
        ("no clipping", [(CLIP, "")], "clip the boxes to the image: x to [0, width], y to [0, height]"),
        ("image size read as (width, height)", [("height, width = image_size", "width, height = image_size")],
         "image_size is (height, width): x is clipped to [0, width], y to [0, height]"),
        ("small boxes kept", [("keep = (widths >= min_size) & (heights >= min_size) & (scores >= score_thresh)",
                               "keep = scores >= score_thresh")],
         "drop the boxes narrower or lower than min_size (boxes outside the image become 0 wide once clipped)"),
        ("small boxes removed before clipping", [("    height, width = image_size\n" + CLIP + "\n" + SIZES,
                                                  SIZES + "    height, width = image_size\n" + CLIP)],
         "clip first, then drop small boxes: a box outside the image is 0 wide only once clipped"),
        ("equal logits taken backwards", [('np.argsort(-objectness[offset : offset + n], kind="stable")',
                                           'np.argsort(objectness[offset : offset + n], kind="stable")[::-1]')],
         "equal logits: lower index first, both in the top-n and in its order (np.argsort(-x, kind='stable'); "
         "np.argsort(x)[::-1] puts ties backwards)"),
    ],
    "rpn_loss": [  # recognised on loss_objectness and loss_box apart
        ("objectness loss over every labelled anchor", [(OBJECTNESS, OBJECTNESS.replace("[sampled]", "[labels >= 0]"))],
         "the objectness loss averages over the sampled anchors only (sampled_pos | sampled_neg), not over every "
         "labelled anchor"),
        ("objectness loss over every anchor", [(OBJECTNESS, OBJECTNESS.replace("[sampled]", ""))],
         "the objectness loss averages over the sampled anchors only: ignored (-1) and unsampled anchors do not "
         "count"),
        ("objectness loss a sum", [(OBJECTNESS, OBJECTNESS.replace(".mean()", ".sum()"))],
         "the objectness loss is a mean over the sampled anchors, not a sum"),
        ("objectness loss over the positives", [(OBJECTNESS, OBJECTNESS.replace("[sampled]", "[pos]"))],
         "the negatives count too: average over sampled_pos | sampled_neg"),
        ("box loss divided by the positives", [("/ len(sampled)", "/ len(pos)")],
         "divide the box loss by the number of sampled anchors (positives and negatives), not by the number of "
         "positives"),
        ("box loss divided by all anchors", [("/ len(sampled)", "/ len(labels)")],
         "divide the box loss by the number of sampled anchors, not by all anchors"),
        ("box loss a mean", [(BOX + ".sum() / len(sampled)", BOX + ".mean()")],
         "sum the smooth L1 over the positives and their 4 coordinates, then divide by the number of sampled "
         "anchors: not a mean over the entries"),
        ("box loss not divided", [(BOX + ".sum() / len(sampled)", BOX + ".sum()")],
         "divide the summed box loss by the number of sampled anchors"),
        ("smooth L1 with beta 1", [("beta=1 / 9)", "beta=1.0)")],
         "beta = 1/9, not 1: the loss is quadratic for |d| < 1/9 only"),
        ("smooth L1 without the division by beta", [("0.5 * d * d / beta", "0.5 * d * d")],
         "the quadratic part is 0.5 d^2 / beta (the two pieces meet at |d| = beta)"),
        ("L1 instead of smooth L1", [(BOX, "np.abs(deltas[pos] - regression_targets[pos])")],
         "smooth L1, not L1: 0.5 d^2 / beta where |d| < beta"),
        ("box loss over every positive", [(BOX, BOX.replace("[pos]", "[labels == 1]"))],
         "only the sampled positives count, not every positive anchor"),
        ("box loss over the negatives too", [(BOX, BOX.replace("[pos]", "[sampled]"))],
         "the box loss covers the sampled positives only: negatives have no box"),
    ],
}
