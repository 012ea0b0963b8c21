"""Progressive hints of exercise 04, revealed one at a time by ``mrcnn-np check 04 --hint``."""

HINTS = {
    "bilinear_interpolate": [
        "A point between two pixels is a blend of them, weighted by nearness: at y = 2.25, row 2 weighs\n"
        "0.75 and row 3 weighs 0.25. Do it along y and along x: the weight of a pixel is the product.\n"
        "torchvision's rule is bilinear_interpolate in csrc/ops/cpu/roi_align_kernel.cpp.",
        "First the margin: a point more than one pixel outside (y < -1 or y > H, x < -1 or x > W)\n"
        "reads zeros. Then, per axis: clamp the coordinate at 0 from below, take the pixel at or\n"
        "before it (low) and the one after (high), and their weights 1 - (y - low) and y - low.\n"
        "At or past the last row there is no row after it: low = high = H - 1.",
        "The steps, nearly in code (the same along x with W):\n"
        "  if y < -1 or y > H or x < -1 or x > W: return zeros(C)\n"
        "  y = max(y, 0);  y_low = int(y)\n"
        "  if y_low >= H - 1: y_low = y_high = H - 1; y = H - 1   else: y_high = y_low + 1\n"
        "  ly = y - y_low;  hy = 1 - ly\n"
        "  value = hy*hx*f[:, y_low, x_low] + hy*lx*f[:, y_low, x_high]\n"
        "        + ly*hx*f[:, y_high, x_low] + ly*lx*f[:, y_high, x_high]",
        "Pitfalls: int(y) is floor only because y was clamped at 0 first (int(-0.5) is 0, and\n"
        "floor(-0.5) = -1 reads the LAST row in NumPy). The limits -1 and H are inside: y = H reads\n"
        "row H - 1. feature[:, H] is out of range, so the last-row case is not optional.",
    ],
    "roi_align": [
        "Loop over the rois, the ph x pw bins and the sample points of each bin, and call your\n"
        "bilinear_interpolate: readable, and fast enough here. Each roi reads the map of its own\n"
        "image, features[int(batch_index)].",
        "Per roi: scale the box onto the map (times spatial_scale, then minus 0.5 when aligned);\n"
        "its size, at least 1 x 1 when not aligned; the bin size, size / bins; the grid of sample\n"
        "points per bin (sampling_ratio, or ceil(size / bins) when sampling_ratio <= 0); and the\n"
        "count of points, max(g_h * g_w, 1).",
        "The steps, nearly in code:\n"
        "  offset = 0.5 if aligned else 0\n"
        "  x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)\n"
        "  roi_w, roi_h = x2 - x1, y2 - y1   (each max(., 1) when not aligned)\n"
        "  bin_w, bin_h = roi_w / pw, roi_h / ph\n"
        "  g_h = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / ph)   (g_w likewise)\n"
        "  out[r, :, p, q] = sum over i < g_h, j < g_w of\n"
        "      bilinear_interpolate(feature, y1 + p * bin_h + (i + 0.5) * bin_h / g_h,\n"
        "                                    x1 + q * bin_w + (j + 0.5) * bin_w / g_w) / count",
        "Pitfalls: divide by the number of sample points, including those outside the map that read\n"
        "0. An aligned, adaptive box of zero width has g_w = ceil(0) = 0 points: count = max(0, 1)\n"
        "and its bins read 0. Use math.ceil (not round or int) for the adaptive grid. The library's\n"
        "vectorised version is W_y @ feature @ W_x.T / count per box (mrcnn_np/ops/roi_align.py).",
    ],
    "roi_align_backward": [
        "RoIAlign is linear in the features: out[r, c, p, q] = sum over pixels of weight * feature.\n"
        "The gradient of a linear map is its transpose: each bin hands its gradient back to the\n"
        "very pixels it read, with the very weights it read them with.",
        "Run the forward's loops again (rois, bins, sample points, the same coordinates and the same\n"
        "count), but instead of reading four pixels, add to them: the bin's gradient, divided by\n"
        "the count, times each of the four bilinear weights. Points more than one pixel outside the\n"
        "map read nothing, so they send nothing back.",
        "The steps, nearly in code:\n"
        "  grad = zeros(input_shape);  g_map = grad[int(rois[r, 0])]   (the box's own image)\n"
        "  for each bin (p, q) and sample point (y, x), as in roi_align:\n"
        "      if the point is outside the margin: skip it\n"
        "      (y_low, y_high, hy, ly), (x_low, x_high, hx, lx) as in bilinear_interpolate\n"
        "      share = grad_output[r, :, p, q] / count               (C,)\n"
        "      g_map[:, y_low, x_low] += hy * hx * share   ... and the three other taps",
        "Pitfalls: accumulate with +=, never =: points of one bin, neighbouring bins and overlapping\n"
        "boxes share pixels (and at the last row y_low == y_high). A check of your own: for random\n"
        "features f and gradient g, sum(g * roi_align(f)) must equal sum(roi_align_backward(g) * f).",
    ],
    "map_levels": [
        "Small boxes are read from the fine maps: the FPN paper's eq. 1 picks level\n"
        "k = floor(k0 + log2(sqrt(w h) / 224)), with k0 = 4. A 224 x 224 box goes to P4; each halving\n"
        "of its side one level finer. torchvision: LevelMapper in ops/poolers.py.",
        "Vectorise over the boxes: the area from the corners, its square root, log2 of that over\n"
        "canonical_scale, plus canonical_level and eps, floored; then clip to [k_min, k_max] and\n"
        "convert to int64. Use the arguments, not the defaults.",
        "The steps, nearly in code:\n"
        "  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])\n"
        "  k = np.floor(canonical_level + np.log2(np.sqrt(area) / canonical_scale) + eps)\n"
        "  return np.clip(k, k_min, k_max).astype(np.int64)",
        "Pitfalls: the eps matters: [400.04, 400.04, 512.04, 512.04] is 111.99999999999994 px wide,\n"
        "and without + eps it falls to level 2. Floor, not round (200 px: 4 + log2(200/224) = 3.84 ->\n"
        "level 3). np.floor returns floats: .astype(np.int64) after the clip.",
    ],
}
