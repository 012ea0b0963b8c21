"""Training targets: every mistake in count, keys, shapes, labels or boxes is a ValueError or
TypeError naming the target, the key and the index -- never a silent change of the loss."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np.config import tiny
from mrcnn_np.model.mask_rcnn import MaskRCNN

H, W = 48, 64
RNG = np.random.default_rng(0)
IMAGES = [RNG.random((H, W, 3)).astype(np.float32) for _ in range(2)]


def good_target():
    masks = np.zeros((2, H, W), np.uint8)
    masks[0, 5:20, 5:25] = 1
    masks[1, 25:40, 30:60] = 1
    return {"boxes": np.array([[5, 5, 25, 20], [30, 25, 60, 40]], np.float32),
            "labels": np.array([1, 3], np.int64), "masks": masks}


def with_(**changes):
    t = good_target()
    for k, v in changes.items():
        if v is None:
            del t[k]
        else:
            t[k] = v
    return t


@pytest.fixture(scope="module")
def model():
    return MaskRCNN(tiny(num_classes=4), rng=0).train()


@pytest.mark.parametrize(("targets", "exc", "match"), [
    ([good_target()], ValueError, r"got 2 image\(s\) but 1 target\(s\); expected one target per image"),
    (good_target(), TypeError, "targets must be a list of dicts"),
    ([good_target(), None], TypeError, r"targets\[1\] must be a dict with boxes, labels and masks, got NoneType"),
    ([good_target(), with_(masks=None)], ValueError, r"targets\[1\] has no 'masks'; expected keys"),
    ([with_(boxes=None, labels=None), good_target()], ValueError, r"targets\[0\] has no 'boxes', 'labels'"),
    ([good_target(), with_(labels=np.array([1]))], ValueError,
     r"targets\[1\]\['labels'\] must have shape \(2,\) \(one per box\), got \(1,\)"),
    ([good_target(), with_(masks=good_target()["masks"][:1])], ValueError,
     r"targets\[1\]\['masks'\] must have shape \(2, 48, 64\) .* got \(1, 48, 64\)"),
    ([good_target(), with_(masks=np.zeros((2, H // 2, W // 2), np.uint8))], ValueError,
     r"targets\[1\]\['masks'\] must have shape \(2, 48, 64\) \(one mask per box, the image's size\), got \(2, 24, 32\)"),
    ([with_(labels=np.array([1, 0])), good_target()], ValueError,
     r"targets\[0\]\['labels'\]\[1\] = 0; expected a class in 1\.\.3 \(0 is the background\)"),
    ([with_(labels=np.array([-1, 2])), good_target()], ValueError, r"targets\[0\]\['labels'\]\[0\] = -1; expected"),
    ([with_(labels=np.array([1, 4])), good_target()], ValueError, r"targets\[0\]\['labels'\]\[1\] = 4; expected a class in 1\.\.3"),
    ([with_(labels=np.array([1.0, 2.0])), good_target()], TypeError, r"targets\[0\]\['labels'\] must be integer"),
    ([with_(boxes=np.zeros((2, 5), np.float32)), good_target()], ValueError,
     r"targets\[0\]\['boxes'\] must have shape \(R, 4\)"),
    ([with_(boxes=np.array([1.0, 2, 3, 4])), good_target()], ValueError, r"targets\[0\]\['boxes'\] must have shape \(R, 4\)"),
    ([with_(boxes=np.array([[5, 5, 25, 20], [30, 25, 30, 40]], np.float32)), good_target()], ValueError,
     r"targets\[0\]\['boxes'\]\[1\] = \[30.0, 25.0, 30.0, 40.0\] has zero width or height"),
    ([good_target(), with_(boxes=np.array([[5, 5, 25, 5], [30, 25, 60, 40]], np.float32))], ValueError,
     r"targets\[1\]\['boxes'\]\[0\] .* zero width or height"),
    ([with_(boxes=np.array([[5, 5, 25, np.nan], [30, 25, 60, 40]], np.float32)), good_target()], ValueError,
     r"targets\[0\]\['boxes'\]\[0\] .* NaN or infinite"),
    ([with_(boxes=[["a", 5, 25, 20]]), good_target()], TypeError, r"targets\[0\]\['boxes'\] must be an array or"),
    ([with_(labels="cat"), good_target()], TypeError, r"targets\[0\]\['labels'\] must be an array, got str"),
])
def test_bad_targets_are_named(model, targets, exc, match):
    with pytest.raises(exc, match=match):
        model(IMAGES, targets)


def test_python_lists_in_targets_give_the_same_losses(model):
    arrays = [good_target(), good_target()]
    lists = [{"boxes": t["boxes"].tolist(), "labels": t["labels"].tolist(), "masks": t["masks"]} for t in arrays]
    ref = model.loss(IMAGES, arrays, rng=1)
    got = model.loss(IMAGES, lists, rng=1)
    for key in ref:
        np.testing.assert_array_equal(got[key].data, ref[key].data)


def test_an_image_without_objects_may_use_empty_lists(model):
    empty = {"boxes": [], "labels": [], "masks": np.zeros((0, H, W), np.uint8)}
    losses = model.loss(IMAGES, [good_target(), empty], rng=1)
    assert all(np.isfinite(v.data) for v in losses.values())
