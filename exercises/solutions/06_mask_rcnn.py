"""Reference solution of exercise 06 (the whole Mask R-CNN): the transform, boxes back to the
original image, inference wired from the model's stages, and the first stage where two runs disagree."""

import math

import numpy as np


# --- task (a) ----------------------------------------------------------------------------------
def resize_bilinear(image, out_h, out_w):
    """(C, h, w) -> (C, out_h, out_w), as torch's F.interpolate(mode="bilinear", align_corners=False)."""

    def weights(in_size, out_size):
        scale = in_size / out_size
        src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)  # (out,) source coordinate
        low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        frac = src - low
        W = np.zeros((out_size, in_size))
        np.add.at(W, (np.arange(out_size), low), 1.0 - frac)
        np.add.at(W, (np.arange(out_size), high), frac)
        return W  # (out, in)

    Wy, Wx = weights(image.shape[1], out_h), weights(image.shape[2], out_w)
    return np.einsum("yh,chw,xw->cyx", Wy, image, Wx)  # (C, h, w) -> (C, out_h, out_w)


def transform(images, min_size, max_size, image_mean, image_std, size_divisible=32):
    """Normalise, resize and batch (C, H, W) images: (batch (N, C, H', W'), [(h, w), ...])."""
    mean = np.asarray(image_mean, dtype=np.float64)[:, None, None]  # (C,) -> (C, 1, 1)
    std = np.asarray(image_std, dtype=np.float64)[:, None, None]
    resized = []
    for image in images:
        h, w = image.shape[-2:]
        scale = min(min_size / min(h, w), max_size / max(h, w))
        normalised = (image - mean) / std
        resized.append(resize_bilinear(normalised, math.floor(h * scale), math.floor(w * scale)))
    sizes = [tuple(int(s) for s in image.shape[-2:]) for image in resized]
    H = int(math.ceil(max(h for h, _ in sizes) / size_divisible) * size_divisible)
    W = int(math.ceil(max(w for _, w in sizes) / size_divisible) * size_divisible)
    batch = np.zeros((len(resized), resized[0].shape[0], H, W))
    for i, image in enumerate(resized):
        batch[i, :, : image.shape[1], : image.shape[2]] = image
    return batch, sizes


# --- task (b) ----------------------------------------------------------------------------------
def boxes_to_original(boxes, image_size, original_size):
    """(D, 4) xyxy boxes in the resized image's pixels -> the original image's pixels."""
    ratio_h = np.float32(original_size[0]) / np.float32(image_size[0])
    ratio_w = np.float32(original_size[1]) / np.float32(image_size[1])
    scale = np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float64)  # float32 ratios, exactly
    return np.asarray(boxes, dtype=np.float64) * scale


# --- task (c) ----------------------------------------------------------------------------------
def predict_from_stages(model, images):
    """What ``model.predict(images)`` returns, computed by calling the model's stages in turn."""
    batch, _ = model.transform(images, dtype=model.dtype)
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
    detections = model.roi_heads.predict(features, proposals, batch.image_sizes)
    return model.transform.postprocess(detections, batch.image_sizes, batch.original_sizes, to_host=True)


# --- task (d) ----------------------------------------------------------------------------------
def first_disagreement(stages_a, stages_b, atol):
    """(name, max abs error) of the first stage of ``stages_a`` that ``stages_b`` disagrees with,
    or (None, the largest error of all stages)."""
    largest = 0.0
    for name, a in stages_a.items():
        if name not in stages_b:
            return name, math.inf
        a, b = np.asarray(a, dtype=np.float64), np.asarray(stages_b[name], dtype=np.float64)
        if a.shape != b.shape:
            return name, math.inf
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0  # NaN in both: they agree
        diff[np.isnan(diff)] = math.inf  # NaN in one only
        error = float(diff.max()) if diff.size else 0.0
        if error > atol:
            return name, error
        largest = max(largest, error)
    return None, largest
