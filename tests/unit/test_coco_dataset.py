"""COCO-format datasets: masks from polygons and RLE, labels, crowd, bad input, hflip, DataLoader, COCOeval."""

from __future__ import annotations

import json
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from mrcnn_np.data.coco import (
    CocoDataset,
    DatasetError,
    DatasetProblem,
    DatasetWarning,
    _compressed_rle_total,
    format_problems,
    read_image,
)
from mrcnn_np.data.loader import DataLoader, hflip
from mrcnn_np.data.shapes import shapes_coco, shapes_dataset
from mrcnn_np.evaluate import coco_evaluate, encode_mask, to_coco_results

H, W = 48, 64
SKIPPED = "annotation skipped"


def rect_mask(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rect_polygon(x0, y0, x1, y1):
    """The polygon along the pixel corners of columns x0..x1-1, rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(mask):
    """Run lengths of the column-major flattened mask, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def coco_dict(annotations, images=None, categories=None):
    """A COCO dict with two H x W images (ids 1, 2) and categories 1 'a', 2 'b' unless given."""
    images = images if images is not None else [
        {"id": 1, "file_name": "one.png", "height": H, "width": W},
        {"id": 2, "file_name": "two.png", "height": H, "width": W},
    ]
    categories = categories if categories is not None else [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def ann(id, image_id=1, category_id=1, box=(10, 5, 30, 25), **overrides):
    """A valid annotation: the rectangle ``box`` xyxy as a polygon, its bbox, not crowd."""
    x0, y0, x1, y1 = box
    a = {"id": id, "image_id": image_id, "category_id": category_id, "segmentation": [rect_polygon(*box)],
         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
    return a | overrides


def write(tmp_path, data, image_modes=None, subdir=""):
    """``data`` as tmp_path/ann.json and a PNG per image (in ``subdir``); returns the JSON path."""
    (tmp_path / subdir).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for entry in data["images"]:
        mode = (image_modes or {}).get(entry["id"], "RGB")
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, size=(entry["height"], entry["width"], channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(2) if channels == 1 else pixels).save(tmp_path / subdir / entry["file_name"])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def arrays(data):
    return {e["id"]: np.full((e["height"], e["width"], 3), e["id"], np.uint8) for e in data["images"]}


def quiet(*args, **kwargs) -> CocoDataset:
    """A CocoDataset whose problems are expected: the warning is caught."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return CocoDataset(*args, **kwargs)


# --- masks, boxes, labels ---------------------------------------------------------------------
def test_polygons_compressed_and_uncompressed_rle_give_the_same_masks():
    two_parts = rect_mask(2, 3, 12, 9) | rect_mask(20, 30, 40, 44)
    segmentations = [
        [rect_polygon(2, 3, 12, 9), rect_polygon(20, 30, 40, 44)],
        encode_mask(two_parts),
        uncompressed_rle(two_parts),
    ]
    data = coco_dict([ann(k + 1, segmentation=s, box=(2, 3, 40, 44)) for k, s in enumerate(segmentations)])
    ds = CocoDataset(data, images=arrays(data))
    assert ds.problems == []
    _, target = ds[0]
    assert target["masks"].dtype == np.uint8 and target["masks"].shape == (3, H, W)
    for m in target["masks"]:
        np.testing.assert_array_equal(m, two_parts)


def test_target_types_boxes_from_bbox_and_negatives(tmp_path):
    data = coco_dict([ann(1, box=(10, 5, 30, 25)), ann(2, category_id=2, box=(0, 0, 8, 8))])
    ds = CocoDataset(write(tmp_path, data))
    assert len(ds) == 2 and ds.image_ids == [1, 2] and ds.file == str(tmp_path / "ann.json")
    image, target = ds[0]
    assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    assert target["boxes"].dtype == np.float32 and target["labels"].dtype == np.int64
    np.testing.assert_array_equal(target["boxes"], [[10, 5, 30, 25], [0, 0, 8, 8]])
    np.testing.assert_array_equal(target["labels"], [1, 2])
    assert target["image_id"] == 1
    np.testing.assert_array_equal(ds[-2][0], image)
    _, negative = ds[1]  # image 2 has no annotation: kept, G = 0
    assert negative["boxes"].shape == (0, 4) and negative["labels"].shape == (0,)
    assert negative["masks"].shape == (0, H, W) and negative["image_id"] == 2
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(TypeError):
        ds[0:1]


def test_crowd_annotations_stay_out_of_targets_but_in_coco():
    crowd = ann(2, box=(30, 20, 50, 40), iscrowd=1, segmentation=uncompressed_rle(rect_mask(30, 20, 50, 40)))
    data = coco_dict([ann(1), crowd])
    ds = CocoDataset(data, images=arrays(data))
    _, target = ds[0]
    assert len(target["boxes"]) == 1
    assert ds.coco.getAnnIds(imgIds=[1]) == [1, 2]
    assert ds.coco.getAnnIds(imgIds=[1], iscrowd=True) == [2]


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    data = coco_dict([ann(1), ann(2, image_id=2)])
    path = write(tmp_path, data, image_modes={1: "L", 2: "RGBA"})
    ds = CocoDataset(path)
    grey, _ = ds[0]
    assert grey.shape == (H, W, 3)
    np.testing.assert_array_equal(grey[..., 0], np.asarray(Image.open(tmp_path / "one.png")))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    rgba, _ = ds[1]
    np.testing.assert_array_equal(rgba, np.asarray(Image.open(tmp_path / "two.png"))[..., :3])


def test_category_ids_are_remapped_to_contiguous_labels():
    categories = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    data = coco_dict([ann(1, category_id=7), ann(2, category_id=3)], categories=categories)
    ds = CocoDataset(data, images=arrays(data))
    assert ds.categories == ["background", "three", "seven"] and ds.category_ids == [0, 3, 7]
    np.testing.assert_array_equal(ds[0][1]["labels"], [2, 1])


def test_images_are_found_in_the_images_folder_or_image_dir(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data, subdir="images")
    np.testing.assert_array_equal(CocoDataset(path)[0][0], np.asarray(Image.open(tmp_path / "images" / "one.png")))
    other = tmp_path / "elsewhere"
    (tmp_path / "images").rename(other)
    assert len(CocoDataset(path, image_dir=other)) == 2
    assert len(CocoDataset(data, image_dir=other)) == 2


def test_in_memory_images_are_copied_and_checked():
    data = coco_dict([ann(1)])
    images = arrays(data)
    ds = CocoDataset(data, images=images)
    ds[0][0][:] = 99
    assert ds[0][0].max() == 1
    with pytest.raises(DatasetError, match=r"images\[2\] must be a uint8 array"):
        CocoDataset(data, images=images | {2: np.zeros((H, W, 3), np.float32)})
    with pytest.raises(DatasetError, match="integer image ids"):
        CocoDataset(data, images={"1": images[1]})
    with pytest.raises(TypeError, match="mapping"):
        CocoDataset(data, images=[images[1]])


# --- bad input: one problem each, with the action taken ------------------------------------------
BAD_ANNOTATIONS = [  # (annotation 5 on image 1, message, action)
    (ann(5, image_id=99), "refers to image 99, which is not in the file", SKIPPED),
    (ann(5, segmentation=[[10, 5, 30, 5]]), "polygon with 2 points", SKIPPED),
    (ann(5, segmentation=[[10, 5, 30, 5, 30, 25, 10]]), "polygon with an odd number of coordinates (7)", SKIPPED),
    (ann(5, segmentation=[[10, 5, 30, 5], rect_polygon(10, 5, 30, 25)]), "polygon with 2 points",
     "1 polygon part dropped"),
    (ann(5, segmentation=[]), "empty polygon list", SKIPPED),
    (ann(5, bbox=[10, 5, float("nan"), 20]), "bbox with NaN or inf", SKIPPED),
    (ann(5, bbox=[float("inf"), 5, 20, 20]), "bbox with NaN or inf", SKIPPED),
    (ann(5, bbox=[10, 5, 0, 20]), "empty bbox (width 0, height 20)", SKIPPED),
    (ann(5, bbox=[10, 5, 20, -3]), "empty bbox (width 20, height -3)", SKIPPED),
    (ann(5, bbox=[10, 5, 20]), "bbox must be 4 numbers", SKIPPED),
    (ann(5, bbox=[-5, 5, 20, 20]), "box outside the image", "box clipped to the image"),
    (ann(5, bbox=[W + 1, 5, 20, 20]), "box entirely outside the image", SKIPPED),
    (ann(5, bbox=None), "no bbox", "box computed from the mask"),
    (ann(5, category_id=9), "unknown category_id 9", SKIPPED),
    (ann(5, segmentation=None), "no segmentation", SKIPPED),
    (ann(5, segmentation="polygon"), "unsupported segmentation (str)", SKIPPED),
    (ann(5, segmentation=encode_mask(np.ones((H, W + 1)))), f"RLE size {H}x{W + 1} differs from the image's {H}x{W}",
     SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": [3, 4]}), f"RLE counts cover 7 pixels, not {H}x{W}", SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": "~~~"}), "malformed RLE counts", SKIPPED),
    (ann(5, segmentation=[rect_polygon(W + 5, 5, W + 20, 20)]), "the mask is empty", SKIPPED),
    (ann(5, segmentation=encode_mask(np.zeros((H, W)))), "the mask is empty", SKIPPED),
    (ann(1), "duplicate annotation id", SKIPPED),  # id 1 is taken by the good annotation
    # untrusted values: checked before they reach pycocotools (which segfaults at 1e12)
    (ann(5, segmentation=[[10, 5, 1e12, 5, 30, 25]]), "polygon point (1e+12, 5) more than the image's size", SKIPPED),
    (ann(5, segmentation=[[10, 5, 30, -1e8, 30, 25]]), f"y in [-{H}, {2 * H}]", SKIPPED),
    (ann(5, segmentation=[[10, 5, -W - 1, 5, 30, 25]]), f"x must lie in [-{W}, {2 * W}]", SKIPPED),
    (ann(5, segmentation=[[10, 5, float("nan"), 5, 30, 25]]), "polygon with NaN or inf coordinates", SKIPPED),
    (ann(5, segmentation=[[10, 5, 10**400, 5, 30, 25]]), "polygon with NaN or inf coordinates", SKIPPED),
    (ann(5, segmentation=[[10, 5, "30", 5, 30, 25]]), "polygon that is not a list of numbers", SKIPPED),
    (ann(5, segmentation=[[10, 5, True, 5, 30, 25]]), "polygon that is not a list of numbers", SKIPPED),
    (ann(5, segmentation=[[[10, 5], [30, 5], [30, 25]]]), "polygon that is not a list of numbers", SKIPPED),
    (ann(5, segmentation=[rect_polygon(10, 5, 30, 25), [1e12, 5, 30, 5, 30, 25]]), "polygon point (1e+12, 5)",
     "1 polygon part dropped"),
    (ann(5, segmentation=[rect_polygon(10, 5, 30, 25)] * 1001), "1001 polygon parts, more than 1000", SKIPPED),
    (ann(5, segmentation=[[0, 0, W, H] * 200]), f"more than 4 (h + 1) (w + 1) = {4 * (H + 1) * (W + 1)}", SKIPPED),
    (ann(5, iscrowd="0"), "'iscrowd' must be 0 or 1, got '0'", SKIPPED),
    (ann(5, iscrowd=True), "'iscrowd' must be 0 or 1, got True", SKIPPED),
    (ann(5, iscrowd=2), "'iscrowd' must be 0 or 1, got 2", SKIPPED),
    (ann(5, category_id="1"), "'category_id' must be an integer, got '1'", SKIPPED),
    (ann(5, category_id=True), "'category_id' must be an integer, got True", SKIPPED),
    (ann(5, area="400"), "'area' must be a positive number, got '400'", "area computed from the mask"),
    (ann(5, area=10**400), "'area' must be a positive number", "area computed from the mask"),
    (ann(5, bbox=[10, 5, 10**400, 20]), "bbox with NaN or inf", SKIPPED),
    (ann(5, bbox=[10, 5, "20", 20]), "bbox must be 4 numbers", SKIPPED),
    (ann(5, bbox=[10, 5, True, 20]), "bbox must be 4 numbers", SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": [-1, H * W + 1]}), f"RLE counts must be integers from 0 to {H * W}",
     SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": [10**30]}), "RLE counts must be integers from 0", SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": [0.5, H * W - 0.5]}), "RLE counts must be integers", SKIPPED),
    (ann(5, segmentation={"size": [10**12, W], "counts": "0"}), f"RLE size 1000000000000x{W} differs", SKIPPED),
    (ann(5, segmentation={"size": [True, W], "counts": "0"}), "RLE without a valid 'size'", SKIPPED),
    (ann(5, segmentation={"size": [H, W], "counts": "P" * 12 + "0"}), "malformed RLE counts", SKIPPED),
]


@pytest.mark.parametrize(("bad", "message", "action"), BAD_ANNOTATIONS)
def test_each_bad_annotation_is_one_problem_with_its_action(tmp_path, bad, message, action):
    data = coco_dict([ann(1, box=(0, 0, 5, 5)), bad])
    data["annotations"][1] = {k: v for k, v in bad.items() if v is not None}  # None: the key is missing
    path = write(tmp_path, data)
    with pytest.warns(DatasetWarning, match="1 problem") as caught:
        ds = CocoDataset(path)
    assert len(caught) == 1
    [problem] = ds.problems
    assert problem.file == str(path) and problem.annotation_id == bad["id"]
    assert problem.image_id == bad["image_id"]
    assert message in problem.message and problem.action == action
    kept = [a["id"] for a in ds.coco.dataset["annotations"]]
    assert kept == ([1] if action == SKIPPED else [1, 5])
    _, target = ds[0]
    assert len(target["boxes"]) == len(kept)
    if action == "box clipped to the image":
        np.testing.assert_array_equal(target["boxes"][1], [0, 5, 15, 25])
    if action == "box computed from the mask":
        np.testing.assert_array_equal(target["boxes"][1], [10, 5, 30, 25])
    if action.endswith("dropped"):
        np.testing.assert_array_equal(target["masks"][1], rect_mask(10, 5, 30, 25))
    if action == "area computed from the mask":
        assert ds.coco.anns[5]["area"] == 20 * 20
    with pytest.raises(DatasetError, match="strict") as error:
        CocoDataset(path, strict=True)
    assert message in str(error.value) and str(path) in str(error.value)


def test_images_with_missing_files_or_wrong_sizes_are_skipped_with_their_annotations(tmp_path):
    images = [{"id": k, "file_name": f"{k}.png", "height": H, "width": W} for k in (1, 2, 3, 4)]
    data = coco_dict([ann(1), ann(2, image_id=2), ann(3, image_id=3), ann(4, image_id=4)], images=images)
    path = write(tmp_path, data)
    (tmp_path / "2.png").unlink()
    Image.fromarray(np.zeros((H // 2, W, 3), np.uint8)).save(tmp_path / "3.png")
    data["images"] += [{"id": 4, "file_name": "1.png", "height": H, "width": W}]  # a duplicate id
    path.write_text(json.dumps(data))
    ds = quiet(path)
    assert ds.image_ids == [1, 4] and len(ds) == 2
    by_image = {p.image_id: p for p in ds.problems}
    assert len(ds.problems) == 3 and all(p.annotation_id is None and p.action == "image skipped" for p in ds.problems)
    assert "'2.png' not found" in by_image[2].message
    assert by_image[3].message == f"the image is {H // 2}x{W} but the file says {H}x{W}"
    assert by_image[4].message == "duplicate image id"
    assert [a["id"] for a in ds.coco.dataset["annotations"]] == [1, 4]
    assert sorted(ds.coco.getImgIds()) == [1, 4]


def test_in_memory_image_without_an_array_is_skipped():
    data = coco_dict([ann(1), ann(2, image_id=2)])
    ds = quiet(data, images={1: arrays(data)[1]})
    assert ds.image_ids == [1]
    [problem] = ds.problems
    assert (problem.file, problem.image_id, problem.action) == ("<memory>", 2, "image skipped")


@pytest.mark.parametrize("annotations", [[], None])
def test_an_empty_annotation_list_is_one_problem_and_every_image_a_negative(annotations):
    data = coco_dict(annotations)
    if annotations is None:
        del data["annotations"]
    with pytest.warns(DatasetWarning, match="annotation list is empty"):
        ds = CocoDataset(data, images=arrays(data), name="mine.json")
    assert ds.problems == [DatasetProblem("mine.json", None, None,
                                          "the annotation list is empty: every image is a negative",
                                          "images kept without objects")]
    assert len(ds) == 2 and len(ds[1][1]["boxes"]) == 0
    with pytest.raises(DatasetError):
        CocoDataset(data, images=arrays(data), strict=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a JSON file"),
        ("[]", "expected a JSON object"),
        (json.dumps({"annotations": [], "categories": [{"id": 1}]}), "no 'images' list"),
        (json.dumps({"images": [], "annotations": []}), "no 'categories' list"),
        (json.dumps({"images": [], "annotations": [], "categories": []}), "'categories' list is empty"),
        (json.dumps({"images": [], "categories": [{"name": "x"}]}), "no integer 'id'"),
        (json.dumps({"images": [], "categories": [{"id": 1}, {"id": 1}]}), "appears twice"),
        (json.dumps({"images": [], "annotations": {}, "categories": [{"id": 1}]}), "'annotations' must be a list"),
    ],
)
def test_unusable_files_raise_naming_the_file(tmp_path, text, message):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message) as error:
        CocoDataset(path)
    assert str(path) in str(error.value)


def test_missing_file_and_wrong_argument_types():
    with pytest.raises(DatasetError, match="annotation file not found"):
        CocoDataset("/nonexistent/ann.json")
    with pytest.raises(TypeError, match="path or a dict"):
        CocoDataset(["images"])


def test_one_warning_lists_the_first_ten_problems_and_points_to_the_rest():
    data = coco_dict([ann(1)] + [ann(k, category_id=9) for k in range(2, 14)])
    with pytest.warns(DatasetWarning) as caught:
        ds = CocoDataset(data, images=arrays(data))
    assert len(caught) == 1 and len(ds.problems) == 12
    text = str(caught[0].message)
    assert "12 problem(s)" in text and "annotation 11 (image 1)" in text and "annotation 12 " not in text
    assert "... and 2 more" in text and ".problems" in text


def test_problem_strings_and_format_problems():
    full = DatasetProblem("a.json", 3, 7, "polygon with 2 points", "annotation skipped")
    assert str(full) == "a.json: annotation 3 (image 7): polygon with 2 points; annotation skipped"
    assert str(full._replace(image_id=None)) == "a.json: annotation 3: polygon with 2 points; annotation skipped"
    assert str(DatasetProblem("a.json", None, 7, "duplicate image id", "image skipped")) == (
        "a.json: image 7: duplicate image id; image skipped")
    assert str(DatasetProblem("<memory>", None, None, "m", "a")) == "<memory>: m; a"
    text = format_problems([full] * 3, limit=2)
    assert text.count("polygon") == 2 and text.endswith("... and 1 more")
    assert format_problems([full] * 3).count("polygon") == 3


def test_compressed_rle_totals_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        mask = rng.random((h, w)) < rng.random()
        counts = encode_mask(mask)["counts"]
        assert _compressed_rle_total(counts) == h * w
        np.testing.assert_array_equal(mask_utils.decode({"size": [h, w], "counts": counts.encode()}), mask)
    assert _compressed_rle_total("") == 0 and _compressed_rle_total("é") is None


def test_compressed_rle_runs_longer_than_pycocotools_writes_are_malformed():
    assert _compressed_rle_total("P" * 6 + "0") == 0  # 7 characters: still a run (of 0)
    assert _compressed_rle_total("P" * 7 + "0") is None  # 8: pycocotools' decoder would overflow


# --- polygon limits: range, parts, outline ---------------------------------------------------------
def problems_of(segmentation):
    data = coco_dict([ann(1, segmentation=segmentation, bbox=None)])
    ds = quiet(data, images=arrays(data))
    return ds, [p.message for p in ds.problems if p.message != "no bbox"]


def test_polygon_points_may_lie_up_to_one_image_size_outside_the_image():
    ds, problems = problems_of([[-W, -H, 2 * W, -H, 2 * W, 2 * H, -W, 2 * H]])  # the widest allowed
    assert problems == []
    np.testing.assert_array_equal(ds[0][1]["masks"][0], np.ones((H, W)))
    for x, y in ((-W - 0.5, 0), (2 * W + 0.5, 0), (0, -H - 0.5), (0, 2 * H + 0.5)):
        _, problems = problems_of([[x, y, 30, 5, 30, 25]])
        assert problems == [f"polygon point ({x:g}, {y:g}) more than the image's size outside it "
                            f"(x must lie in [-{W}, {2 * W}], y in [-{H}, {2 * H}])"]


def test_polygon_outline_limit_keeps_a_comb_over_the_whole_image():
    comb = [0, H]  # teeth one pixel wide, one apart: an outline of about H * W pixels
    for x in range(0, W, 2):
        comb += [x, H, x, 0, x + 1, 0, x + 1, H]
    ds, problems = problems_of([comb])
    assert problems == [] and ds[0][1]["masks"][0].sum() == H * W // 2
    _, problems = problems_of([[0, 0, W, H] * 200])  # 400 edges of 80 pixels
    assert problems == [f"polygon outline 32000 pixels long, more than 4 (h + 1) (w + 1) = {4 * (H + 1) * (W + 1)}"]
    ds, problems = problems_of([rect_polygon(10 + k % 20, 5, 11 + k % 20, 6) for k in range(1000)])  # most parts
    assert problems == [] and ds[0][1]["masks"][0].sum() == 20


# --- ids, sizes, names: JSON types -----------------------------------------------------------------
def test_bools_are_not_ids():
    images = [{"id": True, "file_name": "a.png", "height": H, "width": W},
              {"id": 1, "file_name": "one.png", "height": H, "width": W}]
    data = coco_dict([ann(True), ann(2, image_id=True), ann(3)], images=images)
    ds = quiet(data, images={1: arrays(data)[1]})
    assert ds.image_ids == [1] and [a["id"] for a in ds.coco.dataset["annotations"]] == [3]
    first, *others = [p.message for p in ds.problems]
    assert first.startswith("image entry 0 has no integer 'id': {") and "'id': True" in first
    assert others == ["annotation entry 0 has no integer 'id' (True)", "no integer 'image_id' (True)"]
    assert ds.problems[2].annotation_id == 2


@pytest.mark.parametrize("value", [str(H), 0, -H, float(H), True, [H]])
def test_image_height_must_be_a_positive_int_or_is_taken_from_the_image(tmp_path, value):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    data["images"][0]["height"] = value
    path.write_text(json.dumps(data))
    ds = quiet(path)
    assert ds.image_ids == [1, 2] and ds.coco.imgs[1]["height"] == H
    [problem] = ds.problems
    assert (problem.image_id, problem.annotation_id, problem.action) == (1, None, "size taken from the image")
    assert problem.message.startswith("'height' must be a positive integer, got ")
    with pytest.raises(DatasetError, match="'height' must be a positive integer"):
        CocoDataset(path, strict=True)


def test_a_size_given_as_one_number_is_checked_against_the_image(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    del data["images"][0]["height"], data["images"][1]["height"]
    data["images"][1]["width"] = W + 1
    path.write_text(json.dumps(data))
    ds = quiet(path)
    assert ds.image_ids == [1] and ds.coco.imgs[1]["height"] == H
    [problem] = ds.problems
    assert problem.image_id == 2 and problem.message == f"the image is {H}x{W} but the file says ?x{W + 1}"


@pytest.mark.parametrize(("file_name", "message"), [
    (5, "'file_name' must be a non-empty string, got 5"),
    ("", "'file_name' must be a non-empty string, got ''"),
    (["one.png"], "'file_name' must be a non-empty string, got ['one.png']"),
    ("one\0.png", "not found"),
    ("x" * 5000, "not found"),  # longer than the OS allows
])
def test_file_names_must_be_strings_of_existing_files(tmp_path, file_name, message):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    data["images"][0]["file_name"] = file_name
    path.write_text(json.dumps(data))
    ds = quiet(path)
    assert ds.image_ids == [2]
    [problem] = ds.problems
    assert problem.image_id == 1 and message in problem.message and problem.action == "image skipped"


def test_category_names_must_be_strings():
    categories = [{"id": 1, "name": 7}, {"id": 2}, {"id": 3, "name": ""}]
    data = coco_dict([ann(1)], categories=categories)
    ds = quiet(data, images=arrays(data))
    assert ds.categories == ["background", "1", "2", "3"]
    assert [c["name"] for c in ds.coco.dataset["categories"]] == ["1", "2", "3"]  # the ground truth agrees
    assert [str(p) for p in ds.problems] == [
        "<memory>: category 1: 'name' must be a non-empty string, got 7; its id used as the name",
        "<memory>: category 3: 'name' must be a non-empty string, got ''; its id used as the name"]


# --- image files: modes, 16 bits, verified at build ------------------------------------------------
def test_read_image_scales_16_bit_grey_and_refuses_32_bit(tmp_path):
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as im:
        assert im.mode == "I;16"
    image = read_image(tmp_path / "sixteen.png")
    assert image.dtype == np.uint8 and image.shape == (1, 6, 3)
    np.testing.assert_array_equal(image[..., 0], [[0, 0, 1, 1, 128, 255]])  # round(v / 257)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    Image.fromarray(np.zeros((2, 3), np.int32)).save(tmp_path / "int32.tif")
    Image.fromarray(np.zeros((2, 3), np.float32)).save(tmp_path / "float.tif")
    for name, what in (("int32.tif", "32-bit integer image (PIL mode 'I')"), ("float.tif", "32-bit float image")):
        with pytest.raises(ValueError, match=re.escape(what)) as error:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(error.value)


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK"])
def test_read_image_turns_other_modes_into_rgb(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    im.save(tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    image = read_image(tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    assert image.dtype == np.uint8 and image.shape == (5, 7, 3)
    np.testing.assert_array_equal(image, np.asarray(im.convert("RGB")))


def test_a_16_bit_image_in_a_dataset_is_scaled(tmp_path):
    data = coco_dict([ann(1)], images=[{"id": 1, "file_name": "deep.png", "height": H, "width": W}])
    Image.fromarray(np.full((H, W), 32896, np.uint16)).save(tmp_path / "deep.png")  # 128 * 257
    (tmp_path / "ann.json").write_text(json.dumps(data))
    image = CocoDataset(tmp_path / "ann.json")[0][0]
    assert image.min() == image.max() == 128  # not clipped to 255


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not


def png_header(path, width, height):
    """A PNG of a signature, an IHDR claiming ``width`` x ``height`` RGB, and nothing else."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_images_are_decoded_at_build_so_a_truncated_file_is_skipped_then(tmp_path):
    data = coco_dict([ann(1), ann(2, image_id=2)])
    path = write(tmp_path, data)
    truncate(tmp_path / "two.png")
    with Image.open(tmp_path / "two.png") as im:
        assert im.size == (W, H)  # the header alone looks fine
    ds = quiet(path)
    assert ds.image_ids == [1]
    [problem] = ds.problems
    assert problem.image_id == 2 and problem.action == "image skipped"
    assert problem.message.startswith(f"cannot read image file {tmp_path / 'two.png'}: ") and "truncated" in problem.message
    lazy = CocoDataset(path, verify_images=False)  # headers only: found when the sample is read
    assert lazy.image_ids == [1, 2] and lazy.problems == []
    with pytest.raises(DatasetError, match=f"image 2: cannot read image file {re.escape(str(tmp_path))}.*two.png"):
        lazy[1]


def test_a_file_that_changes_after_the_build_is_a_dataset_error_naming_it(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    ds = CocoDataset(path)
    truncate(tmp_path / "one.png")
    with pytest.raises(DatasetError, match="one.png") as error:
        ds.image(0)
    assert "truncated" in str(error.value) and str(path) in str(error.value)
    (tmp_path / "two.png").unlink()
    with pytest.raises(DatasetError, match="image 2: image file not found: .*two.png"):
        ds[1]
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(tmp_path / "two.png")
    with pytest.raises(DatasetError, match=f"two.png is {H + 1}x{W}, expected {H}x{W}"):
        ds[1]


def test_image_files_that_are_not_images_or_claim_billions_of_pixels_are_skipped(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    (tmp_path / "two.png").write_text("not an image")
    png_header(tmp_path / "one.png", 100_000, 100_000)  # PIL's decompression-bomb limit
    with pytest.raises(DatasetError, match="no usable image") as error:
        CocoDataset(path)
    text = str(error.value)
    assert "cannot identify image file" in text and "decompression bomb" in text
    assert "image 1:" in text and "image 2:" in text


# --- no usable image ---------------------------------------------------------------------------------
def test_no_usable_image_is_a_dataset_error_listing_why(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    (tmp_path / "one.png").unlink()
    (tmp_path / "two.png").unlink()
    with pytest.raises(DatasetError) as error:
        CocoDataset(path)
    text = str(error.value)
    assert text.startswith(f"{path}: no usable image (all 2 skipped), nothing to train on or evaluate:\n")
    assert "image 1: image file 'one.png' not found" in text and "image 2: image file 'two.png' not found" in text
    with pytest.raises(DatasetError, match=r"no usable image \(the 'images' list is empty\)"):
        CocoDataset(coco_dict([], images=[]), images={})
    with pytest.raises(DatasetError, match="no usable image"):
        CocoDataset(data, image_dir=tmp_path)  # the in-memory dict finds no files either
    one = quiet(coco_dict([], images=data["images"][:1]), images=arrays(data), name="neg.json")
    assert len(one) == 1 and len(one[0][1]["boxes"]) == 0  # a negative is a usable image


# --- wrong argument types ----------------------------------------------------------------------------
WRONG = [None, 3, 1.5, True, ["ann.json"], torch.zeros(2), np.float64(0)]


def assert_named(error, *words):
    assert isinstance(error.value, (TypeError, ValueError)), type(error.value)
    assert not isinstance(error.value, (IndexError, KeyError, AttributeError))
    text = str(error.value)
    assert all(w in text for w in words), text


@pytest.mark.parametrize("value", WRONG, ids=repr)
def test_wrong_constructor_and_read_image_argument_types_are_named(tmp_path, value):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    with pytest.raises(TypeError) as error:
        CocoDataset(value)
    assert_named(error, "CocoDataset", "annotations")
    if value is not None:
        with pytest.raises(TypeError) as error:
            CocoDataset(path, image_dir=value)
        assert_named(error, "CocoDataset", "image_dir")
        with pytest.raises(TypeError) as error:
            CocoDataset(path, name=value)
        assert_named(error, "CocoDataset", "name")
        with pytest.raises((TypeError, DatasetError)) as error:
            CocoDataset(data, images=value)
        assert_named(error, "images")
    if not isinstance(value, bool):
        for flag in ("strict", "verify_images"):
            with pytest.raises(TypeError) as error:
                CocoDataset(path, **{flag: value})
            assert_named(error, "CocoDataset", flag, "True or False")
    with pytest.raises(DatasetError) as error:
        CocoDataset(data, images={1: value})
    assert_named(error, "images[1] must be a uint8 array")
    with pytest.raises(TypeError) as error:
        read_image(value)
    assert_named(error, "read_image", "path")


@pytest.mark.parametrize("index", [None, 1.5, True, np.float64(0), np.bool_(True), "0", [0], slice(0, 1),
                                   torch.tensor(0)], ids=repr)
def test_wrong_index_types_are_type_errors_naming_the_index(index):
    data = coco_dict([ann(1)])
    ds = CocoDataset(data, images=arrays(data))
    for get in (ds.__getitem__, ds.image):
        with pytest.raises(TypeError) as error:
            get(index)
        assert_named(error, "CocoDataset: index must be an integer, got")
    assert ds.image(np.int64(-1)).shape == (H, W, 3)
    with pytest.raises(IndexError, match="index 2 out of range for 2 images"):
        ds.image(2)


def test_other_bad_arguments_are_named(tmp_path):
    data = coco_dict([ann(1)])
    path = write(tmp_path, data)
    with pytest.raises(DatasetError, match="image_dir '.*nowhere' is not a folder"):
        CocoDataset(path, image_dir=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="the keys of `images` must be integer image ids, got True"):
        CocoDataset(data, images={True: arrays(data)[1]})
    with pytest.raises(DatasetError, match=r"images\[1\] is empty, shape \(0, 64, 3\)"):
        CocoDataset(data, images={1: np.zeros((0, W, 3), np.uint8)})
    assert len(CocoDataset(data, images={k: torch.from_numpy(v) for k, v in arrays(data).items()})) == 2
    for target, message in ((tmp_path / "missing.png", "image file not found: "), (tmp_path, "cannot read image file"),
                            (path, "cannot read image file")):
        with pytest.raises(OSError, match=message) as error:
            read_image(target)
        assert str(target) in str(error.value)


# --- hflip ------------------------------------------------------------------------------------------
def box_of(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hflip_twice_is_the_identity_and_boxes_follow_the_masks():
    ds = shapes_dataset(3, height=32, width=40)
    for image, target in (ds[i] for i in range(len(ds))):
        flipped_image, flipped = hflip(image, target)
        np.testing.assert_array_equal(flipped_image, image[:, ::-1])
        for box, mask in zip(flipped["boxes"], flipped["masks"], strict=True):
            np.testing.assert_array_equal(box, box_of(mask))
        back_image, back = hflip(flipped_image, flipped)
        np.testing.assert_array_equal(back_image, image)
        for key in ("boxes", "masks", "labels"):
            np.testing.assert_array_equal(back[key], target[key])
        assert back["image_id"] == target["image_id"]
        flipped_image[:] = 0  # new arrays: the sample is untouched
        assert image.any()


def test_hflip_of_an_empty_target():
    image = np.zeros((5, 6, 3), np.uint8)
    _, target = hflip(image, {"boxes": np.zeros((0, 4), np.float32), "masks": np.zeros((0, 5, 6), np.uint8)})
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 5, 6)


# --- DataLoader --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seven():
    return shapes_dataset(7, height=32, width=32, max_instances=2)


def ids(batch):
    return [t["image_id"] for t in batch[1]]


def test_loader_is_a_pure_function_of_seed_and_iteration(seven):
    loader = DataLoader(seven, batch_size=3, seed=4)
    assert loader.batches_per_epoch == len(loader) == 3
    epoch = list(loader)
    assert [len(b[0]) for b in epoch] == [3, 3, 1]  # the last batch of an epoch is short
    assert sorted(i for b in epoch for i in ids(b)) == list(range(1, 8))
    again = DataLoader(seven, batch_size=3, seed=4)
    for t in (4, 2, 0, 5):  # random access, any order
        images, targets = again.batch(t)
        ref_images, ref_targets = epoch[t] if t < 3 else loader.batch(t)
        for a, b in zip(images, ref_images, strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(targets, ref_targets, strict=True):
            np.testing.assert_array_equal(a["boxes"], b["boxes"])
    second = [i for t in range(3, 6) for i in ids(loader.batch(t))]
    assert sorted(second) == list(range(1, 8)) and second != [i for b in epoch for i in ids(b)]
    other = DataLoader(seven, batch_size=3, seed=5)
    assert [ids(other.batch(t)) for t in range(3)] != [ids(b) for b in epoch]


def test_loader_flips_and_order(seven):
    plain = DataLoader(seven, batch_size=4, shuffle=False, flip_prob=0.0)
    assert [ids(b) for b in plain] == [[1, 2, 3, 4], [5, 6, 7]]
    always = DataLoader(seven, batch_size=4, shuffle=False, flip_prob=1.0)
    np.testing.assert_array_equal(always.batch(0)[0][0], seven[0][0][:, ::-1])
    some = DataLoader(seven, batch_size=7, flip_prob=0.5, seed=1)
    flips = np.concatenate([some.indices(t)[1] for t in range(6)])
    assert 0 < flips.sum() < len(flips)
    index, flip = some.indices(3)
    np.testing.assert_array_equal(index, np.random.default_rng([1, 3]).permutation(7))
    np.testing.assert_array_equal(flip, [np.random.default_rng([1, 3, p, 1]).random() < 0.5 for p in range(7)])


def test_loader_rejects_bad_arguments(seven):
    with pytest.raises(DatasetError, match="no images to train on"):
        DataLoader([])  # an empty CocoDataset cannot be built (test_no_usable_image_...)
    for kwargs, message in (({"batch_size": 0}, "batch_size"), ({"flip_prob": 1.5}, "flip_prob"),
                            ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=message):
            DataLoader(seven, **kwargs)
    with pytest.raises(ValueError, match="iteration"):
        DataLoader(seven).batch(-1)


# --- COCOeval ------------------------------------------------------------------------------------------
def test_ground_truth_scores_ap_one_against_itself():
    coco, images = shapes_coco(6, seed=2, height=64, width=64, max_instances=3)
    new_id = {1: 3, 2: 7, 3: 11}  # category ids that are not the labels
    for c in coco["categories"]:
        c["id"] = new_id[c["id"]]
    for a in coco["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    coco["annotations"].append({"id": 1000, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 64.0,
                                "bbox": [0, 0, 8, 8], "segmentation": uncompressed_rle(rect_mask(0, 0, 8, 8, 64, 64))})
    ds = CocoDataset(coco, images=images)
    assert ds.category_ids == [0, 3, 7, 11]
    outputs = []
    for i in range(len(ds)):
        _, t = ds[i]
        outputs.append({"boxes": t["boxes"], "labels": np.asarray(ds.category_ids)[t["labels"]],
                        "scores": np.ones(len(t["labels"])), "masks": t["masks"][:, None].astype(np.float32)})
    metrics = coco_evaluate(ds.coco, to_coco_results(outputs, ds.image_ids), verbose=False)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)
