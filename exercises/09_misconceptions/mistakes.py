"""The classic mistakes of exercise 09, each declared once (how the grader uses them: exercises/README.md)."""

ROUND = "x1, y1, x2, y2 = (round_half_away(v * spatial_scale) for v in box)"
WIDTH = "roi_w = max(x2 - x1 + 1, 1)"
HEIGHT = "roi_h = max(y2 - y1 + 1, 1)"
MAX = "out[r, :, p, q] = feature[:, h0:h1, w0:w1].max(axis=(1, 2))"
AT_LEAST = "return float(np.mean(best >= iou_threshold))"
BEST = "best = box_iou(gt_boxes, proposals).max(axis=1)"
LAST = "last = np.ceil((p + 1) * pool_bin) + start - 1"
ALIGN_BIN = "align_bin = max((hi - lo) * spatial_scale, 1.0) / bins"
IMAGE_PIXELS = "offsets.append((pooled_centre - exact_centre) / spatial_scale)"

MISTAKES = {
    "roi_pool": [
        ("halves rounded to even (np.round)",
         [(ROUND, "x1, y1, x2, y2 = (int(np.round(v * spatial_scale)) for v in box)")],
         "torchvision rounds the scaled corners half away from zero, as C's round does: 2.5 -> 3, -2.5 -> -3; "
         "np.round and Python's round send a half to the even integer (2.5 -> 2)"),
        ("no + 1 in the size of the rounded box",
         [(WIDTH, "roi_w = max(x2 - x1, 1)"), (HEIGHT, "roi_h = max(y2 - y1, 1)")],
         "RoIPool counts both end pixels of the rounded box: its width is x2 - x1 + 1 (at least 1), and the bins "
         "divide that"),
        ("the mean of each bin instead of the max",
         [(MAX, "out[r, :, p, q] = feature[:, h0:h1, w0:w1].mean(axis=(1, 2))")],
         "RoIPool takes the maximum of each bin (Fast R-CNN, sec. 2.1); averaging is what RoIAlign does with its "
         "sample points"),
    ],
    "proposal_recall": [
        ("strict > at the threshold", [(AT_LEAST, "return float(np.mean(best > iou_threshold))")],
         "a box whose best proposal has IoU exactly iou_threshold is recalled: IoU >= iou_threshold, as the "
         "Matcher's >= high_threshold"),
        ("the fraction of proposals instead of ground-truth boxes",
         [(BEST, "best = box_iou(gt_boxes, proposals).max(axis=0)")],
         "recall counts ground-truth boxes: for each box take its best proposal (the maximum over the proposals), "
         "then the fraction of boxes at or above the threshold; the fraction of proposals near some box is "
         "another number"),
    ],
    "roi_pool_misalignment": [
        ("the end of a RoIPool bin taken as its last pixel", [(LAST, "last = np.ceil((p + 1) * pool_bin) + start")],
         "a RoIPool bin is the half-open range [floor(p * bin) + start, ceil((p + 1) * bin) + start): its last "
         "pixel is one before the end, and the window's centre is the mean of its first and last pixels"),
        ("no minimum size of RoIAlign's box", [(ALIGN_BIN, "align_bin = (hi - lo) * spatial_scale / bins")],
         "with aligned=False, RoIAlign reads a box smaller than one feature pixel as 1 pixel: its bins are "
         "max((x2 - x1) * spatial_scale, 1) / pw wide (the same along y)"),
        ("offsets left in feature pixels", [(IMAGE_PIXELS, "offsets.append(pooled_centre - exact_centre)")],
         "the offsets are asked in image pixels: divide the difference on the feature map by spatial_scale"),
    ],
}
