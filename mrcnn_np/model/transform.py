"""The image transform: normalise, resize, pad into a batch; and map results back.

In:  images as (H, W, 3) or (3, H, W) arrays, float in [0, 1] or uint8 (a float image outside
     [0, 1] by more than 1e-3 is refused, see :func:`as_chw_float`); optional targets
     ``{"boxes": (G, 4) xyxy, "labels": (G,) int64, "masks": (G, H, W) uint8}``, checked by
     :func:`mrcnn_np.checks.check_target` (``masks`` optional with ``require_masks=False``: the
     targets of a model without a mask branch, Faster R-CNN).
Out: an :class:`ImageList` (the padded batch (N, 3, H', W') and every image's size before
     padding) and the targets resized with their images.

    normalise   (x - mean) / std per channel, ImageNet statistics
    resize      scale = min(800 / shorter side, 1333 / longer side); bilinear, align_corners
                False, output size floor(side * scale) (recompute_scale_factor) -- boxes scaled
                by new / old size (float32 ratios), masks resized nearest
    batch       zero-padded at the bottom/right to a multiple of 32

``postprocess`` maps detections back: boxes scaled to the original size, 28x28 mask
probabilities pasted into their boxes (``paste_masks_in_image``, torchvision's rule: the
mask padded by one pixel, its box grown to match, truncated to whole pixels, resized bilinearly).

Torchvision: ``models/detection/transform.py`` (``GeneralizedRCNNTransform``) and
``roi_heads.py`` (``paste_masks_in_image``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..backend import KernelTable, get_array_module, to_device, to_numpy
from ..checks import check_image_list, check_target, check_targets, check_unit_range
from ..config import as_config
from ..nn import functional as F


class ImageList(NamedTuple):
    tensors: object  # (N, 3, H', W') padded batch
    image_sizes: list  # [(h_i, w_i)] after resizing, before padding
    original_sizes: list | None = None  # [(H_i, W_i)] as given, before resizing


def as_chw_float(image, dtype=np.float32, name: str = "image"):
    """An image as (3, H, W) float in [0, 1]. (H, W, 3) is recognised when the last axis is 3
    and the first is not; uint8 is divided by 255.

    A float image must already be in [0, 1]: values above ``1 + 1e-3`` or below ``-1e-3``
    (:data:`mrcnn_np.checks.IMAGE_RANGE_TOLERANCE`, room for rounding) are a ValueError -- a
    float image in 0..255 is refused, not clipped; divide it by 255 or pass it as uint8.
    Values within the tolerance pass unchanged. NaN and infinite values are a ValueError."""
    if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise ValueError(f"expected {name} of shape (H, W, 3) or (3, H, W), got {tuple(image.shape)}")
    if image.shape[0] != 3:
        image = image.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    if min(image.shape[1:]) == 0:
        raise ValueError(f"empty image: {name} has shape {tuple(image.shape)}")
    if image.dtype == np.uint8:
        return image.astype(dtype) / np.dtype(dtype).type(255)
    if image.dtype.kind != "f":
        raise TypeError(f"{name} must be float in [0, 1] or uint8, got {image.dtype}")
    check_unit_range(name, image)
    return image.astype(dtype, copy=False)


def resize_boxes(boxes, original_size, new_size):
    """Scale xyxy boxes by new / original size per axis (ratios in float32, as torchvision)."""
    ratio_h, ratio_w = (np.float32(n) / np.float32(o) for n, o in zip(new_size, original_size, strict=True))
    scale = np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32).astype(boxes.dtype)
    return boxes * get_array_module(boxes).asarray(scale)


class GeneralizedRCNNTransform:
    """``GeneralizedRCNNTransform(min_size=, max_size=, image_mean=, image_std=)``; no parameters.
    :meth:`from_config` takes the settings from a :class:`~mrcnn_np.config.MaskRCNNConfig`."""

    def __init__(self, *, min_size: int, max_size: int, image_mean, image_std, size_divisible: int = 32):
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.size_divisible = size_divisible

    @classmethod
    def from_config(cls, config, **overrides):
        """The transform of ``config`` (keywords in ``overrides`` replace its settings)."""
        config = as_config(config, "GeneralizedRCNNTransform.from_config")
        settings = dict(min_size=config.min_size, max_size=config.max_size, image_mean=config.image_mean,
                        image_std=config.image_std)
        return cls(**{**settings, **overrides})

    def normalize(self, image):
        xp = get_array_module(image)
        mean = xp.asarray(self.image_mean, dtype=image.dtype)[:, None, None]
        std = xp.asarray(self.image_std, dtype=image.dtype)[:, None, None]
        return (image - mean) / std

    def resize(self, image, target=None):
        """(3, h, w) -> (3, floor(h s), floor(w s)), and the target with it."""
        h, w = image.shape[-2:]
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        image = F.interpolate(image[None], scale_factor=scale, mode="bilinear", align_corners=False,
                              recompute_scale_factor=True).data[0]
        if target is None:
            return image, None
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "masks" in target and len(target["masks"]):
            masks = target["masks"][:, None].astype(image.dtype)  # (G, H, W) -> (G, 1, H, W)
            target["masks"] = F.interpolate(masks, scale_factor=scale, recompute_scale_factor=True).data[:, 0] \
                .astype(np.uint8)
        elif "masks" in target:
            target["masks"] = target["masks"].reshape(0, *image.shape[-2:])
        return image, target

    def batch_images(self, images):
        """Zero-pad to the largest height/width, rounded up to ``size_divisible``."""
        xp = get_array_module(images[0])
        stride = float(self.size_divisible)
        H = int(math.ceil(max(i.shape[1] for i in images) / stride) * stride)
        W = int(math.ceil(max(i.shape[2] for i in images) / stride) * stride)
        batch = xp.zeros((len(images), 3, H, W), dtype=images[0].dtype)
        for i, img in enumerate(images):
            batch[i, :, : img.shape[1], : img.shape[2]] = img
        return batch

    def check_size(self, name: str, size) -> None:
        """ValueError when resizing would leave a side of the image (H, W) with no pixel."""
        h, w = size
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        if math.floor(min(h, w) * scale) < 1:
            raise ValueError(f"{name} of {h}x{w} pixels is too thin: resizing its longer side to max_size "
                             f"{self.max_size} scales it by {scale:.3g} and leaves its shorter side "
                             f"{min(h, w)} with 0 pixels; the shorter side must be at least "
                             f"{math.ceil(max(h, w) / self.max_size)} pixels (crop or pad the image)")

    def __call__(self, images: list, targets: list | None = None, dtype=np.float32, num_classes: int | None = None,
                 device: str | None = None, require_masks: bool = True):
        """Images (see :func:`as_chw_float`) and optional targets (checked by
        :func:`mrcnn_np.checks.check_target`, labels below ``num_classes`` when it is given, masks
        optional unless ``require_masks``) -> (ImageList, targets resized with their images).

        ``device`` (``"cpu"`` or ``"cuda"``): where the batch and targets go -- the model's input
        transfer point. Images move as given (uint8 is a quarter of the float bytes), targets
        after they are checked on the host. None leaves them where they are."""
        images = check_image_list(images)
        if targets is not None:
            targets = check_targets(targets, len(images))
        processed, new_targets, original_sizes = [], [], []
        for i, image in enumerate(images):
            if device is not None:
                image = to_device(image, device)
            image = as_chw_float(image, dtype, f"images[{i}]")
            original_sizes.append(tuple(int(s) for s in image.shape[-2:]))
            self.check_size(f"images[{i}]", original_sizes[-1])
            target = None
            if targets is not None:
                target = check_target(i, targets[i], original_sizes[-1], dtype, num_classes, require_masks)
                if device is not None:
                    target |= {k: to_device(target[k], device) for k in ("boxes", "labels", "masks") if k in target}
            image, target = self.resize(self.normalize(image), target)
            processed.append(image)
            new_targets.append(target)
        sizes = [tuple(int(s) for s in img.shape[-2:]) for img in processed]
        batch = ImageList(self.batch_images(processed), sizes, original_sizes)
        return batch, (None if targets is None else new_targets)

    def postprocess(self, results: list, image_sizes: list, original_sizes: list, to_host: bool = False) -> list:
        """Boxes back to the original size; masks (R, 1, M, M) pasted into (R, 1, H, W). With
        ``to_host``, every array is copied to the host (the model's output transfer point)."""
        for result, size, original in zip(results, image_sizes, original_sizes, strict=True):
            result["boxes"] = resize_boxes(result["boxes"], size, original)
            if "masks" in result:
                result["masks"] = paste_masks_in_image(result["masks"], result["boxes"], original)
            if to_host:
                result.update({k: to_numpy(v) for k, v in result.items()})
        return results


def expand_boxes(boxes, scale: float):
    """Grow boxes about their centres by ``scale``."""
    xp = get_array_module(boxes)
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return xp.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def paste_mask_in_image(mask, box, im_h: int, im_w: int):
    """One (M, M) mask resized bilinearly into its integer box (x1, y1, x2, y2), inclusive."""
    xp = get_array_module(mask)
    x1, y1, x2, y2 = (int(v) for v in box)
    w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False).data[0, 0]
    im_mask = xp.zeros((im_h, im_w), dtype=mask.dtype)
    x_0, x_1 = max(x1, 0), min(x2 + 1, im_w)
    y_0, y_1 = max(y1, 0), min(y2 + 1, im_h)
    if x_1 > x_0 and y_1 > y_0:
        im_mask[y_0:y_1, x_0:x_1] = resized[y_0 - y1 : y_1 - y1, x_0 - x1 : x_1 - x1]
    return im_mask


def paste_masks_numpy(masks, int_boxes, im_h: int, im_w: int):
    """(R, Mh, Mw) padded masks and (R, 4) integer boxes -> (R, H, W): :func:`paste_mask_in_image`
    mask by mask. The specification of the paste kernels (:mod:`mrcnn_np.kernels.paste`)."""
    xp = get_array_module(masks)
    if len(masks) == 0:
        return xp.zeros((0, im_h, im_w), dtype=masks.dtype)
    boxes = int_boxes.tolist()  # (R, 4) Python ints, read once (one sync on a device, not one per mask)
    return xp.stack([paste_mask_in_image(m, b, im_h, im_w) for m, b in zip(masks, boxes, strict=True)])


def _paste_kernels():
    from ..kernels import paste  # imports numba: on first use only

    return paste


PASTE = KernelTable("paste_masks", numpy=paste_masks_numpy, numba=lambda: _paste_kernels().paste_masks_numba,
                    cuda=lambda: _paste_kernels().paste_masks_cuda)


def paste_masks_in_image(masks, boxes, image_size, padding: int = 1, impl: str = "auto"):
    """(R, 1, M, M) probabilities and (R, 4) boxes -> (R, 1, H, W) image masks.

    Each mask is padded by ``padding`` zeros, its box grown by (M + 2 padding) / M about its
    centre and truncated to integers (array code, on the masks' device), then the masks are
    pasted by ``impl`` (:data:`PASTE`: ``"numpy"`` is :func:`paste_masks_numpy`; the numba and
    CUDA kernels equal it bit for bit, and the CUDA one reads nothing back to the host)."""
    xp = get_array_module(masks)
    im_h, im_w = image_size
    if len(masks) == 0:
        return xp.zeros((0, 1, im_h, im_w), dtype=masks.dtype)
    M = masks.shape[-1]
    scale = float(M + 2 * padding) / M
    padded = xp.pad(masks[:, 0], ((0, 0), (padding, padding), (padding, padding)))  # (R, M + 2p, M + 2p)
    int_boxes = xp.trunc(expand_boxes(boxes, scale)).astype(np.int64)  # torch's .to(int64) truncates
    return PASTE.select(impl, padded, int_boxes)(padded, int_boxes, im_h, im_w)[:, None]  # (R, H, W) -> (R, 1, H, W)
