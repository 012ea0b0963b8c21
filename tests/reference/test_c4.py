"""Mask R-CNN with the ResNet-C4 backbone (``config.resnet50_c4()``) against its torchvision twin:
torchvision has no C4 model, so :func:`mrcnn_np.reference.twins.torchvision_model` assembles one from
torchvision's own ``MaskRCNN``, ``AnchorGenerator``, ``RPNHead``, ``MultiScaleRoIAlign``,
``FastRCNNPredictor``, ``MaskRCNNPredictor`` and ResNet-50 (``IntermediateLayerGetter`` up to layer3 as
the backbone, ``layer4`` as the box head and, the same module, as the mask head), with two lines of
glue (:mod:`mrcnn_np.reference.torch_c4`). Inference end to end, training losses and gradients with the
same sampled anchors and RoIs, the state dict in and out bit for bit.

res5 runs on every RoI (800 M multiply-adds each at full width), so the tests keep the RoIs few:
100 proposals and 20 detections per image at inference, the preset's 64 sampled RoIs in training;
images at min_size 320. Everything else is the preset's.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torchvision.models.detection import MaskRCNN as TVMaskRCNN

from mrcnn_np.config import resnet50_c4
from mrcnn_np.convert import state_dict_from_torch
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import Res5Head
from mrcnn_np.reference.torch_c4 import Res5BoxHead
from mrcnn_np.reference.twins import torchvision_model, twin_pair
from tests.reference.parity import assert_state_dict_round_trip, assert_training_matches
from tests.reference.test_mask_rcnn import (
    NUM_CLASSES,
    SMALL,
    assert_float64_detections_identical,
    run_inference,
    shapes_targets,
    shipped_images,
)

FEW_ROIS = {"rpn_post_nms_top_n": {"training": 2000, "testing": 100}, "box_detections_per_img": 20}
LOSS_TOL, GRAD_RTOL = 1e-8, 1e-6


@functools.cache
def c4_pair(recipe: str = "frozen", mask: bool = True):
    """(torchvision twin, ours), float64, same calibrated random weights. "frozen": the preset
    (FrozenBatchNorm2d, layer2, layer3 and res5 trainable); "batchnorm": BatchNorm2d, all trainable."""
    extra = {} if recipe == "frozen" else {"frozen_batch_norm": False, "trainable_backbone_layers": 5}
    config = resnet50_c4(NUM_CLASSES, dtype=np.float64, mask_branch=mask, **SMALL, **FEW_ROIS, **extra)
    return twin_pair(config, seed=0, image=shipped_images()[0])


def test_the_preset_is_the_papers_c4_model():
    c = resnet50_c4()
    assert c.architecture == "c4" and c.roi_featmap_names == ("0",)
    assert len(c.anchor_sizes[0]) * len(c.aspect_ratios[0]) == 15  # 5 scales x 3 ratios on one map
    assert (c.box_roi_output_size, c.mask_roi_output_size, c.box_batch_size_per_image) == (14, 14, 64)
    ours = MaskRCNN(c)
    assert ours.backbone.out_channels == 1024 and not hasattr(ours.backbone.body, "layer4")
    assert isinstance(ours.roi_heads.box_head, Res5Head)
    assert ours.roi_heads.mask_head is ours.roi_heads.box_head.res5  # one res5, two branches
    assert ours.rpn.head.cls_logits.weight.shape[0] == 15
    # parameters once (the shared res5 trains once per step), state-dict keys under both paths (torch's rule)
    names = [n for n, _ in ours.named_parameters()]
    assert not any(n.startswith("roi_heads.mask_head.") for n in names) and len(names) == len(set(names))
    assert any(k.startswith("roi_heads.mask_head.0.conv1") for k in ours.state_dict())


def test_the_twin_has_our_keys_shapes_and_trainable_parameters():
    config = resnet50_c4(NUM_CLASSES)
    tv, ours = torchvision_model(config), MaskRCNN(config)
    assert type(tv) is TVMaskRCNN and isinstance(tv.roi_heads.box_head, Res5BoxHead)
    assert tv.roi_heads.mask_head is tv.roi_heads.box_head.res5
    theirs = tv.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(tuple(v.shape) == tuple(theirs[k].shape) for k, v in ours.state_dict().items())
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == \
        [n for n, p in tv.named_parameters() if p.requires_grad]
    frozen = [n for n, p in ours.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("backbone.body.conv1", "backbone.body.bn1", "backbone.body.layer1"))
                          for n in frozen)


@pytest.mark.parametrize("which", [0, 1, 2, "batch"])
def test_inference_float64_identical(which):
    """Same detections in the same order: same labels; boxes, scores and 14x14 masks pasted within 1e-6."""
    tv, ours = c4_pair()
    images = shipped_images()
    images = images[:2] if which == "batch" else [images[which]]
    assert_float64_detections_identical(*run_inference(tv, ours, images, np.float64), images)


@pytest.mark.parametrize(("recipe", "empty_second_image"), [("frozen", False), ("frozen", True),
                                                             ("batchnorm", False)])
def test_training_losses_and_gradients(recipe, empty_second_image):
    """The five losses within 1e-8 and every trainable parameter's gradient within 1e-6 relative, torchvision
    replaying our sampled anchors and RoIs; res5's gradient sums its box and mask branches' in both."""
    tv, ours = c4_pair(recipe)
    images, targets = shapes_targets(np.random.default_rng(3))
    if empty_second_image:
        targets[1] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64),
                      "masks": np.zeros((0, *images[1].shape[:2]), np.uint8)}
    losses = assert_training_matches(tv, ours, images, targets, None, LOSS_TOL, GRAD_RTOL)
    assert "loss_mask" in losses and losses["loss_mask"].item() > 0 and losses["loss_box_reg"].item() > 0


def test_the_c4_faster_rcnn_matches_too():
    tv, ours = c4_pair("frozen", mask=False)
    images = shipped_images()[:2]
    out, ref = run_inference(tv, ours, images, np.float64)
    for o, r in zip(out, ref, strict=True):
        assert set(o) == set(r) == {"boxes", "labels", "scores"} and len(o["boxes"]) == len(r["boxes"]) > 0
        np.testing.assert_array_equal(o["labels"], r["labels"])
        assert np.abs(o["boxes"] - r["boxes"]).max() <= 1e-6 and np.abs(o["scores"] - r["scores"]).max() <= 1e-6


def test_full_state_dict_round_trip_is_bit_identical():
    """ours -> the torchvision twin -> ours, every key (the shared res5 under both names), bit for bit."""
    config = resnet50_c4(NUM_CLASSES)
    assert_state_dict_round_trip(config, torchvision_model(config, seed=3))


def test_a_training_step_updates_the_shared_res5_once():
    """SGD over ``model.parameters()`` sees res5's weights once: the step equals torch's on the twin."""
    from mrcnn_np.nn.optim import SGD

    tv, ours = c4_pair("frozen")
    images, targets = shapes_targets(np.random.default_rng(6))
    name = "roi_heads.box_head.res5.2.conv3.weight"
    before = ours.state_dict()[name].copy()
    assert_training_matches(tv, ours, images, targets, None, LOSS_TOL, GRAD_RTOL)
    SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1).step()
    tv_params = [p for p in tv.parameters() if p.requires_grad]
    torch.optim.SGD(tv_params, lr=0.1).step()
    after = ours.state_dict()[name]
    np.testing.assert_allclose(after - before, tv.state_dict()[name].numpy() - before, rtol=1e-6, atol=1e-15)
    assert np.array_equal(ours.state_dict()["roi_heads.mask_head.2.conv3.weight"], after)


def test_convert_reads_a_c4_state_dict(tmp_path, capsys):
    """`mrcnn-np convert` recognises the C4 model by its res5 box head and keeps every weight."""
    from mrcnn_np import cli
    from mrcnn_np.convert import load_model

    tv = torchvision_model(resnet50_c4(NUM_CLASSES), seed=1)
    torch.save(tv.state_dict(), tmp_path / "c4.pth")
    assert cli.main(["convert", str(tmp_path / "c4.pth"), str(tmp_path / "c4.safetensors")]) == 0
    assert f"Mask R-CNN resnet50-C4, {NUM_CLASSES} classes" in capsys.readouterr().out
    model = load_model(tmp_path / "c4.safetensors")
    assert model.config == resnet50_c4(NUM_CLASSES)
    theirs = state_dict_from_torch(tv)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, theirs[k]), k
