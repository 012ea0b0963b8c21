"""Progressive hints of exercise 09, revealed one at a time by ``mrcnn-np check 09 --hint``."""

HINTS = {
    "roi_pool": [
        "RoIPool quantises twice: the box's corners to whole feature pixels, then each bin's edges.\n"
        "torchvision's rule is roi_pool_forward_kernel_impl in csrc/ops/cpu/roi_pool_kernel.cpp;\n"
        "the library's version is mrcnn_np/ops/roi_pool.py (read it after trying).",
        "Per roi: round x1 * spatial_scale (and the other three) half away from zero, as C's round\n"
        "(2.5 -> 3, -2.5 -> -3) -- Python's round and np.round round halves to even, so write it\n"
        "with floor(|v| + 0.5) and the sign.\n"
        "The rounded box is x2 - x1 + 1 pixels wide (at least 1); a bin is that width / pw.",
        "Bin p of ph spans [p * bin_h, (p + 1) * bin_h) of the rounded box, a fractional range; it\n"
        "reads the whole pixels from the floor of its start to the ceiling of its end (end\n"
        "excluded), shifted by the box's start and clamped to the map. The steps, nearly in code\n"
        "(the same along x with W and pw):\n"
        "  bin_h = roi_h / ph\n"
        "  h0 = clamp(floor(p * bin_h) + y1, 0, H);  h1 = clamp(ceil((p + 1) * bin_h) + y1, 0, H)\n"
        "  out[r, :, p, q] = features[b, :, h0:h1, w0:w1].max(axis=(1, 2))  when h1 > h0 and w1 > w0\n"
        "  and 0 otherwise (start from np.zeros((R, C, ph, pw))).",
    ],
    "proposal_recall": [
        "Recall is about the objects, not the proposals: each ground-truth box is either found\n"
        "(some proposal overlaps it well enough) or missed.",
        "Compute the (G, P) IoU matrix (area of the intersection / area of the union, widths\n"
        "x2 - x1 without + 1), take each row's maximum (the box's best proposal), and count the\n"
        "rows whose maximum is >= iou_threshold.",
        "Nearly in code:\n"
        "  if len(proposals) == 0: return 0.0\n"
        "  lt = np.maximum(gt[:, None, :2], proposals[None, :, :2]);  rb = np.minimum(...2:...)\n"
        "  inter = prod(clip(rb - lt, 0)); iou = inter / (area_gt[:, None] + area_p[None] - inter)\n"
        "  return float(np.mean(iou.max(axis=1) >= iou_threshold))",
    ],
    "roi_pool_misalignment": [
        "Work on one axis at a time (y with ph, x with pw): the two are independent. On the\n"
        "feature map, find where RoIPool's bin p starts and ends, and where RoIAlign's bin p is.",
        "RoIPool (task (a)): start = round(x1 * s), end = round(x2 * s) halves away from zero,\n"
        "bin = (end - start + 1) / pw; bin q reads pixels floor(q * bin) + start up to\n"
        "ceil((q + 1) * bin) + start - 1. RoIAlign (aligned=False): its bin q is centred at\n"
        "x1 * s + (q + 0.5) * max((x2 - x1) * s, 1) / pw.",
        "Nearly in code, per axis:\n"
        "  q = np.arange(pw)\n"
        "  pooled = (np.floor(q * bin) + start + np.ceil((q + 1) * bin) + start - 1) / 2\n"
        "  exact = x1 * s + (q + 0.5) * max((x2 - x1) * s, 1.0) / pw\n"
        "  dx = (pooled - exact) / s        # feature pixels -> image pixels\n"
        "and return (dy, dx).",
    ],
}
