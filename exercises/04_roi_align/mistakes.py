"""The classic mistakes of exercise 04, each declared once (how the grader uses them: exercises/README.md)."""

OUTSIDE = "if y < -1.0 or y > H or x < -1.0 or x > W:"
NO_MARGIN = "if y < 0.0 or y > H or x < 0.0 or x > W:"
CLAMP = "    t = max(t, 0.0)  # between -1 and 0: read the first pixel\n"
OFFSET = "offset = 0.5 if aligned else 0.0"
MIN_ONE = "if not aligned:  #"
SCALED = "x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)"
GRID_H = "g_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)"
GRID_W = "g_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)"
LEVEL = "k = np.floor(canonical_level + np.log2(scale / canonical_scale) + eps)"
CLIP = "return np.clip(k, k_min, k_max).astype(np.int64)"
SHARE = "share = 1.0 / max(n_y * n_x, 1)"
SKIP_OUTSIDE = (" " * 24 + "if not (-1.0 <= y <= H and -1.0 <= x <= W):  # read 0: no gradient flows back\n"
                + " " * 28 + "continue\n")
TAPS = [f"grad_map[:, {a}, {b}] += " for a in ("y_low", "y_high") for b in ("x_low", "x_high")]
MARGIN = ("a point reads 0 only when it is more than one pixel outside: y < -1 or y > H, x < -1 or x > W; between -1 "
          "and 0 it is clamped to 0 and reads the first row / column")

MISTAKES = {
    "bilinear_interpolate": [
        ("no -1 margin: points between -1 and 0 read 0", [(OUTSIDE, NO_MARGIN)], MARGIN),
        ("the limits -1 and H taken as outside", [(OUTSIDE, "if y <= -1.0 or y >= H or x <= -1.0 or x >= W:")],
         "the limits are inside: y = -1 and y = H (x = -1, x = W) read the edge pixel; zeros only for y < -1 or y > H "
         "(x < -1 or x > W)"),
        ("negative coordinates not clamped (int truncates to 0: extrapolation)", [(CLAMP, "")],
         "clamp a negative coordinate to 0 before taking int(y) (y = max(y, 0)): a point between -1 and 0 reads row 0 "
         "with weight 1, it does not extrapolate"),
        ("negative coordinates not clamped, floor (index -1: the last row)", [(CLAMP, ""), ("low = int(t)",
                                                                                            "low = math.floor(t)")],
         "clamp a negative coordinate to 0 first (y = max(y, 0)): floor(-0.5) is -1, and feature[:, -1] is the *last* "
         "row in NumPy"),
        ("rounding instead of flooring", [("low = int(t)", "low = round(t)")],
         "y_low = int(y), the pixel at or before the point (floor), not the nearest one (round)"),
        ("weights of the two neighbours swapped", [("1.0 - frac, frac", "frac, 1.0 - frac")],
         "the nearer pixel weighs more: y_low gets hy = 1 - (y - y_low), y_high gets ly = y - y_low"),
    ],
    "roi_align": [
        ("no -0.5 shift when aligned", [(OFFSET, "offset = 0.0")],
         "aligned=True shifts the scaled box by half a pixel: x1 * spatial_scale - 0.5 (all four coordinates)"),
        ("the -0.5 shift also when not aligned", [(OFFSET, "offset = 0.5")],
         "shift by -0.5 only when aligned=True; aligned=False (Mask R-CNN's default) uses x1 * spatial_scale as it is"),
        ("a +0.5 shift when aligned", [(OFFSET, "offset = -0.5 if aligned else 0.0")],
         "aligned=True shifts by -0.5 (x1 * spatial_scale - 0.5), not +0.5"),
        ("shift before scaling", [(SCALED, "x1, y1, x2, y2 = ((v - offset) * spatial_scale for v in box)")],
         "scale first, then shift: x1 * spatial_scale - 0.5, not (x1 - 0.5) * spatial_scale"),
        ("no max(size, 1) when not aligned", [(MIN_ONE, "if False:  #")],
         "when aligned=False, a box smaller than one feature pixel is read as 1 pixel: roi_w = max(x2 - x1, 1), "
         "roi_h = max(y2 - y1, 1), on the scaled box"),
        ("max(size, 1) also when aligned", [(MIN_ONE, "if True:  #")],
         "the minimum size of 1 pixel is for aligned=False only; with aligned=True a tiny box stays tiny"),
        ("averaging over the points inside the map only", [
            ("total = np.zeros(C, dtype=features.dtype)\n", "total = np.zeros(C, dtype=features.dtype)\n"
                                                            "                count = 0\n"),
            ("# (C,); 0 outside the map\n", "# (C,); 0 outside the map\n                        count += -1 <= y "
                                            "<= feature.shape[1] and -1 <= x <= feature.shape[2]\n"),
            ("out[r, :, p, q] = total / count", "out[r, :, p, q] = total / max(count, 1)")],
         "divide by the number of sample points, max(g_h * g_w, 1), including those outside the map that read 0, not "
         "by the number inside"),
        ("count without max(., 1): 0 / 0 for a box without sample points", [("max(g_h * g_w, 1)", "g_h * g_w")],
         "count = max(g_h * g_w, 1): with sampling_ratio <= 0 a box of zero width has g_w = 0 sample columns, and its "
         "bins read 0, not 0 / 0"),
        ("adaptive grid rounded to the nearest", [(GRID_H, GRID_H.replace("math.ceil", "round")),
                                                  (GRID_W, GRID_W.replace("math.ceil", "round"))],
         "the adaptive grid rounds up: g_h = ceil(roi_h / ph), not round(roi_h / ph)"),
        ("adaptive grid rounded down", [(GRID_H, GRID_H.replace("math.ceil", "int")),
                                        (GRID_W, GRID_W.replace("math.ceil", "int"))],
         "the adaptive grid rounds up: g_h = ceil(roi_h / ph), not floor or int()"),
        ("sampling_ratio <= 0 taken literally", [(GRID_H, "g_h = sampling_ratio"), (GRID_W, "g_w = sampling_ratio")],
         "sampling_ratio <= 0 means adaptive: ceil(roi_h / ph) x ceil(roi_w / pw) points per bin"),
        ("samples at the sub-bins' corners", [("(i + 0.5) * bin_h / g_h", "i * bin_h / g_h"),
                                              ("(j + 0.5) * bin_w / g_w", "j * bin_w / g_w")],
         "sample at the centres of the g_h x g_w sub-bins: y1 + p * bin_h + (i + 0.5) * bin_h / g_h"),
        ("samples at the sub-bins' far corners", [("(i + 0.5) * bin_h / g_h", "(i + 1) * bin_h / g_h"),
                                                  ("(j + 0.5) * bin_w / g_w", "(j + 1) * bin_w / g_w")],
         "sample at the centres of the g_h x g_w sub-bins: i + 0.5 with i counted from 0"),
        ("no spatial_scale", [(SCALED, "x1, y1, x2, y2 = (v - offset for v in box)")],
         "rois are in image pixels: multiply them by spatial_scale to get feature-map coordinates"),
        ("every box read from the first image", [("features[int(batch_index)]", "features[0]")],
         "read each box from its own image: features[int(rois[r, 0])]"),
        ("roi_align on a bilinear_interpolate without the -1 margin", [(OUTSIDE, NO_MARGIN)],
         "a sample point reads 0 only when it is more than one pixel outside the map (y < -1 or y > H, x < -1 or "
         "x > W), as in task (a)"),
    ],
    "roi_align_backward": [
        ("the gradient not divided by the sample count", [(SHARE, "share = 1.0")],
         "each bin is the mean of its g_h x g_w sample points: a point receives the bin's gradient divided by "
         "max(g_h * g_w, 1) (the forward's count), not all of it"),
        ("points outside the map send gradient to the edge", [(SKIP_OUTSIDE, "")],
         "a point more than one pixel outside the map (y < -1 or y > H, x < -1 or x > W) read 0 in the forward: it "
         "depends on no pixel, so it sends no gradient back (its share is dropped, not given to the edge)"),
        ("taps overwritten instead of accumulated", [(tap, tap.replace(" += ", " = ")) for tap in TAPS],
         "accumulate with +=: sample points of one bin, of neighbouring bins and of overlapping boxes share pixels, "
         "and each adds its part of the gradient"),
        ("every box's gradient into the first image", [("grad_input[int(rois[r, 0])]", "grad_input[0]")],
         "send each box's gradient to the map of its own image: grad_input[int(rois[r, 0])]"),
    ],
    "map_levels": [
        ("levels without eps", [(LEVEL, LEVEL.replace(" + eps)", ")"))],
         "add eps before the floor: a box of 112 x 112 px at x1 = 400.04 is 111.99999999999994 px wide in floating "
         "point, and must stay on level 3"),
        ("levels rounded instead of floored", [(LEVEL, LEVEL.replace("np.floor", "np.round"))],
         "floor, not round: a box of 200 px has 4 + log2(200 / 224) = 3.84, level 3"),
        ("levels not clamped", [(CLIP, "return k.astype(np.int64)")],
         "clamp the level to [k_min, k_max] (np.clip): no level below k_min or above k_max"),
        ("level indices k - k_min instead of levels", [(CLIP, CLIP + " - k_min")],
         "return the level k itself (k_min..k_max), not the index k - k_min that LevelMapper returns"),
        ("level of the area instead of its square root", [("scale = np.sqrt(area)", "scale = area")],
         "a box's scale is sqrt(area), the side of the square of the same area"),
        ("natural log", [(LEVEL, LEVEL.replace("np.log2", "np.log"))],
         "log2, not the natural logarithm: one level up per doubling of the box's side"),
        ("defaults written in instead of the arguments", [(LEVEL, "k = np.floor(4 + np.log2(scale / 224) + 1e-6)"),
                                                          (CLIP, "return np.clip(k, 2, 5).astype(np.int64)")],
         "use the arguments k_min, k_max, canonical_scale, canonical_level and eps: the grader passes other values "
         "than the defaults"),
    ],
}
