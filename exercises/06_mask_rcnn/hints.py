"""Progressive hints of exercise 06, revealed one at a time by ``mrcnn-np check 06 --hint``."""

HINTS = {
    "transform": [
        "Read torchvision's GeneralizedRCNNTransform (models/detection/transform.py): normalize,\n"
        "resize (_resize_image_and_masks) and batch_images, in that order, at inference.",
        "Per image: normalise, compute the scale from its own sides, resize to the floored sizes.\n"
        "Then one batch: its size is the largest height and width, rounded up to size_divisible;\n"
        "zeros everywhere, each image copied into the top-left corner of its slot.",
        "Normalising: mean and std as (C, 1, 1) arrays broadcast over (C, H, W).\n"
        "Resizing: since the sizes are recomputed, the bilinear weights depend only on the input and\n"
        "output sizes: build an (out, in) weight matrix per axis (two non-zero weights per row,\n"
        "1 - frac and frac) and apply it as Wy @ image @ Wx.T for every channel (np.einsum).",
        "  scale = min(min_size / min(h, w), max_size / max(h, w))\n"
        "  out_h, out_w = math.floor(h * scale), math.floor(w * scale)\n"
        "  H' = math.ceil(max(out_h) / size_divisible) * size_divisible   (W' alike)\n"
        "  batch = np.zeros((N, C, H', W')); batch[i, :, :out_h_i, :out_w_i] = resized_i",
    ],
    "boxes_to_original": [
        "Read torchvision's resize_boxes (models/detection/transform.py), which postprocess calls\n"
        "with (resized size, original size): note the dtype of the ratios it builds.",
        "Two ratios, original / resized for the height and for the width, each made from float32\n"
        "sizes (np.float32(H) / np.float32(h)); x1 and x2 are scaled by the width's ratio, y1 and y2\n"
        "by the height's.",
        "boxes * np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float64): the float32\n"
        "ratios converted exactly to float64, then one broadcast multiplication; (0, 4) stays (0, 4).",
    ],
    "predict_from_stages": [
        "Read MaskRCNN.predict in mrcnn_np/model/mask_rcnn.py (or print inspect.getsource of it,\n"
        "as chapter 6 does), and torchvision's GeneralizedRCNN.forward: five stages in a chain.",
        "transform -> backbone -> rpn.predict -> roi_heads.predict -> transform.postprocess.\n"
        "Which sizes go where: the RPN needs the padded batch's (H', W') to lay its anchors and\n"
        "each image's size before padding to clip its proposals; the RoI heads clip the detections\n"
        "to the sizes before padding; postprocess maps from those sizes to the original ones.",
        "  batch, _ = model.transform(images, dtype=model.dtype)\n"
        "  features = model.backbone(batch.tensors)\n"
        "  proposals, _ = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)\n"
        "  then roi_heads.predict(features, proposals, batch.image_sizes), and postprocess with\n"
        "  (batch.image_sizes, batch.original_sizes, to_host=True).",
    ],
    "first_disagreement": [
        "This is how chapter 6.8 and mrcnn-np verify localise a difference between two runs: the\n"
        "first stage that differs is where to look; every later one differs because of it.",
        "Walk stages_a in order; for each name: missing from stages_b or another shape -> inf;\n"
        "otherwise the largest |a - b|, with NaN handled before taking the maximum. Return at the\n"
        "first error > atol; keep the largest error seen for the (None, largest) answer.",
        "NaN: np.isnan(a) & np.isnan(b) agree (set those differences to 0); any NaN left in |a - b|\n"
        "is a NaN in one run only (set it to math.inf). An empty array's error is 0.0 (np.max of\n"
        "an empty array raises). Compare with error > atol, strictly.",
    ],
}
