"""torchvision's v2 recipe -- ``maskrcnn_resnet50_fpn_v2`` and ``fasterrcnn_resnet50_fpn_v2`` -- against
ours (``config.maskrcnn_resnet50_fpn_v2()``, ``config.fasterrcnn_resnet50_fpn_v2()``) with the same random
weights: the architecture key for key, inference end to end, the training losses and gradients with the
same sampled anchors and RoIs, and the state dict in and out bit for bit.

Two recipes, as in ``test_mask_rcnn.py``. "weights": what torchvision's v2 functions build whenever
weights are given -- BatchNorm2d everywhere, 3 trainable backbone layers -- assembled here line for
line as the functions do (torchvision falls back to 5 trainable layers without weights); our preset.
"literal": ``maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)`` itself, 5 trainable
layers. Every norm (backbone, FPN, box head, mask head) gets statistics calibrated on a real image in
one whole forward pass and randomised, so none is the identity. min_size 320 keeps float64 short.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection import MaskRCNN as TVMaskRCNN
from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2 as tv_fasterrcnn_v2
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2 as tv_maskrcnn_v2
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead, _default_anchorgen
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads

from mrcnn_np.config import fasterrcnn_resnet50_fpn_v2, maskrcnn_resnet50_fpn_v2
from mrcnn_np.convert import load_torchvision_state_dict, state_dict_from_torch
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.reference.twins import to_torch
from tests.reference.parity import assert_state_dict_round_trip, assert_training_matches
from tests.reference.test_mask_rcnn import (
    NUM_CLASSES,
    SMALL,
    assert_float64_detections_identical,
    run_inference,
    shapes_targets,
    shipped_images,
)
from tests.reference.torch_models import calibrate_frozen_bn

# the tolerances of the acceptance (float64): boxes, scores and masks 1e-6; losses 1e-8, gradients 1e-6 relative
TOL, LOSS_TOL, GRAD_RTOL = 1e-6, 1e-8, 1e-6


def tv_v2_with_weights_recipe(mask: bool, num_classes: int, **kwargs):
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` / ``fasterrcnn_resnet50_fpn_v2`` body as it runs when
    weights are given (``trainable_backbone_layers`` 3), without loading any."""
    backbone = resnet50(weights=None)
    backbone = _resnet_fpn_extractor(backbone, 3, norm_layer=nn.BatchNorm2d)
    rpn_anchor_generator = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, rpn_anchor_generator.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024],
                                  norm_layer=nn.BatchNorm2d)
    heads = dict(rpn_anchor_generator=rpn_anchor_generator, rpn_head=rpn_head, box_head=box_head)
    if not mask:
        return TVFasterRCNN(backbone, num_classes=num_classes, **heads, **kwargs)
    mask_head = MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    return TVMaskRCNN(backbone, num_classes=num_classes, **heads, mask_head=mask_head, **kwargs)


def v2_pair(mask=True, dtype=np.float64, seed=0, recipe="weights", num_classes=NUM_CLASSES, **sizes):
    """torchvision's v2 model and ours with the same random weights and calibrated norms, in eval mode."""
    torch.manual_seed(seed)
    preset = maskrcnn_resnet50_fpn_v2 if mask else fasterrcnn_resnet50_fpn_v2
    if recipe == "weights":
        tv = tv_v2_with_weights_recipe(mask, num_classes, **sizes)
        config = preset(num_classes, dtype=dtype, **sizes)
    else:
        tv = (tv_maskrcnn_v2 if mask else tv_fasterrcnn_v2)(weights=None, weights_backbone=None,
                                                             num_classes=num_classes, **sizes)
        config = preset(num_classes, dtype=dtype, trainable_backbone_layers=5, **sizes)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32).eval()
    calibrate_frozen_bn(tv, lambda: tv(to_torch(shipped_images()[:1], dtype)), seed + 1)
    ours = MaskRCNN(config)
    load_torchvision_state_dict(ours, tv)  # strict: exactly torchvision's keys
    return tv, ours.eval()


@functools.cache
def float64_pair(model: str, recipe: str):
    """The float64 pair of ``model`` ("mask", "faster") and ``recipe``, built once per session."""
    return v2_pair(model == "mask", np.float64, recipe=recipe, **SMALL)


# the recipes run the same modules in eval mode: every image for "weights", the batch for "literal"
INFERENCE = [(m, "weights", w) for m in ("mask", "faster") for w in (0, 1, 2, "batch")] + \
    [(m, "literal", "batch") for m in ("mask", "faster")]
# in training they differ in the trainable layers: both recipes, and an image without boxes, for each model
TRAINING = [("mask", "weights", False), ("mask", "weights", True), ("mask", "literal", False),
            ("faster", "weights", False), ("faster", "literal", True)]


@pytest.mark.parametrize("mask", [True, False], ids=["mask", "faster"])
def test_the_presets_build_torchvisions_v2_architecture(mask):
    """Key for key, shape for shape, the same parameters trainable, the same module types where it matters."""
    ours = MaskRCNN((maskrcnn_resnet50_fpn_v2 if mask else fasterrcnn_resnet50_fpn_v2)(91))
    torch.manual_seed(0)
    tv = tv_v2_with_weights_recipe(mask, 91)
    theirs = tv.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(tuple(v.shape) == tuple(theirs[k].shape) for k, v in ours.state_dict().items())
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == \
        [n for n, p in tv.named_parameters() if p.requires_grad]
    assert ours.roi_heads.has_mask() is mask
    # the v2 differences themselves, spelled out
    assert "backbone.fpn.inner_blocks.0.1.running_var" in theirs and "backbone.body.bn1.num_batches_tracked" in theirs
    assert "rpn.head.conv.1.0.weight" in theirs and "roi_heads.box_head.5.weight" in theirs
    assert "backbone.fpn.inner_blocks.0.0.bias" not in theirs  # a conv before a norm has no bias
    if mask:
        assert "roi_heads.mask_head.3.1.running_mean" in theirs and "roi_heads.mask_head.0.0.bias" not in theirs


@pytest.mark.parametrize(("model", "recipe", "which"), INFERENCE)
def test_inference_float64_identical(model, recipe, which):
    """Same detections in the same order: same labels; boxes, scores (and masks) within 1e-6."""
    tv, ours = float64_pair(model, recipe)
    images = shipped_images()
    images = images[:2] if which == "batch" else [images[which]]
    out, ref = run_inference(tv, ours, images, np.float64)
    if ours.roi_heads.has_mask():
        assert_float64_detections_identical(out, ref, images)
        return
    for o, r in zip(out, ref, strict=True):
        assert set(o) == set(r) == {"boxes", "labels", "scores"}
        assert len(o["boxes"]) == len(r["boxes"]) > 0
        np.testing.assert_array_equal(o["labels"], r["labels"])
        assert np.abs(o["boxes"] - r["boxes"]).max() <= TOL
        assert np.abs(o["scores"] - r["scores"]).max() <= TOL


@pytest.mark.parametrize(("model", "recipe", "empty_second_image"), TRAINING)
def test_training_losses_and_gradients(model, recipe, empty_second_image):
    """Every loss within 1e-8 and every trainable parameter's gradient within 1e-6 relative, torchvision
    replaying our sampled anchors and RoIs; the BatchNorms in train mode use the batch's statistics
    (of the RoIs, in the heads), so the heads' gradients depend on every sampled RoI together."""
    tv, ours = float64_pair(model, recipe)
    mask = ours.roi_heads.has_mask()
    images, targets = shapes_targets(np.random.default_rng(3))
    if empty_second_image:  # a training image without boxes: negatives only
        targets[1] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64),
                      "masks": np.zeros((0, *images[1].shape[:2]), np.uint8)}
    if not mask:
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    names = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} | ({"loss_mask"} if mask
                                                                                          else set())
    losses = assert_training_matches(tv, ours, images, targets, names, LOSS_TOL, GRAD_RTOL)
    assert losses["loss_box_reg"].item() > 0 and (not mask or losses["loss_mask"].item() > 0)


def test_running_statistics_after_a_training_step_are_torchvisions():
    """A training call updates every BatchNorm's running statistics (momentum 0.1, the unbiased
    variance) and counter as torchvision's does, including the norms of the frozen layers."""
    tv, ours = v2_pair(True, np.float64, **SMALL)
    images, targets = shapes_targets(np.random.default_rng(5))
    assert_training_matches(tv, ours, images, targets, None, LOSS_TOL, GRAD_RTOL)
    theirs = state_dict_from_torch(tv)
    stats = [k for k in theirs if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("backbone.body.layer1.") for k in stats) and any("box_head" in k for k in stats)
    for k in stats:
        np.testing.assert_allclose(ours.state_dict()[k], theirs[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("mask", [True, False], ids=["mask", "faster"])
def test_full_state_dict_round_trip_is_bit_identical(mask):
    """ours -> torchvision's v2 model -> ours, every key (the BatchNorm counters too), bit for bit."""
    tv = (tv_maskrcnn_v2 if mask else tv_fasterrcnn_v2)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    assert_state_dict_round_trip((maskrcnn_resnet50_fpn_v2 if mask else fasterrcnn_resnet50_fpn_v2)(NUM_CLASSES), tv)


def test_a_v1_state_dict_does_not_load_into_v2():
    """strict loading names what differs: a v1 checkpoint is not silently read as v2."""
    from mrcnn_np.config import resnet50_fpn

    with pytest.raises(ValueError, match=r"missing keys .*backbone\.fpn\.inner_blocks\.0\.1\.weight"):
        MaskRCNN(maskrcnn_resnet50_fpn_v2(NUM_CLASSES)).load_state_dict(
            MaskRCNN(resnet50_fpn(NUM_CLASSES)).state_dict())


@pytest.mark.parametrize("mask", [True, False], ids=["mask", "faster"])
def test_convert_reads_a_torchvision_v2_file(tmp_path, capsys, mask):
    """`mrcnn-np convert` recognises the v2 recipe from the file alone and keeps every weight."""
    from mrcnn_np import cli
    from mrcnn_np.convert import load_model

    torch.manual_seed(0)
    tv = (tv_maskrcnn_v2 if mask else tv_fasterrcnn_v2)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    torch.save(tv.state_dict(), tmp_path / "v2.pth")
    assert cli.main(["convert", str(tmp_path / "v2.pth"), str(tmp_path / "v2.safetensors")]) == 0
    name = "Mask R-CNN" if mask else "Faster R-CNN"
    assert f"{name} v2 resnet50-FPN, {NUM_CLASSES} classes" in capsys.readouterr().out
    model = load_model(tmp_path / "v2.safetensors")
    expected = (maskrcnn_resnet50_fpn_v2 if mask else fasterrcnn_resnet50_fpn_v2)(NUM_CLASSES)
    for setting in ("mask_branch", "frozen_batch_norm", "fpn_batch_norm", "rpn_conv_depth", "box_head",
                    "box_conv_layers", "head_batch_norm", "representation_size", "num_classes"):
        assert getattr(model.config, setting) == getattr(expected, setting), setting
    theirs = state_dict_from_torch(tv)
    assert list(model.state_dict()) == list(theirs)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, theirs[k]), k
