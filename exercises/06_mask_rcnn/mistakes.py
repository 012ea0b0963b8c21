"""The classic mistakes of exercise 06, each declared once (how the grader uses them: exercises/README.md)."""

SCALE = "scale = min(min_size / min(h, w), max_size / max(h, w))"
SIZE = "math.floor(h * scale), math.floor(w * scale)"
NORMALISE = "        normalised = (image - mean) / std\n"
RETURN_A = "    return batch, sizes\n"
PAD_H = "H = int(math.ceil(max(h for h, _ in sizes) / size_divisible) * size_divisible)"
PAD_W = "W = int(math.ceil(max(w for _, w in sizes) / size_divisible) * size_divisible)"
RATIO_H = "ratio_h = np.float32(original_size[0]) / np.float32(image_size[0])"
RATIO_W = "ratio_w = np.float32(original_size[1]) / np.float32(image_size[1])"
ORDER = "scale = np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float64)"
POSTPROCESS = "batch.image_sizes, batch.original_sizes, to_host=True"
HEADS = "detections = model.roi_heads.predict(features, proposals, batch.image_sizes)"
DISAGREE = "if error > atol:"
BOTH_NAN = "        diff[np.isnan(a) & np.isnan(b)] = 0.0  # NaN in both: they agree\n"
ONE_NAN = "        diff[np.isnan(diff)] = math.inf  # NaN in one only\n"
ERROR = "error = float(diff.max()) if diff.size else 0.0"

MISTAKES = {
    "transform": [
        ("max_size ignored", [(SCALE, "scale = min_size / min(h, w)")],
         "the scale is min(min_size / shorter side, max_size / longer side): a long image is limited by max_size"),
        ("sizes rounded", [(SIZE, "round(h * scale), round(w * scale)")],
         "the resized size is floor(side * scale) (recompute_scale_factor=True), not rounded"),
        ("padding normalised", [(NORMALISE, "        normalised = image\n"),
                                (RETURN_A, "    return (batch - mean) / std, sizes\n")],
         "normalise each image before it is padded: the padding is 0 in the normalised batch, not (0 - mean) / std"),
        ("padding not rounded up", [(PAD_H, "H = max(h for h, _ in sizes)"), (PAD_W, "W = max(w for _, w in sizes)")],
         "the batch's height and width are the largest image's, rounded UP to a multiple of size_divisible"),
    ],
    "boxes_to_original": [
        ("ratios in float64", [(RATIO_H, "ratio_h = original_size[0] / image_size[0]"),
                               (RATIO_W, "ratio_w = original_size[1] / image_size[1]")],
         "torchvision computes each ratio original / resized in float32 (torch.tensor(s, dtype=torch.float32)), "
         "then multiplies the float64 boxes by it: round the ratio to float32 first"),
        ("ratios upside down", [(RATIO_H, "ratio_h = np.float32(image_size[0]) / np.float32(original_size[0])"),
                                (RATIO_W, "ratio_w = np.float32(image_size[1]) / np.float32(original_size[1])")],
         "the boxes go from the resized image back to the original: multiply by original / resized size"),
        ("height and width swapped", [(ORDER, "scale = np.array([ratio_h, ratio_w, ratio_h, ratio_w], "
                                              "dtype=np.float64)")],
         "sizes are (height, width) but boxes are (x1, y1, x2, y2): x is scaled by the width's ratio"),
    ],
    "predict_from_stages": [
        ("boxes not mapped back", [(POSTPROCESS, "batch.original_sizes, batch.original_sizes, to_host=True")],
         "postprocess maps each detection from its image's resized size (image_sizes, before padding) to its "
         "original size (original_sizes)"),
        ("clipped to the padded batch", [(HEADS, "detections = model.roi_heads.predict(features, proposals, "
                                                 "[batch.tensors.shape[-2:]] * len(images))")],
         "the RoI heads clip detections to each image's size before padding (image_sizes), not to the padded "
         "batch: the padding is not part of the image"),
    ],
    "first_disagreement": [
        (">= atol", [(DISAGREE, "if error >= atol:")],
         "a stage disagrees only when its error is > atol, strictly: an error equal to atol agrees"),
        ("NaN ignored", [(ONE_NAN, ""), (ERROR, "error = float(np.nanmax(diff)) if diff.size else 0.0")],
         "a NaN where the other run has a number is a disagreement with error inf (np.max and np.nanmax hide it "
         "differently: test for NaN yourself)"),
        ("NaN in both counted", [(BOTH_NAN, "")],
         "NaN at the same place in both runs agrees (NaN != NaN, so compare np.isnan of both first)"),
    ],
}
