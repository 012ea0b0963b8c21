"""``mrcnn_np.data.inspect`` and ``mrcnn-np inspect-data``: every number recomputed here from the library's
transform, backbone, anchor generator, matcher, poolers, RoIAlign and paste; the suggested anchors help on
a file of small objects; the command prints, writes and refuses as the other commands do."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mrcnn_np import cli
from mrcnn_np import config as configs
from mrcnn_np.autograd import no_grad
from mrcnn_np.backend import as_array
from mrcnn_np.data.coco import CocoDataset
from mrcnn_np.data.inspect import feature_sizes, inspect_data, save_report, suggest_anchors, with_suggested_anchors
from mrcnn_np.data.shapes import write_shapes_dataset
from mrcnn_np.data.small_objects import write_small_objects_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.transform import paste_masks_in_image
from mrcnn_np.ops import box_iou
from mrcnn_np.ops.matcher import Matcher
from mrcnn_np.ops.roi_align import roi_align

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("best_anchor_iou", "levels", "mask_iou", "anchors")
# the hand-made file: (x, y, w, h) in a 128x128 image; tiny squares, 1-pixel lines, one ordinary object
SMALL_OBJECTS = [[(10, 10, 3, 3), (30, 12, 4, 4), (52, 8, 5, 5), (80, 20, 6, 6), (100, 40, 1, 24), (20, 60, 24, 1)],
                 [(12, 70, 4, 4), (40, 90, 3, 3), (70, 100, 5, 5), (60, 20, 32, 32), (110, 60, 6, 5), (8, 30, 5, 7)]]


@pytest.fixture(scope="module")
def shapes_file(tmp_path_factory):
    """Six generated images of 96x128 (the resize scales them by 8/3 for tiny's min_size 256)."""
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 6, seed=3, height=96, width=128)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """Two 128x128 images of tiny and thin rectangles (polygon masks), and one ordinary object."""
    folder = tmp_path_factory.mktemp("small")
    images, annotations = [], []
    for i, objects in enumerate(SMALL_OBJECTS, start=1):
        Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(folder / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 128, "width": 128})
        for x, y, w, h in objects:
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, w, h],
                                "segmentation": [polygon], "area": w * h, "iscrowd": 0})
    path = folder / "small.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "speck"}]}))
    return path


def direct(dataset, config):
    """Per ground truth, straight from the model's stages: the transform, the real backbone's maps, the
    RPN's anchor generator and matcher, the mask pooler's level mapper and mask size, RoIAlign and paste."""
    model = MaskRCNN(config, rng=0)
    fg, bg = config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh
    matcher = Matcher(fg, bg, allow_low_quality_matches=True)
    assert (model.rpn.proposal_matcher.high_threshold, model.rpn.proposal_matcher.low_threshold) == (fg, bg)
    rows = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        batch, (t,) = model.transform([image], [target], dtype=config.dtype, num_classes=config.num_classes)
        with no_grad():
            features = model.backbone(batch.tensors)
        maps = list(features.values())
        assert feature_sizes(config, batch.tensors.shape[-2:]) == [m.shape[-2:] for m in maps]
        anchors = model.rpn.anchor_generator(batch.tensors.shape[-2:], maps)[0]  # (A, 4)
        per_level = np.cumsum([m.shape[-2] * m.shape[-1] * n for m, n in
                               zip(maps, model.rpn.anchor_generator.num_anchors_per_location(), strict=True)])
        iou = box_iou(t["boxes"], anchors)  # (G, A)
        matches = matcher(iou)
        pooler = model.roi_heads.mask_roi_pool
        _, mapper = pooler.setup_scales([features[n] for n in pooler.featmap_names], batch.image_sizes)
        levels = mapper([t["boxes"]]) + mapper.k_min
        with no_grad():
            pooled = pooler(features, [t["boxes"]], batch.image_sizes)
            M = as_array(model.roi_heads.mask_predictor(model.roi_heads.mask_head(pooled))).shape[-1]
        G = len(t["boxes"])
        rois = np.concatenate([np.arange(G)[:, None].astype(np.float32), t["boxes"]], axis=1)  # (G, 5)
        target_masks = as_array(roi_align(t["masks"][:, None].astype(np.float32), rois, (M, M), 1.0))  # (G, 1, M, M)
        pasted = as_array(paste_masks_in_image(target_masks, t["boxes"], batch.image_sizes[0]))[:, 0] >= 0.5
        original = t["masks"].astype(bool)
        for g in range(G):
            positives = int((matches == g).sum())
            best = float(iou[g].max())
            union = (pasted[g] | original[g]).sum()
            rows.append({"best_anchor_iou": best, "best_level": int(np.searchsorted(per_level, iou[g].argmax(),
                                                                                    side="right")),
                         "positives": positives, "low_quality_only": best < fg and positives > 0,
                         "unmatched": positives == 0, "roi_level": int(levels[g]), "M": M,
                         "mask_iou": float((pasted[g] & original[g]).sum() / union) if original[g].any() else None})
    return rows


@pytest.mark.parametrize("name", ["tiny", "tiny_c4"])
def test_every_number_is_the_model_stages_own(shapes_file, name):
    dataset = CocoDataset(shapes_file)
    config = configs.preset(name, num_classes=len(dataset.categories))
    result = inspect_data(dataset, config)
    expected = direct(dataset, config)
    gts = result["ground_truths"]
    assert len(gts) == len(expected) == len(dataset.coco.getAnnIds()) > 10
    prefix = "P" if name == "tiny" else "C"
    anchor_levels = result["settings"]["anchor_levels"]
    assert anchor_levels == (["P2", "P3", "P4", "P5", "P6"] if name == "tiny" else ["C4"])
    for got, want in zip(gts, expected, strict=True):
        assert got["best_anchor_iou"] == pytest.approx(want["best_anchor_iou"], abs=1e-6)
        assert got["best_anchor_level"] == anchor_levels[want["best_level"]]
        assert got["positives"] == want["positives"]
        assert got["low_quality_only"] == want["low_quality_only"]
        assert got["unmatched"] == want["unmatched"]
        assert got["roi_level"] == f"{prefix}{want['roi_level']}"
        assert got["mask_iou"] == pytest.approx(want["mask_iou"], abs=1e-12)
    assert result["settings"]["mask_size"] == expected[0]["M"] == (28 if name == "tiny" else 14)
    s = result["summary"]
    assert s["low_quality_only"] == sum(w["low_quality_only"] for w in expected)
    assert s["unmatched"] == sum(w["unmatched"] for w in expected)
    assert s["median_best_iou"] == pytest.approx(np.median([w["best_anchor_iou"] for w in expected]), abs=1e-6)
    assert sum(s["roi_levels"].values()) == len(gts)
    if name == "tiny":  # both outcomes occur: the test can tell them apart
        assert 0 < s["low_quality_only"] < len(gts) and len(s["roi_levels"]) > 1
        assert s["mask_iou"]["median"] > 0.8  # shapes' masks survive 28x28 well


@pytest.fixture(scope="module")
def demo_and_chapter_files(tmp_path_factory):
    """The demo's data (DemoSettings: 128x128 shapes) and chapter 11's (specks and rods), six images each."""
    folder = tmp_path_factory.mktemp("demo_and_chapter")
    return {"demo": write_shapes_dataset(folder / "demo", 6, seed=0, **DemoSettings().data()),
            "specks": write_small_objects_dataset(folder / "specks", 6, seed=0)}


@pytest.mark.parametrize("data", ["demo", "specks", "specks_suggested"])
def test_demo_and_chapter_data_numbers_are_the_model_stages_own(demo_and_chapter_files, data):
    """The demo's model on its own data and on chapter 11's small objects, with the default anchors and
    with the suggested ones (the chapter's 'after'): every number as the model's stages give it."""
    dataset = CocoDataset(demo_and_chapter_files[data.split("_")[0]], strict=True)
    config = replace(DemoSettings().config(), num_classes=len(dataset.categories))
    result = inspect_data(dataset, config)
    if data == "specks_suggested":
        sug = result["suggestion"]
        config = with_suggested_anchors(config, sug)
        result = inspect_data(dataset, config, suggest=False)
        assert [g["positives"] for g in result["ground_truths"]] == \
            [g["suggested"]["positives"] for g in inspect_data(dataset, replace(
                DemoSettings().config(), num_classes=len(dataset.categories)))["ground_truths"]]
    expected = direct(dataset, config)
    gts = result["ground_truths"]
    assert len(gts) == len(expected) == len(dataset.coco.getAnnIds()) >= 12
    levels = result["settings"]["anchor_levels"]
    for got, want in zip(gts, expected, strict=True):
        assert got["best_anchor_iou"] == pytest.approx(want["best_anchor_iou"], abs=1e-6)
        assert got["best_anchor_level"] == levels[want["best_level"]]
        assert (got["positives"], got["low_quality_only"], got["unmatched"]) == \
            (want["positives"], want["low_quality_only"], want["unmatched"])
        assert got["roi_level"] == f"P{want['roi_level']}"
        assert got["mask_iou"] == pytest.approx(want["mask_iou"], abs=1e-12)
    s = result["summary"]
    assert s["low_quality_only"] == sum(w["low_quality_only"] for w in expected)
    if data == "specks":  # no default anchor fits a speck or a rod at 0.7
        assert s["low_quality_only"] == len(gts) and s["too_small_for_anchors"] == len(gts)
        assert result["suggestion"]["after"]["low_quality_only"] < len(gts)
    if data == "demo":  # the demo's shapes (32..77 px) suit the default anchors
        assert s["low_quality_only"] < len(gts) and s["too_small_for_anchors"] == 0


def test_small_and_thin_objects_are_flagged(small_file):
    dataset = CocoDataset(small_file)
    config = configs.preset("tiny", num_classes=len(dataset.categories))
    result = inspect_data(dataset, config)
    expected = direct(dataset, config)
    gts = result["ground_truths"]
    for got, want in zip(gts, expected, strict=True):
        assert got["positives"] == want["positives"] and got["mask_iou"] == pytest.approx(want["mask_iou"])
    by_size = {(round(g["width"] / 2), round(g["height"] / 2)): g for g in gts}  # 128 -> 256: scale 2
    assert [g["box_in_file"] for g in gts[:2]] == [[10, 10, 13, 13], [30, 12, 34, 16]]
    for wh in ((1, 24), (24, 1)):  # 2 px wide in the model: under P2's stride of 4
        assert by_size[wh]["too_small_for_stride"]
    assert by_size[(3, 3)]["too_small_for_anchors"] and by_size[(3, 3)]["low_quality_only"]
    big = by_size[(32, 32)]
    assert not big["too_small_for_stride"] and not big["too_small_for_anchors"] and big["best_anchor_iou"] >= 0.7
    s = result["summary"]
    assert s["too_small_for_stride"] == 2 and s["too_small_for_anchors"] == len(gts) - 1
    assert s["roi_levels"] == {"P2": len(gts)}
    assert s["mask_iou"]["min"] < s["mask_iou"]["median"]  # a 1-pixel line loses more in 28x28 than a square


def test_the_suggestion_helps_small_objects(small_file):
    dataset = CocoDataset(small_file)
    config = configs.preset("tiny", num_classes=len(dataset.categories))
    result = inspect_data(dataset, config)
    sug = result["suggestion"]
    before, after = sug["before"], sug["after"]
    assert before == {k: result["summary"][k] for k in before}
    assert after["low_quality_only"] < before["low_quality_only"]
    assert after["median_best_iou"] > before["median_best_iou"] + 0.2
    assert after["unmatched"] <= before["unmatched"]
    assert sug["anchor_sizes"][0][0] < 32 and len(sug["anchor_sizes"]) == 5
    assert all(len(level) == 1 for level in sug["anchor_sizes"])  # one size per FPN level, as configured
    sizes = [level[0] for level in sug["anchor_sizes"]]
    assert [b / a for a, b in zip(sizes[:-1], sizes[1:], strict=True)] == [pytest.approx(2, rel=0.1)] * 4  # octaves
    # 'after' is the same statistic with the suggested anchors in the configuration
    changed = with_suggested_anchors(config, sug)
    again = inspect_data(dataset, changed, suggest=False)
    assert again["summary"]["low_quality_only"] == after["low_quality_only"]
    assert [g["suggested"]["positives"] for g in result["ground_truths"]] == \
        [g["positives"] for g in again["ground_truths"]]


def test_suggestion_keeps_the_configuration_shape():
    w = np.array([10.0, 20, 40, 80, 30, 60])
    h = w * np.array([1.0, 2, 0.5, 1, 3, 1])
    config = configs.preset("tiny_c4")
    sizes, ratios = suggest_anchors(w, h, config)
    assert len(sizes) == 1 and len(sizes[0]) == 5 and len(ratios) == 1 and len(ratios[0]) == 3
    assert ratios[0][0] < ratios[0][1] < ratios[0][2] and ratios[0][1] == pytest.approx(np.median(h / w), rel=0.01)
    replace(config, anchor_sizes=sizes, aspect_ratios=ratios)  # a valid configuration
    sizes, ratios = suggest_anchors(np.full(4, 50.0), np.full(4, 50.0), configs.preset("tiny"))
    assert ratios[0][0] < 1 == ratios[0][1] < ratios[0][2]  # all square: still three distinct ratios


def test_boxes_only(small_file):
    dataset = CocoDataset(small_file, masks=False)
    result = inspect_data(dataset, configs.preset("tiny", num_classes=2, mask_branch=False), suggest=False)
    assert result["summary"]["mask_iou"] is None and result["settings"]["mask_size"] is None
    assert all(g["mask_iou"] is None for g in result["ground_truths"]) and result["suggestion"] is None


# --- the command ----------------------------------------------------------------------------------
def test_the_command_prints_the_table_and_writes_json_and_figures(shapes_file, tmp_path, capsys):
    out = tmp_path / "inspect"
    assert cli.main(["inspect-data", str(shapes_file), "--out", str(out), "--no-progress", "--worst", "3"]) == 0
    text = capsys.readouterr().out
    for phrase in ("median best anchor IoU", "matched only by the low-quality rule", "not matched by any anchor",
                   "RoI level", "mask round trip (28x28", "worst 3 by best anchor IoU", "worst 3 by mask round-trip IoU",
                   "suggested"):
        assert phrase in text
    saved = json.loads((out / "inspect.json").read_text())
    assert len(saved["ground_truths"]) == len(CocoDataset(shapes_file).coco.getAnnIds())
    assert {"summary", "settings", "suggestion"} <= set(saved)
    assert saved["suggestion"]["before"]["low_quality_only"] == saved["summary"]["low_quality_only"]
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert str(out / f"{name}.png") in text


def test_save_report_without_suggestion_or_masks(small_file, tmp_path):
    result = inspect_data(CocoDataset(small_file, masks=False), configs.preset("tiny", num_classes=2), suggest=False)
    files = save_report(result, tmp_path)
    assert set(files) == {"json", "best_anchor_iou", "levels", "anchors"}


@pytest.mark.parametrize(("argv", "message"), [
    (["missing.json"], "annotation file not found"),
    (["{file}", "--images", "{tmp}/no_such_folder"], "is not a folder"),
    (["{file}", "--config", "resnet99"], "unknown --config 'resnet99'"),
])
def test_mistakes_are_one_line_errors(argv, message, shapes_file, tmp_path, capsys):
    argv = [a.format(file=shapes_file, tmp=tmp_path) for a in argv]
    assert cli.main(["inspect-data", *argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_help_lists_the_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and "inspect-data" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["inspect-data", "--help"])
    assert exit_.value.code == 0 and "mrcnn-np inspect-data" in capsys.readouterr().out


# --- the suggested anchors, used from the command line --------------------------------------------
def test_the_printed_flags_give_the_suggestions_numbers(small_file, tmp_path, capsys):
    """inspect-data prints the suggestion as --anchor-sizes/--aspect-ratios; inspecting again with those flags
    gives the suggestion's 'after' statistics, and train builds its model with them."""
    assert cli.main(["inspect-data", str(small_file), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("to train (or inspect) with"))
    flags = line.split(": ", 1)[1].split()
    first = json.loads((tmp_path / "a" / "inspect.json").read_text())
    sizes = flags[flags.index("--anchor-sizes") + 1:flags.index("--aspect-ratios")]
    assert [float(v) for v in sizes] == [level[0] for level in first["suggestion"]["anchor_sizes"]]
    assert cli.main(["inspect-data", str(small_file), *flags, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    capsys.readouterr()
    again = json.loads((tmp_path / "b" / "inspect.json").read_text())
    assert again["settings"]["anchor_sizes"] == first["suggestion"]["anchor_sizes"]
    assert again["settings"]["aspect_ratios"] == first["suggestion"]["aspect_ratios"]
    assert {k: again["summary"][k] for k in first["suggestion"]["after"]} == first["suggestion"]["after"]

    run = tmp_path / "run"
    assert cli.main(["train", str(small_file), *flags, "--iterations", "1", "--batch-size", "2", "--min-size", "64",
                     "--milestones", "1", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    from mrcnn_np.convert import load_model

    config = load_model(run / "model.safetensors").config
    assert [list(level) for level in config.anchor_sizes] == first["suggestion"]["anchor_sizes"]
    assert [list(level) for level in config.aspect_ratios] == first["suggestion"]["aspect_ratios"]


def test_anchor_flags_on_the_c4_model_name_its_one_level(small_file, tmp_path, capsys):
    assert cli.main(["inspect-data", str(small_file), "--config", "tiny_c4", "--anchor-sizes", "8", "16", "32",
                     "--aspect-ratios", "0.2", "1", "5", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "--anchor-sizes" in capsys.readouterr().out
    settings = json.loads((tmp_path / "inspect.json").read_text())["settings"]
    assert settings["anchor_sizes"] == [[8, 16, 32]] and settings["aspect_ratios"] == [[0.2, 1, 5]]


@pytest.mark.parametrize(("argv", "message"), [
    (["--anchor-sizes", "8", "16", "32"], "--anchor-sizes: give one size per FPN level (5: P2..P6)"),
    (["--anchor-sizes", "8", "0", "32", "64", "128"], "must be a positive number, got '0'"),
    (["--aspect-ratios", "nan"], "must be a positive number, got 'nan'"),
])
def test_bad_anchor_flags_are_one_line_errors(argv, message, small_file, tmp_path, capsys):
    for command in (["inspect-data", str(small_file)], ["train", str(small_file), "--iterations", "1"]):
        try:
            status = cli.main([*command, *argv, "--out", str(tmp_path / "o"), "--no-progress"])
        except SystemExit as e:  # argparse refuses the value itself
            status = e.code
        assert status == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "o").exists()


def test_with_suggested_anchors_refuses_what_is_not_a_suggestion():
    config = configs.preset("tiny")
    with pytest.raises(TypeError, match="with_suggested_anchors: suggestion must be"):
        with_suggested_anchors(config, None)
    with pytest.raises(TypeError, match="anchor_sizes and aspect_ratios"):
        with_suggested_anchors(config, {"anchor_sizes": [[8]] * 5})
    with pytest.raises(ValueError, match="one tuple per FPN level"):
        with_suggested_anchors(config, {"anchor_sizes": [[8]] * 4, "aspect_ratios": [[1.0]] * 5})
    changed = with_suggested_anchors(config, {"anchor_sizes": [[8], [16], [32], [64], [128]],
                                              "aspect_ratios": [[0.25, 1.0, 4.0]] * 5})
    assert changed.anchor_sizes == ((8,), (16,), (32,), (64,), (128,))
    assert changed.aspect_ratios == ((0.25, 1.0, 4.0),) * 5
