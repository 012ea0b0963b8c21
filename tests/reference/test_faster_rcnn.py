"""Faster R-CNN (our ``MaskRCNN`` with ``mask_branch=False``) against torchvision's ``FasterRCNN``
with the same random weights: inference end to end, the training losses and gradients with the
same sampled anchors and RoIs, and the state dict in and out bit for bit.

The recipes of ``test_mask_rcnn.py``: "frozen" is ResNet-50-FPN with FrozenBatchNorm2d and 3
trainable layers (torchvision's ``resnet_fpn_backbone`` + ``FasterRCNN``: what
``fasterrcnn_resnet50_fpn`` builds whenever weights are given; our
``config.fasterrcnn_resnet50_fpn()``); "batchnorm" is
``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` literally (BatchNorm2d, 5
trainable layers). Norm statistics calibrated on a real image and randomised; images at min_size
320 to keep the float64 runs short.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection import fasterrcnn_resnet50_fpn as tv_fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np.config import fasterrcnn_resnet50_fpn
from mrcnn_np.convert import load_torchvision_state_dict, state_dict_from_torch
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.reference.twins import to_torch
from tests.reference.parity import assert_state_dict_round_trip, assert_training_matches
from tests.reference.test_mask_rcnn import NUM_CLASSES, SMALL, run_inference, shapes_targets, shipped_images
from tests.reference.torch_models import calibrate_frozen_bn

# the tightest tolerances that hold with room for other BLAS builds; largest errors measured (both recipes,
# min_size 320): boxes 1.1e-11 px, scores 7.0e-14, losses 2.1e-14, gradients 6.2e-12 relative
BOX_TOL, SCORE_TOL, LOSS_TOL, GRAD_RTOL = 1e-10, 1e-12, 1e-12, 1e-10


def faster_pair(dtype=np.float64, seed=0, recipe="frozen", num_classes=NUM_CLASSES, **sizes):
    """torchvision's Faster R-CNN and ours (``fasterrcnn_resnet50_fpn`` config) with the same random weights."""
    torch.manual_seed(seed)
    if recipe == "frozen":
        backbone = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
        tv = TVFasterRCNN(backbone, num_classes=num_classes, **sizes)
        config = fasterrcnn_resnet50_fpn(num_classes, dtype=dtype, **sizes)
    else:
        tv = tv_fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **sizes)
        config = fasterrcnn_resnet50_fpn(num_classes, dtype=dtype, frozen_batch_norm=False,
                                         trainable_backbone_layers=5, **sizes)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32).eval()
    calibrate_frozen_bn(tv, lambda: tv.backbone(tv.transform(to_torch(shipped_images()[:1], dtype))[0].tensors),
                        seed + 1)
    ours = MaskRCNN(config)
    load_torchvision_state_dict(ours, tv)  # strict: exactly torchvision's keys, none for a mask head
    return tv, ours


@pytest.fixture(scope="module", params=["frozen", "batchnorm"])
def float64_pair(request):
    return faster_pair(np.float64, recipe=request.param, **SMALL)


def test_the_config_is_torchvisions_fasterrcnn_without_a_mask_branch():
    config = fasterrcnn_resnet50_fpn()
    assert config.mask_branch is False and config.num_classes == 91
    ours = MaskRCNN(config)
    assert not ours.roi_heads.has_mask()
    assert ours.roi_heads.mask_roi_pool is ours.roi_heads.mask_head is ours.roi_heads.mask_predictor is None
    tv = TVFasterRCNN(tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3), 91)
    assert list(ours.state_dict()) == list(tv.state_dict())
    assert all(tuple(v.shape) == tuple(tv.state_dict()[k].shape) for k, v in ours.state_dict().items())
    t = tv.transform
    assert (config.min_size, config.max_size) == (t.min_size[0], t.max_size)
    assert config.box_detections_per_img == tv.roi_heads.detections_per_img
    assert config.rpn_post_nms_top_n == tv.rpn._post_nms_top_n


@pytest.mark.parametrize("which", [0, 1, 2, "batch"])
def test_inference_float64_identical(float64_pair, which):
    """Same detections in the same order: same labels, boxes and scores within float64 rounding."""
    tv, ours = float64_pair
    images = shipped_images()
    images = images[:2] if which == "batch" else [images[which]]
    out, ref = run_inference(tv, ours, images, np.float64)
    for o, r in zip(out, ref, strict=True):
        assert set(o) == set(r) == {"boxes", "labels", "scores"}
        assert len(o["boxes"]) == len(r["boxes"]) > 0
        np.testing.assert_array_equal(o["labels"], r["labels"])
        assert np.abs(o["boxes"] - r["boxes"]).max() <= BOX_TOL
        assert np.abs(o["scores"] - r["scores"]).max() <= SCORE_TOL


@pytest.mark.parametrize("empty_second_image", [False, True])
def test_training_losses_and_gradients(float64_pair, empty_second_image):
    """The four losses (no loss_mask) within 1e-12, every trainable parameter's gradient within
    1e-10 relative, with torchvision replaying our sampled anchors and RoIs. Targets without masks."""
    tv, ours = float64_pair
    images, targets = shapes_targets(np.random.default_rng(3))
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]  # a detection model needs no masks
    if empty_second_image:  # a training image without boxes: negatives only
        targets[1] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}
    losses = assert_training_matches(
        tv, ours, images, targets, loss_names={"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"},
        loss_tol=LOSS_TOL, grad_rtol=GRAD_RTOL)
    assert losses["loss_box_reg"].item() > 0


def test_targets_with_masks_are_accepted_and_ignored(float64_pair):
    """Mask R-CNN's targets train a Faster R-CNN too: the masks change nothing."""
    _, ours = float64_pair
    images, targets = shapes_targets(np.random.default_rng(4))
    ours.train()
    with_masks = ours(images, targets, rng=1)
    without = ours(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets], rng=1)
    ours.eval()
    assert set(with_masks) == set(without) and "loss_mask" not in with_masks
    assert all(with_masks[k].item() == without[k].item() for k in with_masks)


def test_no_detections_gives_empty_arrays_of_the_right_shapes():
    tv, ours = faster_pair(np.float64, box_score_thresh=0.999999, **SMALL)  # nothing is that sure
    out, ref = run_inference(tv, ours, [shipped_images()[2]], np.float64)
    o = out[0]
    assert set(o) == set(ref[0]) == {"boxes", "labels", "scores"}
    assert o["boxes"].shape == (0, 4) == ref[0]["boxes"].shape and o["scores"].shape == (0,)
    assert o["labels"].shape == (0,) and o["labels"].dtype == np.int64


def test_full_state_dict_round_trip_is_bit_identical():
    """ours -> torchvision's FasterRCNN -> ours, every key, bit for bit."""
    tv = TVFasterRCNN(tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3),
                      num_classes=NUM_CLASSES)
    assert_state_dict_round_trip(fasterrcnn_resnet50_fpn(NUM_CLASSES), tv)


def test_a_mask_rcnn_state_dict_does_not_load_into_faster_rcnn():
    """strict loading names the mask keys: a Mask R-CNN checkpoint is not silently cut down."""
    mask_model = MaskRCNN(fasterrcnn_resnet50_fpn(NUM_CLASSES, mask_branch=True), rng=1)
    with pytest.raises(ValueError, match=r"unexpected keys .*roi_heads\.mask_"):
        MaskRCNN(fasterrcnn_resnet50_fpn(NUM_CLASSES)).load_state_dict(mask_model.state_dict())


def test_convert_reads_a_torchvision_fasterrcnn_file(tmp_path, capsys):
    """`mrcnn-np convert`: a torch.save'd fasterrcnn state dict -> a detection model with the same weights."""
    from mrcnn_np import cli
    from mrcnn_np.convert import load_model

    torch.manual_seed(0)
    tv = tv_fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    torch.save(tv.state_dict(), tmp_path / "faster.pth")
    assert cli.main(["convert", str(tmp_path / "faster.pth"), str(tmp_path / "faster.safetensors")]) == 0
    assert f"Faster R-CNN resnet50-FPN, {NUM_CLASSES} classes" in capsys.readouterr().out
    model = load_model(tmp_path / "faster.safetensors")
    assert model.config.mask_branch is False and model.config.num_classes == NUM_CLASSES
    assert not model.roi_heads.has_mask()
    theirs = state_dict_from_torch(tv)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, theirs[k]), k


def test_the_twin_of_a_detection_config_is_torchvisions_fasterrcnn():
    """``reference.twins.twin_pair`` (used by the training comparisons) builds FasterRCNN for mask_branch=False."""
    from mrcnn_np.config import tiny
    from mrcnn_np.reference.twins import twin_pair

    tv, ours = twin_pair(tiny(num_classes=NUM_CLASSES, dtype=np.float64, mask_branch=False))
    assert type(tv) is TVFasterRCNN and tv.roi_heads.has_mask() is False
    assert list(ours.state_dict()) == list(tv.state_dict())
    out, ref = run_inference(tv, ours, shipped_images()[:2], np.float64)
    for o, r in zip(out, ref, strict=True):
        assert set(o) == set(r) == {"boxes", "labels", "scores"} and len(o["boxes"]) == len(r["boxes"]) > 0
        np.testing.assert_array_equal(o["labels"], r["labels"])
        assert np.abs(o["boxes"] - r["boxes"]).max() <= BOX_TOL
        assert np.abs(o["scores"] - r["scores"]).max() <= SCORE_TOL
