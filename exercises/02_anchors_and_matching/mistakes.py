"""The classic mistakes of exercise 02, each declared once (how the grader uses them: exercises/README.md)."""

DW, DH = "dw = np.minimum(deltas[:, 2] / ww, clip)", "dh = np.minimum(deltas[:, 3] / wh, clip)"
NOT_APART = ("boxes that do not overlap must have intersection 0: clamp the overlap's width and height at 0, each, "
             "before multiplying (boxes apart on both axes have two negative sides, a positive product)")

MISTAKES = {
    "box_iou": [
        ("IoU union without subtracting the intersection", [("area2[None, :] - inter", "area2[None, :]")],
         "union = area1 + area2 counts the intersection twice: subtract it once (identical boxes must give IoU 1, "
         "not 0.5)"),
        ("IoU without clamping the overlap at 0", [("np.clip(bottom_right - top_left, 0, None)",
                                                    "bottom_right - top_left")], NOT_APART),
        ("IoU clamping the product of the sides", [("np.clip(bottom_right - top_left, 0, None)",
                                                    "bottom_right - top_left"),
                                                   ("inter = wh[..., 0] * wh[..., 1]",
                                                    "inter = np.clip(wh[..., 0] * wh[..., 1], 0, None)")], NOT_APART),
    ],
    "cell_anchors": [
        ("anchors rounded half up", [("return np.round(corners)", "return np.floor(corners + 0.5)")],
         "round half to even as torch.round and np.round do (22.5 -> 22, -22.5 -> -22), not half up "
         "(floor(x + 0.5), or int(x + 0.5))"),
        ("anchors computed in float64", [("np.asarray(sizes, dtype=np.float32)", "np.asarray(sizes, dtype=np.float64)"),
                                         ("np.asarray(aspect_ratios, dtype=np.float32)",
                                          "np.asarray(aspect_ratios, dtype=np.float64)")],
         "compute in float32, as torchvision does: for ratio 1.69 and size 10, 10 * sqrt(1.69) / 2 is 6.5000005 in "
         "float32 and rounds to 7, but 6.5 in float64, which rounds to 6"),
        ("anchors with sizes outer, ratios inner", [("(w_ratios[:, None] * scales[None, :])", "(scales[:, None] * "
                                                     "w_ratios)"), ("(h_ratios[:, None] * scales[None, :])",
                                                                    "(scales[:, None] * h_ratios)")],
         "the anchors go ratios outer, sizes inner: row k * len(sizes) + s is ratio k, size s"),
        ("aspect ratio taken as width / height", [("w_ratios = 1 / h_ratios", "w_ratios, h_ratios = h_ratios, 1 / "
                                                                              "h_ratios")],
         "an aspect ratio is height / width: h = size * sqrt(ratio), w = size / sqrt(ratio)"),
        ("corners at the full size", [("hs], axis=1) / 2", "hs], axis=1)")],
         "the corners are at -w/2, -h/2, w/2, h/2 (the anchor is w wide, centred on 0)"),
        ("corners not rounded", [("return np.round(corners)", "return corners")],
         "round the corners to whole pixels (np.round)"),
    ],
    "grid_anchors": [
        ("grid anchors ordered anchor first, then location", [("shifts.reshape(-1, 1, 4) + base[None, :, :]",
                                                               "shifts.reshape(1, -1, 4) + base[:, None, :]")],
         "within a level, locations go outer and anchors inner: (h*w, A, 4) -> (h*w*A, 4)"),
        ("grid anchors in column-major order", [('indexing="ij")', 'indexing="xy")')],
         "locations are row-major: y outer, x inner (np.meshgrid(ys, xs, indexing='ij'))"),
        ("stride by true division", [("height // h, width // w", "height / h, width / w")],
         "stride = image size // feature size, an integer division (torchvision's)"),
        ("strides swapped", [("height // h, width // w", "width // w, height // h")],
         "x moves by the width stride W // w_l, y by the height stride H // h_l"),
    ],
    "decode": [  # recognised on the x and the y coordinates apart: dw, dh may be wrong alone
        ("decode without the clamp", [(DW, "dw = deltas[:, 2] / ww"), (DH, "dh = deltas[:, 3] / wh")],
         "no clamp: use min(dw / ww, clip) and min(dh / wh, clip) in exp"),
        ("decode clamping from both sides", [(DH, "dh = np.clip(deltas[:, 3] / wh, -clip, clip)")],
         "dw and dh are clamped from above only (min(dw, clip)): a very negative dw just makes a tiny box"),
        ("decode clamping before dividing by the weight", [(DW, "dw = np.minimum(deltas[:, 2], clip) / ww")],
         "clamp dw / ww, after dividing by the weight, not the raw dw"),
    ],
}
