"""``mrcnn_np.data.small_objects``: specks and rods drawn as specified (sizes, orientation, exact boxes, no
two objects touching), reproducible per seed, the same on disk and in memory, bad arguments refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn_np.data.coco import CocoDataset
from mrcnn_np.data.small_objects import (
    KINDS,
    small_objects_coco,
    small_objects_dataset,
    small_objects_image,
    write_small_objects_dataset,
)


def test_image_types_sizes_and_kinds():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        image, masks, labels = small_objects_image(rng, 96, 128, 6)
        assert image.shape == (96, 128, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
        assert masks.shape[1:] == (96, 128) and masks.dtype == bool and labels.dtype == np.int64
        assert 1 <= len(labels) <= 6 and len(masks) == len(labels)
        for mask, label in zip(masks, labels, strict=True):
            ys, xs = np.nonzero(mask)
            w, h = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
            kind = KINDS[label - 1]
            seen.add(kind)
            if kind == "rod":  # a full pixel rectangle, 3..6 wide, 24..64 long, horizontal or vertical
                assert mask.sum() == w * h and sorted((w, h)) in [[a, b] for a in range(3, 7) for b in range(24, 65)]
            else:  # a disc of diameter 6..16: its box is about the diameter, its area about pi d^2 / 4
                assert 5 <= w <= 17 and abs(int(w) - int(h)) <= 1
                assert mask.sum() == pytest.approx(np.pi * w * h / 4, rel=0.35)
            assert (image[mask] == image[mask][0]).all()  # one colour per object
    assert seen == set(KINDS)


def test_objects_neither_overlap_nor_touch():
    rng = np.random.default_rng(1)
    for _ in range(30):
        _, masks, _ = small_objects_image(rng, 64, 64, 8)
        for i in range(len(masks)):
            ys, xs = np.nonzero(masks[i])
            grown = np.zeros_like(masks[i])
            grown[max(0, ys.min() - 2):ys.max() + 3, max(0, xs.min() - 2):xs.max() + 3] = True
            assert not any((grown & masks[j]).any() for j in range(len(masks)) if j != i)


def test_same_seed_same_data_prefix_and_seeds_differ():
    a, images_a = small_objects_coco(4, seed=2, height=64, width=80)
    b, images_b = small_objects_coco(5, seed=2, height=64, width=80)
    assert b["images"][:4] == a["images"] and b["annotations"][:len(a["annotations"])] == a["annotations"]
    for k in images_a:
        np.testing.assert_array_equal(images_a[k], images_b[k])
    _, other = small_objects_coco(4, seed=3, height=64, width=80)
    assert not any(np.array_equal(images_a[k], other[k]) for k in other)
    json.dumps(a)
    assert [c["name"] for c in a["categories"]] == list(KINDS)


def test_on_disk_and_in_memory_are_the_same_with_tight_boxes(tmp_path):
    path = write_small_objects_dataset(tmp_path / "small", 3, seed=4, height=80, width=72)
    on_disk, in_memory = CocoDataset(path, strict=True), small_objects_dataset(3, seed=4, height=80, width=72)
    assert on_disk.categories == in_memory.categories == ["background", *KINDS]
    for i in range(3):
        (a, ta), (b, tb) = on_disk[i], in_memory[i]
        np.testing.assert_array_equal(a, b)
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key])
        image, masks, labels = small_objects_image(np.random.default_rng([4, i]), 80, 72, 6)
        np.testing.assert_array_equal(ta["masks"], masks)
        np.testing.assert_array_equal(ta["labels"], labels)
        for box, mask in zip(ta["boxes"], masks, strict=True):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"rng": 0}, TypeError, "rng must be"),
    ({"height": 0}, ValueError, "height"),
    ({"max_instances": 0}, ValueError, "max_instances"),
    ({"speck_size": (8, 4)}, ValueError, "speck_size"),
    ({"speck_size": (0, 4)}, ValueError, "speck_size"),
    ({"rod_length": (10, 200)}, ValueError, "rod_length"),
    ({"rod_width": (2.5, 3)}, ValueError, "rod_width"),
])
def test_image_rejects_bad_arguments(kwargs, error, message):
    args = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(error, match=message):
        small_objects_image(**args)


@pytest.mark.parametrize(("kwargs", "message"), [({"n": -1}, "n must be"), ({"n": 1, "seed": -1}, "seed must be")])
def test_coco_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_objects_coco(**kwargs)
