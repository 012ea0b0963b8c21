"""The tiny configuration end to end without torch: inference shapes, empty results, and a
training step that lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import Tensor
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import random_image
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.nn.optim import SGD


def batch(rng, n=2):
    images, targets = [], []
    for _ in range(n):
        image, masks, labels = random_image(rng, 96, 128, max_instances=2)
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        images.append(image)
        targets.append({"boxes": np.array(boxes, np.float32), "labels": labels.astype(np.int64),
                        "masks": masks.astype(np.uint8)})
    return images, targets


def test_inference_output_shapes_on_both_layouts():
    model = MaskRCNN(tiny(), rng=0).eval()
    image = random_image(np.random.default_rng(1), 90, 130)[0]
    both = model([image, image.transpose(2, 0, 1)])  # one batch of both layouts
    for out in both:
        D = len(out["boxes"])
        assert out["boxes"].shape == (D, 4) and out["scores"].shape == (D,) and out["labels"].dtype == np.int64
        assert out["masks"].shape == (D, 1, 90, 130)
    # each layout on its own gives the same result bit for bit (inside one batch the two images sit at
    # different offsets of the convolutions' matrix products, whose float32 rounding may then differ)
    (hwc,), (chw,) = model([image]), model([image.transpose(2, 0, 1)])
    for key in hwc:
        np.testing.assert_array_equal(hwc[key], chw[key])


def test_no_detections_is_empty_not_an_error():
    model = MaskRCNN(tiny(box_score_thresh=1.0), rng=0).eval()
    out = model([random_image(np.random.default_rng(2), 80, 100)[0]])[0]
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 1, 80, 100)


def test_training_steps_lower_the_loss_and_handle_an_image_without_boxes():
    rng = np.random.default_rng(3)
    images, targets = batch(rng)
    targets[1] = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                  "masks": np.zeros((0, 96, 128), np.uint8)}
    model = MaskRCNN(tiny(), rng=0).train()
    opt = SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    totals = []
    for _ in range(4):
        opt.zero_grad()
        losses = model(images, targets, rng=0)  # same draws each step: the same loss function
        total = sum(losses.values(), Tensor(np.float32(0)))
        assert all(np.isfinite(v.item()) for v in losses.values())
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < totals[0]


def test_training_without_targets_is_a_clear_error():
    model = MaskRCNN(tiny(), rng=0).train()
    with pytest.raises(ValueError, match="needs targets"):
        model([np.zeros((64, 64, 3), np.float32)])


@pytest.mark.parametrize("bad,match", [
    (np.zeros((64, 64)), r"shape \(H, W, 3\) or \(3, H, W\)"),
    (np.zeros((0, 64, 3), np.float32), "empty image"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.zeros((8, 8, 3), np.int64), "float in \\[0, 1\\] or uint8"),
])
def test_bad_images_are_named(bad, match):
    model = MaskRCNN(tiny(), rng=0).eval()
    with pytest.raises((ValueError, TypeError), match=match):
        model([bad])
