"""The whole Mask R-CNN against torchvision's Mask R-CNN with the same random weights:
inference end to end, and the training losses and gradients with the same sampled anchors
and RoIs.

Two recipes. "frozen": ResNet-50-FPN with FrozenBatchNorm2d and 3 trainable layers -- what
``maskrcnn_resnet50_fpn`` builds whenever weights are given (fine-tuning), and our default
config; built here from torchvision's ``resnet_fpn_backbone`` and ``MaskRCNN``. "batchnorm":
``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` literally, which torchvision
builds with ordinary BatchNorm2d and all 5 layers trainable; ours with
``frozen_batch_norm=False, trainable_backbone_layers=5``. Norm statistics are calibrated on a
real image and randomised (``calibrate_frozen_bn``), so no norm is the identity and
activations stay O(1).

Images are smaller than the default 800 px (min_size 320, max_size 512) to keep the float64
runs short; a float32 run at the default size is marked slow.
"""

from __future__ import annotations

import matplotlib.cbook as cbook
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torchvision.models.detection import MaskRCNN as TVMaskRCNN
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.convert import load_torchvision_state_dict
from mrcnn_np.data.shapes import random_image
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.ops import box_iou
from mrcnn_np.reference.twins import to_torch
from tests.reference.parity import assert_training_matches
from tests.reference.torch_models import calibrate_frozen_bn

NUM_CLASSES = 5
SMALL = {"min_size": 320, "max_size": 512}


def shipped_images():
    """Three real images of different sizes and aspect ratios that matplotlib ships, RGB in [0, 1]."""
    out = []
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        img = mpimg.imread(cbook.get_sample_data(name, asfileobj=False))
        img = img[..., :3].astype(np.float64)
        out.append(img / 255 if img.max() > 1 else img)
    return out


def model_pair(dtype=np.float64, seed=0, recipe="frozen", num_classes=NUM_CLASSES, **sizes):
    """torchvision's model and ours with the same random weights (see the module docstring)."""
    torch.manual_seed(seed)
    if recipe == "frozen":
        backbone = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
        tv = TVMaskRCNN(backbone, num_classes=num_classes, **sizes)
        config = MaskRCNNConfig(num_classes=num_classes, dtype=dtype, **sizes)
    else:
        tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **sizes)
        config = MaskRCNNConfig(num_classes=num_classes, dtype=dtype, frozen_batch_norm=False,
                                trainable_backbone_layers=5, **sizes)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32).eval()
    calibrate_frozen_bn(tv, lambda: tv.backbone(tv.transform(to_torch(shipped_images()[:1], dtype))[0].tensors),
                        seed + 1)
    ours = MaskRCNN(config)  # keyword names are torchvision's (min_size, box_score_thresh, ...)
    load_torchvision_state_dict(ours, tv)
    return tv, ours


def run_inference(tv, ours, images, dtype):
    tv.eval()
    ours.eval()
    with torch.no_grad():
        ref = tv(to_torch(images, dtype))
    out = ours([im.astype(dtype) for im in images])
    return out, [{k: v.numpy() for k, v in r.items()} for r in ref]


@pytest.fixture(scope="module", params=["frozen", "batchnorm"])
def float64_pair(request):
    return model_pair(np.float64, recipe=request.param, **SMALL)


@pytest.mark.parametrize("which", [0, 1, 2, "batch"])
def test_inference_float64_identical(float64_pair, which):
    tv, ours = float64_pair
    images = shipped_images()
    images = images[:2] if which == "batch" else [images[which]]
    assert_float64_detections_identical(*run_inference(tv, ours, images, np.float64), images)


def assert_float64_detections_identical(out, ref, images):
    """Same number of detections (at least one), same labels, boxes / scores / masks within 1e-6."""
    for o, r, im in zip(out, ref, images, strict=True):
        assert len(o["boxes"]) == len(r["boxes"]) > 0
        assert o["masks"].shape == r["masks"].shape == (len(r["boxes"]), 1, *im.shape[:2])
        np.testing.assert_array_equal(o["labels"], r["labels"])
        assert np.abs(o["boxes"] - r["boxes"]).max() <= 1e-6
        assert np.abs(o["scores"] - r["scores"]).max() <= 1e-6
        assert np.abs(o["masks"] - r["masks"]).max() <= 1e-6
        assert 0 <= o["masks"].min() and o["masks"].max() <= 1


def match_float32(o, r):
    """Fraction of torchvision's detections with a same-label detection of ours at IoU > 0.999,
    and the fraction of mask pixels (of matched pairs) that agree at threshold 0.5."""
    if len(r["boxes"]) == 0 or len(o["boxes"]) == 0:
        return float(len(r["boxes"]) == len(o["boxes"])), 1.0
    iou = box_iou(r["boxes"].astype(np.float64), o["boxes"].astype(np.float64))
    iou[r["labels"][:, None] != o["labels"][None, :]] = 0
    best = iou.argmax(axis=1)
    matched = iou[np.arange(len(best)), best] > 0.999
    agree = (r["masks"][matched] > 0.5) == (o["masks"][best[matched]] > 0.5)
    return matched.mean(), agree.mean() if agree.size else 1.0


@pytest.mark.parametrize("num_classes", [NUM_CLASSES, 91])
@pytest.mark.parametrize("sizes", [SMALL, pytest.param({}, marks=pytest.mark.slow)], ids=["small", "800px"])
def test_inference_float32_matches(sizes, num_classes):
    """At least 99% of detections matched (same label, IoU > 0.999), >= 99.9% of mask pixels agree."""
    tv, ours = model_pair(np.float32, num_classes=num_classes, **sizes)
    images = shipped_images()
    out, ref = run_inference(tv, ours, images, np.float32)
    for o, r in zip(out, ref, strict=True):
        det, pix = match_float32(o, r)
        assert len(r["boxes"]) > 0 and det >= 0.99 and pix >= 0.999, (det, pix)


def shapes_targets(rng, n_images=2, size=(150, 200)):
    images, targets = [], []
    for _ in range(n_images):
        image, masks, labels = random_image(rng, *size, max_instances=3)
        ys, xs = [np.nonzero(m.any(axis=a))[0] for m in masks for a in (1, 0)][::2], \
            [np.nonzero(m.any(axis=a))[0] for m in masks for a in (1, 0)][1::2]
        boxes = np.array([[x[0], y[0], x[-1] + 1, y[-1] + 1] for y, x in zip(ys, xs, strict=True)], dtype=np.float64)
        # sensor-like noise: flat synthetic backgrounds would give many anchors exactly equal logits,
        # and torch.topk orders exact ties arbitrarily (ours: by index)
        images.append(np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1))
        targets.append({"boxes": boxes, "labels": (labels % (NUM_CLASSES - 1) + 1).astype(np.int64),
                        "masks": masks.astype(np.uint8)})
    return images, targets


@pytest.mark.parametrize("empty_second_image", [False, True])
def test_training_losses_and_gradients(float64_pair, empty_second_image):
    tv, ours = float64_pair
    images, targets = shapes_targets(np.random.default_rng(3))
    if empty_second_image:  # a training image without boxes: negatives only
        targets[1] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64),
                      "masks": np.zeros((0, *images[1].shape[:2]), np.uint8)}
    losses = assert_training_matches(tv, ours, images, targets, loss_names=None, loss_tol=1e-8, grad_rtol=1e-6)
    assert losses["loss_mask"].item() > 0 and losses["loss_box_reg"].item() > 0


def test_no_detections_gives_empty_arrays_of_the_right_shapes():
    tv, ours = model_pair(np.float64, box_score_thresh=0.999999, **SMALL)  # nothing is that sure
    image = shipped_images()[2]
    out, ref = run_inference(tv, ours, [image], np.float64)
    o = out[0]
    assert o["boxes"].shape == (0, 4) and o["labels"].shape == (0,) and o["scores"].shape == (0,)
    assert o["masks"].shape == (0, 1, *image.shape[:2]) == ref[0]["masks"].shape
    assert o["labels"].dtype == np.int64


def test_full_state_dict_round_trip_is_bit_identical():
    """ours -> torchvision's maskrcnn_resnet50_fpn -> ours, every key, bit for bit."""
    from tests.reference.parity import assert_state_dict_round_trip

    backbone = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
    assert_state_dict_round_trip(MaskRCNNConfig(num_classes=NUM_CLASSES), TVMaskRCNN(backbone, num_classes=NUM_CLASSES))
