"""Procedural shapes: rasterised areas and geometry, occlusion, seeds, labels, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mrcnn_np.data.coco import CocoDataset
from mrcnn_np.data.shapes import (
    SHAPES,
    classification_set,
    draw_mask,
    random_image,
    shapes_coco,
    shapes_dataset,
    write_shapes_dataset,
)

AREA = {  # area of a shape of size s
    "square": lambda s: s * s,
    "circle": lambda s: math.pi * (s / 2) ** 2,
    "triangle": lambda s: math.sqrt(3) / 4 * s * s,
}


def iou(a, b) -> float:
    return (a & b).sum() / (a | b).sum()


# --- draw_mask -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 200.0])
def test_area_matches_the_formula(kind, angle):
    rng = np.random.default_rng(0)
    for _ in range(3):
        size = rng.uniform(30, 50)
        center = rng.uniform(40, 60, size=2)
        mask = draw_mask(kind, center, size, 100, 100, angle)
        assert mask.shape == (100, 100) and mask.dtype == bool
        assert mask.sum() == pytest.approx(AREA[kind](size), rel=0.03)


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("angle", [0.0, 33.0, 90.0])
def test_centroid_is_the_center(kind, angle):
    center = (41.3, 57.8)
    ys, xs = np.nonzero(draw_mask(kind, center, 30, 100, 100, angle))
    assert xs.mean() + 0.5 == pytest.approx(center[0], abs=0.5)
    assert ys.mean() + 0.5 == pytest.approx(center[1], abs=0.5)


def test_axis_aligned_square_covers_exactly_the_pixels_whose_centres_are_inside():
    # centre (5, 5), side 4: x in [3, 7) -> columns 3..6; pixel centres at +0.5
    expected = np.zeros((10, 12), dtype=bool)
    expected[3:7, 3:7] = True
    np.testing.assert_array_equal(draw_mask("square", (5, 5), 4, 10, 12), expected)
    # half a pixel to the right: the centres 3.5..6.5 of columns 3..6 still lie in [3.5, 7.5)
    np.testing.assert_array_equal(draw_mask("square", (5.5, 5), 4, 10, 12), expected)
    # just past half a pixel: column 3 drops out, column 7 comes in
    shifted = draw_mask("square", (5.51, 5), 4, 10, 12)
    assert not shifted[:, 3].any() and shifted[3:7, 7].all()


def test_circle_is_symmetric_and_clipped_at_the_border():
    mask = draw_mask("circle", (16, 16), 20, 32, 32)
    np.testing.assert_array_equal(mask, mask.T)
    np.testing.assert_array_equal(mask, mask[::-1])
    half = draw_mask("circle", (0, 16), 20, 32, 32)  # centre on the left edge
    assert half.sum() == pytest.approx(mask.sum() / 2, rel=0.05)


def test_triangle_points_up_and_rotates_counter_clockwise_on_screen():
    up = draw_mask("triangle", (50, 50), 40, 100, 100)
    rows = np.flatnonzero(up.any(axis=1))
    assert up[rows[0]].sum() < 5 and up[rows[-1]].sum() > 35  # apex on top, base below
    left = draw_mask("triangle", (50, 50), 40, 100, 100, angle=90)
    cols = np.flatnonzero(left.any(axis=0))
    assert left[:, cols[0]].sum() < 5 and left[:, cols[-1]].sum() > 35  # apex to the left
    np.testing.assert_array_equal(draw_mask("triangle", (50, 50), 40, 100, 100, 180), up[::-1])


@pytest.mark.parametrize(("kind", "period"), [("square", 90.0), ("triangle", 120.0)])
def test_rotation_by_the_symmetry_angle_gives_the_same_shape(kind, period):
    a = draw_mask(kind, (40.2, 39.7), 36, 80, 80, angle=10)
    b = draw_mask(kind, (40.2, 39.7), 36, 80, 80, angle=10 + period)
    c = draw_mask(kind, (40.2, 39.7), 36, 80, 80, angle=10 + period / 2)
    assert iou(a, b) > 0.97
    assert iou(a, c) < 0.9  # half the period is a different orientation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hexagon", (5, 5), 4, 10, 10), "kind"),
        (("square", (5, 5), 0, 10, 10), "size"),
        (("square", (5, 5), -3, 10, 10), "size"),
        (("circle", (5, 5), float("nan"), 10, 10), "size"),
        (("circle", (5, 5), 4, 0, 10), "height"),
        (("circle", (5, 5), 4, 10, 2.5), "width"),
        (("circle", (5, 5, 5), 4, 10, 10), "center"),
        (("circle", (5, float("inf")), 4, 10, 10), "center"),
        (("square", (5, 5), 4, 10, 10, float("nan")), "angle"),
    ],
)
def test_draw_mask_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        draw_mask(*args)


# --- random_image ----------------------------------------------------------------------------
def test_random_image_types_shapes_and_ranges():
    image, masks, labels = random_image(np.random.default_rng(3), 48, 64, max_instances=5)
    assert image.dtype == np.float32 and image.shape == (48, 64, 3)
    assert 0 <= image.min() and image.max() <= 1
    assert masks.dtype == bool and masks.shape[1:] == (48, 64)
    assert labels.dtype == np.int64 and labels.shape == (masks.shape[0],)
    assert 1 <= len(labels) <= 5 and set(labels.tolist()) <= {1, 2, 3}


def test_the_same_seed_reproduces_the_image_exactly():
    a = random_image(np.random.default_rng(7), 40, 40, max_instances=4)
    b = random_image(np.random.default_rng(7), 40, 40, max_instances=4)
    c = random_image(np.random.default_rng(8), 40, 40, max_instances=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_occluded_masks_are_disjoint_and_match_the_pixels_drawn():
    rng = np.random.default_rng(0)
    for _ in range(30):
        image, masks, _ = random_image(rng, 40, 40, max_instances=6, min_visible=0.0)
        assert masks.sum(axis=0).max() <= 1, "instances overlap"
        assert masks.reshape(len(masks), -1).any(axis=1).all(), "an empty mask was kept"
        colours = [np.unique(image[m], axis=0) for m in masks]
        assert all(len(c) == 1 for c in colours), "an instance shows more than one colour"
        background = np.unique(image[~masks.any(axis=0)], axis=0)
        assert len(background) <= 1, "pixels outside every mask are not all background"
        for c in colours:  # every visible instance contrasts with the background
            assert len(background) == 0 or np.linalg.norm(c[0] - background[0]) >= 0.3 - 1e-6


def test_min_visible_drops_the_most_occluded_instances_only():
    # The random stream does not depend on min_visible: the same shapes are drawn, and a
    # stricter threshold keeps a subset of them, always including the last (unoccluded) one.
    for seed in range(20):
        _, all_masks, all_labels = random_image(np.random.default_rng(seed), 40, 40, 6, min_visible=0.0)
        _, some, some_labels = random_image(np.random.default_rng(seed), 40, 40, 6, min_visible=0.5)
        _, whole, _ = random_image(np.random.default_rng(seed), 40, 40, 6, min_visible=1.0)
        assert len(whole) >= 1 and len(whole) <= len(some) <= len(all_masks)
        kept = [next(i for i, m in enumerate(all_masks) if np.array_equal(m, s)) for s in some]
        assert kept == sorted(kept)
        np.testing.assert_array_equal(all_labels[kept], some_labels)
        np.testing.assert_array_equal(all_masks[-1], some[-1])


def test_max_overlap_zero_draws_shapes_that_hide_nothing():
    # No shape may hide a pixel of an earlier one: every instance is whole, none is dropped
    # even at min_visible=1, and every pixel outside the masks is background (no clutter).
    cluttered = 0
    for seed in range(30):
        image, masks, labels = random_image(np.random.default_rng(seed), 48, 48, 5, max_overlap=0.0, min_visible=0.0)
        _, whole, whole_labels = random_image(np.random.default_rng(seed), 48, 48, 5, max_overlap=0.0, min_visible=1.0)
        np.testing.assert_array_equal(masks, whole)
        np.testing.assert_array_equal(labels, whole_labels)
        assert len(np.unique(image[~masks.any(axis=0)], axis=0)) <= 1
        default_image, default_masks, _ = random_image(np.random.default_rng(seed), 48, 48, 5)
        cluttered += len(np.unique(default_image[~default_masks.any(axis=0)], axis=0)) > 1
    assert cluttered > 0, "the default overlap never left clutter: the check above would show nothing"


@pytest.mark.parametrize("max_overlap", [0.3, 1.0])
def test_max_overlap_bounds_the_hidden_part_of_an_earlier_shape(monkeypatch, max_overlap):
    # Two shapes; draw_mask is recorded. The first shape's one placement and the second's
    # accepted (last) one give the whole shapes: the second hides at most max_overlap of the
    # first, whose mask is what is left of it. Unrestricted (1.0), some pairs hide more.
    import mrcnn_np.data.shapes as shapes

    drawn = []
    def recorded(*args, **kwargs):
        drawn.append(draw_mask(*args, **kwargs))
        return drawn[-1].copy()  # random_image cuts occluded pixels out of its copy

    monkeypatch.setattr(shapes, "draw_mask", recorded)
    hidden = []
    for seed in range(60):
        drawn.clear()
        _, masks, _ = random_image(np.random.default_rng(seed), 48, 48, 2, min_instances=2, max_overlap=max_overlap,
                                   min_visible=0.0)
        first, second = drawn[0], drawn[-1]
        if len(masks) == 2:
            np.testing.assert_array_equal(masks[0], first & ~second)
            np.testing.assert_array_equal(masks[1], second)
            hidden.append((first & second).sum() / first.sum())
        else:  # no placement of the second shape within max_overlap in 20 tries: left out
            assert max_overlap < 1 and len(drawn) == 1 + shapes._PLACEMENT_TRIES
    assert len(hidden) >= 40
    assert (max(hidden) <= 0.3) == (max_overlap == 0.3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rng": 0}, TypeError, "Generator"),
        ({"height": 0}, ValueError, "height"),
        ({"max_size": 40}, ValueError, "max_size"),  # 40 * sqrt(2) > 32
        ({"min_size": 10, "max_size": 5}, ValueError, "min_size"),
        ({"min_size": 0}, ValueError, "min_size"),
        ({"max_instances": 0}, ValueError, "instances"),
        ({"min_instances": 3, "max_instances": 2}, ValueError, "instances"),
        ({"min_visible": 1.5}, ValueError, "min_visible"),
        ({"min_contrast": 2.0}, ValueError, "min_contrast"),
        ({"max_overlap": -0.1}, ValueError, "max_overlap"),
        ({"max_overlap": 1.5}, ValueError, "max_overlap"),
    ],
)
def test_random_image_rejects_bad_arguments(kwargs, error, message):
    args = {"rng": np.random.default_rng(0), "height": 32, "width": 32} | kwargs
    with pytest.raises(error, match=message):
        random_image(**args)


# --- classification_set ------------------------------------------------------------------------
def test_classification_set_shapes_balance_and_seed():
    images, labels = classification_set(90, size=24, seed=5)
    assert images.dtype == np.float32 and images.shape == (90, 3, 24, 24)
    assert labels.dtype == np.int64 and labels.shape == (90,)
    assert np.bincount(labels, minlength=3).min() >= 15  # all three classes, roughly balanced
    again, again_labels = classification_set(90, size=24, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert not np.array_equal(images, classification_set(90, size=24, seed=6)[0])


def test_classification_labels_name_the_shape_drawn():
    # Axis-aligned shapes fill their bounding box by 1 (square), pi/4 (circle), 1/2 (triangle).
    images, labels = classification_set(60, size=48, seed=1, rotate=False)
    for image, label in zip(images, labels, strict=True):
        foreground = (image != image[:, :1, :1]).any(axis=0)  # (H, W); the corner is background
        assert len(np.unique(image.reshape(3, -1), axis=1).T) == 2, "expected one shape"
        ys, xs = np.nonzero(foreground)
        fill = foreground.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
        guess = int(np.argmin([abs(fill - 1.0), abs(fill - math.pi / 4), abs(fill - 0.5)]))
        assert SHAPES[guess] == SHAPES[label]


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_classification_set_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be"):
        classification_set(n)


# --- the shapes as COCO --------------------------------------------------------------------------
def test_shapes_on_disk_and_in_memory_are_the_same(tmp_path, capsys):
    path = write_shapes_dataset(tmp_path / "shapes", 4, seed=3, height=64, width=48, progress=True)
    assert path == tmp_path / "shapes" / "annotations.json"
    assert sorted(p.name for p in (tmp_path / "shapes" / "images").iterdir()) == [f"00000{i}.png" for i in (1, 2, 3, 4)]
    on_disk, in_memory = CocoDataset(path), shapes_dataset(4, seed=3, height=64, width=48)
    assert on_disk.problems == [] and in_memory.problems == [] and len(on_disk) == len(in_memory) == 4
    assert on_disk.categories == in_memory.categories == ["background", *SHAPES]
    for i in range(4):
        (a, ta), (b, tb) = on_disk[i], in_memory[i]
        assert a.shape == (64, 48, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert ta.keys() == tb.keys()
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key])
    assert "write shapes" in capsys.readouterr().err


def test_shapes_coco_matches_random_image_and_boxes_are_tight():
    coco, images = shapes_coco(5, seed=1, height=40, width=56, max_instances=4, min_visible=0.3)
    json.dumps(coco)
    assert [c["name"] for c in coco["categories"]] == list(SHAPES)
    ds = shapes_dataset(5, seed=1, height=40, width=56, max_instances=4, min_visible=0.3)
    for i, entry in enumerate(coco["images"]):
        assert entry == {"id": i + 1, "file_name": f"{i + 1:06d}.png", "height": 40, "width": 56}
        image, masks, labels = random_image(np.random.default_rng([1, i]), 40, 56, 4, min_visible=0.3)
        np.testing.assert_array_equal(images[i + 1], np.round(image * 255).astype(np.uint8))
        _, target = ds[i]
        np.testing.assert_array_equal(target["masks"], masks)
        np.testing.assert_array_equal(target["labels"], labels)
        for box, mask in zip(target["boxes"], masks, strict=True):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    areas = [a["area"] for a in coco["annotations"]]
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(areas) + 1))
    assert areas == [int(m.sum()) for i in range(len(ds)) for m in ds[i][1]["masks"]]


def test_shapes_coco_is_a_prefix_and_seeds_differ():
    three, three_images = shapes_coco(3, seed=0, height=32, width=32)
    four, four_images = shapes_coco(4, seed=0, height=32, width=32)
    assert four["images"][:3] == three["images"]
    assert four["annotations"][: len(three["annotations"])] == three["annotations"]
    for k in three_images:
        np.testing.assert_array_equal(three_images[k], four_images[k])
    _, other = shapes_coco(3, seed=1, height=32, width=32)
    assert not any(np.array_equal(three_images[k], other[k]) for k in other)


@pytest.mark.parametrize(("kwargs", "message"), [({"n": -1}, "n must be"), ({"n": 2.0}, "n must be"),
                                                 ({"n": 1, "seed": -2}, "seed must be"),
                                                 ({"n": 1, "height": 0}, "height")])
def test_shapes_coco_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapes_coco(**kwargs)
