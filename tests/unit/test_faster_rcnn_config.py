"""Faster R-CNN as a configuration: ``mask_branch=False`` in the config, RoI heads without the mask
branch, targets without masks, bbox-only evaluation. (Parity with torchvision's FasterRCNN:
tests/reference/test_faster_rcnn.py.)"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from mrcnn_np.config import (
    MaskRCNNConfig,
    config_from_dict,
    config_to_dict,
    fasterrcnn_resnet50_fpn,
    resnet50_fpn,
    tiny,
)
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import RoIHeads


def test_mask_branch_defaults_on_and_the_preset_turns_it_off():
    assert MaskRCNNConfig().mask_branch is True and resnet50_fpn().mask_branch is True
    faster, mask = fasterrcnn_resnet50_fpn(), resnet50_fpn()
    assert faster.mask_branch is False
    # torchvision's fasterrcnn_resnet50_fpn and maskrcnn_resnet50_fpn share every other default
    assert all(getattr(faster, f.name) == getattr(mask, f.name) for f in fields(MaskRCNNConfig)
               if f.name != "mask_branch")
    assert fasterrcnn_resnet50_fpn(7, min_size=320).num_classes == 7
    assert fasterrcnn_resnet50_fpn(mask_branch=True).mask_branch is True  # overrides win
    assert tiny(mask_branch=False).mask_branch is False and tiny().mask_branch is True


@pytest.mark.parametrize("bad", [1, 0, "no", None])
def test_mask_branch_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="mask_branch must be True or False"):
        MaskRCNNConfig(mask_branch=bad)


def test_mask_branch_is_saved_and_old_dicts_load_with_the_mask_branch():
    d = config_to_dict(tiny(mask_branch=np.bool_(False)))
    assert d["mask_branch"] is False
    assert config_from_dict(d) == tiny(mask_branch=False)
    del d["mask_branch"]  # a configuration saved before the switch existed
    assert config_from_dict(d).mask_branch is True


def test_roi_heads_without_the_mask_branch():
    heads = RoIHeads.from_config(tiny(mask_branch=False), rng=0)
    assert not heads.has_mask()
    assert heads.mask_roi_pool is None and heads.mask_head is None and heads.mask_predictor is None
    assert RoIHeads.from_config(tiny(), rng=0).has_mask()
    half = RoIHeads.from_config(tiny(), rng=0, mask_head=None)  # one part missing: neither model
    with pytest.raises(ValueError, match="together"):
        half.has_mask()


def test_state_dict_has_no_mask_keys_and_the_rest_equals_mask_rcnn():
    """The mask head's weights are drawn last: without it, every other weight is Mask R-CNN's."""
    faster, mask = MaskRCNN(tiny(mask_branch=False), rng=3), MaskRCNN(tiny(), rng=3)
    sd, full = faster.state_dict(), mask.state_dict()
    assert not [k for k in sd if "mask" in k]
    assert list(sd) == [k for k in full if not k.startswith("roi_heads.mask_")]
    assert all(np.array_equal(v, full[k]) for k, v in sd.items())


def _data(rng, n=2, size=(96, 112)):
    images, targets = [], []
    for _ in range(n):
        images.append(rng.random((*size, 3)))
        x1, y1 = rng.integers(0, 40, 2)
        boxes = np.array([[x1, y1, x1 + 40, y1 + 30]], dtype=np.float64)
        masks = np.zeros((1, *size), np.uint8)
        masks[0, y1:y1 + 30, x1:x1 + 40] = 1
        targets.append({"boxes": boxes, "labels": np.array([1]), "masks": masks})
    return images, targets


def test_faster_rcnn_is_mask_rcnn_without_the_mask_branch():
    """Same weights and draws: the same four losses and the same detections, no loss_mask, no masks."""
    faster, mask = MaskRCNN(tiny(mask_branch=False), rng=3), MaskRCNN(tiny(), rng=3)
    images, targets = _data(np.random.default_rng(0))
    faster.eval()
    mask.eval()
    out, ref = faster(images), mask(images)
    for o, r in zip(out, ref, strict=True):
        assert set(o) == {"boxes", "labels", "scores"} and "masks" in r and len(o["boxes"]) > 0
        assert all(np.array_equal(o[k], r[k]) for k in o)
    faster.train()  # (training mode updates the BatchNorm statistics: compared after inference)
    mask.train()
    boxes_only = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    ours, theirs = faster(images, boxes_only, rng=1), mask(images, targets, rng=1)
    assert set(ours) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert set(theirs) == {*ours, "loss_mask"}
    assert all(ours[k].item() == theirs[k].item() for k in ours)
    assert all(v.item() == faster(images, targets, rng=1)[k].item() for k, v in ours.items())  # masks ignored

def test_targets_need_masks_only_with_the_mask_branch():
    images, targets = _data(np.random.default_rng(1), n=1)
    boxes_only = [{"boxes": targets[0]["boxes"], "labels": targets[0]["labels"]}]
    mask = MaskRCNN(tiny()).train()
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'masks'"):
        mask(images, boxes_only, rng=0)
    faster = MaskRCNN(tiny(mask_branch=False)).train()
    wrong = [{**targets[0], "masks": targets[0]["masks"][:, :10]}]  # given masks are still checked
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\] must have shape"):
        faster(images, wrong, rng=0)
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'labels'"):
        faster(images, [{"boxes": targets[0]["boxes"]}], rng=0)


def test_evaluation_scores_boxes_only_without_the_mask_branch():
    from mrcnn_np.evaluate import coco_from_targets, evaluate_model

    images, targets = _data(np.random.default_rng(2))

    class Dataset:  # the parts of a CocoDataset evaluate_model reads
        categories = ["background", "a", "b", "c"]
        coco = coco_from_targets(targets, [im.shape[:2] for im in images], categories)
        image_ids = sorted(coco.getImgIds())
        category_ids = [0, 1, 2, 3]

        def __len__(self):
            return len(images)

        def image(self, i):
            return images[i]

    faster = MaskRCNN(tiny(mask_branch=False))
    metrics, outputs = evaluate_model(faster, Dataset(), progress=False, verbose=False)
    assert set(metrics) == {"bbox"} and all("masks" not in o for o in outputs)
    metrics, _ = evaluate_model(MaskRCNN(tiny()), Dataset(), progress=False, verbose=False)
    assert set(metrics) == {"bbox", "segm"}
