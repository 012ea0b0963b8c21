"""Detection-only COCO files (``bbox`` without ``segmentation``): ``CocoDataset(masks=False)`` and
``mrcnn-np train --task detection`` / ``evaluate`` of a Faster R-CNN on them."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest

from mrcnn_np import cli
from mrcnn_np.data.coco import CocoDataset, DatasetError, DatasetWarning
from mrcnn_np.data.shapes import shapes_coco, write_shapes_dataset
from mrcnn_np.evaluate import coco_evaluate

H, W = 48, 64
SKIPPED = "annotation skipped"


def boxes_only(data: dict) -> dict:
    """A copy of a COCO dict with every annotation's ``segmentation`` removed."""
    data = copy.deepcopy(data)
    for a in data["annotations"]:
        a.pop("segmentation", None)
    return data


def read(data, images, **kwargs) -> CocoDataset:
    """The dataset, without letting a DatasetWarning escape (its problems are in ``.problems``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return CocoDataset(data, images=images, **kwargs)


def two_images() -> tuple[dict, dict]:
    """A COCO dict with two H x W images, categories 1 'a' and 2 'b', and no annotations."""
    data = {"images": [{"id": 1, "file_name": "one.png", "height": H, "width": W},
                       {"id": 2, "file_name": "two.png", "height": H, "width": W}],
            "annotations": [], "categories": [{"id": 2, "name": "b"}, {"id": 1, "name": "a"}]}
    return data, {1: np.zeros((H, W, 3), np.uint8), 2: np.full((H, W, 3), 9, np.uint8)}


def box_ann(aid, image_id=1, category_id=1, bbox=(4, 6, 10, 8), **extra) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), **extra}


# --- (a) boxes only with masks=False ------------------------------------------------------------
def test_boxes_only_annotations_give_boxes_and_labels_without_masks():
    data, images = two_images()
    data["annotations"] = [box_ann(1, 1, 1, (4, 6, 10, 8)), box_ann(2, 1, 2, (20.5, 0, 30, 40)),
                           box_ann(3, 2, 2, (0, 0, 64, 48), iscrowd=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DatasetWarning: nothing is wrong
        ds = CocoDataset(data, images=images, masks=False)
    assert ds.problems == []
    image, target = ds[0]
    assert set(target) == {"boxes", "labels", "image_id"} and target["image_id"] == 1
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(target["boxes"], np.array([[4, 6, 14, 14], [20.5, 0, 50.5, 40]], np.float32))
    assert target["boxes"].dtype == np.float32 and target["labels"].dtype == np.int64
    np.testing.assert_array_equal(target["labels"], [1, 2])
    _, target = ds[1]  # the crowd box stays out of the targets
    assert set(target) == {"boxes", "labels", "image_id"}
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)

    gt = ds.coco.dataset["annotations"]  # all three, crowd included, ready for bbox COCOeval
    assert [a["id"] for a in gt] == [1, 2, 3] and all("segmentation" not in a for a in gt)
    assert [a["area"] for a in gt] == [80.0, 1200.0, 3072.0] and [a["iscrowd"] for a in gt] == [0, 0, 1]
    results = [{"image_id": 1, "category_id": c, "bbox": a["bbox"], "score": 0.9}
               for a, c in zip(gt[:2], (1, 2), strict=True)]
    metrics = coco_evaluate(ds.coco, results, iou_types=("bbox",), verbose=False)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_masks_false_keeps_a_valid_area_and_replaces_a_bad_one_with_the_box_area():
    data, images = two_images()
    data["annotations"] = [box_ann(1, area=33.0), box_ann(2, area=-1), box_ann(3, area="big"),
                           box_ann(4, bbox=(-4, 0, 10, 8))]  # clipped to 6 x 8
    ds = read(data, images, masks=False)
    assert [a["area"] for a in ds.coco.dataset["annotations"]] == [33.0, 80.0, 80.0, 48.0]
    found = {(p.annotation_id, p.action) for p in ds.problems}
    assert found == {(2, "area computed from the box"), (3, "area computed from the box"),
                     (4, "box clipped to the image")}


# --- (b) the same file with masks=True: unchanged ---------------------------------------------
def test_boxes_only_annotations_with_masks_true_are_still_skipped():
    data, images = two_images()
    data["annotations"] = [box_ann(1), box_ann(2, 2, 2)]
    with pytest.warns(DatasetWarning, match="no segmentation"):
        ds = CocoDataset(data, images=images)
    assert [(p.annotation_id, p.message, p.action) for p in ds.problems] == [
        (1, "no segmentation", SKIPPED), (2, "no segmentation", SKIPPED)]
    assert ds.coco.dataset["annotations"] == []
    _, target = ds[0]
    assert target["masks"].shape == (0, H, W) and target["boxes"].shape == (0, 4)
    with pytest.raises(DatasetError, match="no segmentation"):
        CocoDataset(data, images=images, strict=True)
    assert read(data, images, masks=False, strict=True).problems == []


def test_masks_true_and_default_give_the_same_dataset():
    data, images = shapes_coco(3, seed=2, height=H, width=W, max_instances=3)
    default, explicit = CocoDataset(data, images=images), CocoDataset(data, images=images, masks=True)
    assert default.coco.dataset == explicit.coco.dataset
    for i in range(len(default)):
        (_, a), (_, b) = default[i], explicit[i]
        assert list(a) == ["boxes", "labels", "masks", "image_id"] == list(b)
        for key in ("boxes", "labels", "masks"):
            np.testing.assert_array_equal(a[key], b[key])


def test_masks_false_gives_the_boxes_and_labels_of_masks_true():
    data, images = shapes_coco(3, seed=3, height=H, width=W, max_instances=3)
    with_masks, without = CocoDataset(data, images=images), CocoDataset(data, images=images, masks=False)
    assert without.problems == [] and without.image_ids == with_masks.image_ids
    for i in range(len(with_masks)):
        (_, a), (_, b) = with_masks[i], without[i]
        assert "masks" not in b
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    strip = [{k: v for k, v in a.items() if k != "segmentation"} for a in with_masks.coco.dataset["annotations"]]
    assert without.coco.dataset["annotations"] == strip


# --- (c) a present segmentation is ignored with masks=False -----------------------------------
@pytest.mark.parametrize("segmentation", [
    [[1.0, 1.0, 5.0, 5.0]],  # a polygon of 2 points
    {"size": [3, 3], "counts": [9]},  # an RLE of the wrong size
    {"size": [H, W], "counts": "!!not an rle"},
    "a string", 7, [], [[float("nan")] * 6], [[1e9, 0, 0, 1e9, 5, 5]],
    [[0, 0, 1, 0, 1, 1]] * 5000,  # more parts than MAX_POLYGON_PARTS
], ids=repr)
def test_a_malformed_segmentation_is_ignored_with_masks_false(segmentation):
    data, images = two_images()
    data["annotations"] = [box_ann(1, segmentation=segmentation)]
    ds = read(data, images, masks=False)
    assert ds.problems == []
    assert ds.coco.dataset["annotations"][0]["bbox"] == [4.0, 6.0, 10.0, 8.0]
    assert "segmentation" not in ds.coco.dataset["annotations"][0]
    assert "segmentation" in data["annotations"][0]  # the caller's dict is not changed
    assert read(data, images).problems[0].action == SKIPPED  # with masks it is a problem


# --- (d) box problems are found as with masks=True --------------------------------------------
BAD_BOXES = {
    "negative width": ([4, 6, -10, 8], "empty bbox (width -10, height 8)", SKIPPED),
    "zero height": ([4, 6, 10, 0], "empty bbox (width 10, height 0)", SKIPPED),
    "partly outside": ([-10, -10, 30, 30], "box outside the image", "box clipped to the image"),
    "entirely outside": ([100, 100, 5, 5], "box entirely outside the image", SKIPPED),
    "NaN": ([4, math.nan, 10, 8], "bbox with NaN or inf [4.0, nan, 10.0, 8.0]", SKIPPED),
    "inf": ([4, 6, math.inf, 8], "bbox with NaN or inf [4.0, 6.0, inf, 8.0]", SKIPPED),
    "three numbers": ([4, 6, 10], "bbox must be 4 numbers [x, y, w, h], got [4, 6, 10]", SKIPPED),
    "strings": (["4", 6, 10, 8], "bbox must be 4 numbers [x, y, w, h], got ['4', 6, 10, 8]", SKIPPED),
}


@pytest.mark.parametrize("case", BAD_BOXES)
def test_box_problems_are_reported_as_with_masks(case):
    bbox, message, action = BAD_BOXES[case]
    data, images = two_images()
    polygon = [2, 2, 30, 2, 30, 20, 2, 20]  # a valid mask, so masks=True gets as far as the box
    data["annotations"] = [box_ann(1, bbox=bbox, segmentation=[polygon]),
                           box_ann(2, image_id=2, segmentation=[polygon])]
    for masks in (True, False):
        ds = read(data, images, masks=masks)
        assert [(p.annotation_id, p.image_id, p.message, p.action) for p in ds.problems] == [
            (1, 1, message, action)], masks
        kept = [a["id"] for a in ds.coco.dataset["annotations"]]
        assert kept == ([2] if action == SKIPPED else [1, 2])
        if action != SKIPPED:
            np.testing.assert_array_equal(ds[0][1]["boxes"], [[0, 0, 20, 20]])
        with pytest.raises(DatasetError, match="strict=True"):
            CocoDataset(data, images=images, masks=masks, strict=True)


def test_a_missing_bbox_is_skipped_without_masks_and_computed_with_them():
    data, images = two_images()
    data["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 30, 2, 30, 20]]}]
    assert [(p.message, p.action) for p in read(data, images, masks=False).problems] == [("no bbox", SKIPPED)]
    assert [(p.message, p.action) for p in read(data, images).problems] == [
        ("no bbox", "box computed from the mask")]


def test_other_annotation_problems_are_unchanged_with_masks_false():
    data, images = two_images()
    data["annotations"] = [box_ann(1, category_id=7), box_ann(2, iscrowd="0"), box_ann(3, image_id=9),
                           box_ann(3), box_ann(4)]
    found = [(p.annotation_id, p.message) for p in read(data, images, masks=False).problems]
    assert found == [(1, "unknown category_id 7"), (2, "'iscrowd' must be 0 or 1, got '0'"),
                     (3, "refers to image 9, which is not in the file"), (3, "duplicate annotation id")]


# --- (e) the flag -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["yes", 1, 0, None, np.array([True])], ids=repr)
def test_a_bad_masks_flag_is_a_type_error_like_strict(value):
    data, images = two_images()
    for flag in ("strict", "masks"):
        with pytest.raises(TypeError, match=f"CocoDataset: {flag} must be True or False"):
            CocoDataset(data, images=images, **{flag: value})
    assert read(data, images, masks=np.bool_(False)).problems[0].action == "images kept without objects"


# --- (f) the command line: train --task detection and evaluate on a boxes-only file -------------
def test_train_and_evaluate_a_detection_model_on_a_boxes_only_file(tmp_path, capsys):
    train_json = write_shapes_dataset(tmp_path / "train", 2, seed=0, height=64, width=64, max_instances=2)
    data = boxes_only(json.loads(train_json.read_text()))
    boxes_json = train_json.parent / "boxes.json"
    boxes_json.write_text(json.dumps(data))
    run, figure = tmp_path / "run", tmp_path / "eval.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # every annotation is used: no problem at all
        assert cli.main(["train", str(boxes_json), "--task", "detection", "--iterations", "1", "--batch-size",
                         "2", "--min-size", "64", "--milestones", "1", "--out", str(run), "--no-progress",
                         "--val", str(boxes_json)]) == 0
        out = capsys.readouterr().out
        assert "training on 2 images" in out and "bbox:" in out and "Average Precision" in out
        assert "segm:" not in out
        assert cli.main(["evaluate", str(boxes_json), "--weights", str(run / "model.safetensors"),
                         "--out", str(figure), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bbox:" in out and "Average Precision" in out and "segm:" not in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Mask R-CNN on the same file: every annotation lacks a mask, so there is nothing to learn from
    with pytest.warns(DatasetWarning, match="no segmentation"):
        status = cli.main(["train", str(boxes_json), "--iterations", "1", "--min-size", "64",
                           "--out", str(tmp_path / "segm"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "no usable annotation" in err and len(err.strip().splitlines()) == 1
    assert "--task detection" in err  # the way out, named
