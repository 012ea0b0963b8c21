"""COCO-format datasets: masks from polygons and RLE, labels, crowd, bad input, hflip, DataLoader, COCOeval."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mrcnn_np.data.coco import (
    CocoDataset,
    DatasetError,
    DatasetProblem,
    DatasetWarning,
    _compressed_rle_total,
    format_problems,
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
    empty = quiet({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}, images={})
    with pytest.raises(DatasetError, match="no images to train on"):
        DataLoader(empty)
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
