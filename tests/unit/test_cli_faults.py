"""The command line never shows a traceback for a user's mistake or a fault of the environment: one
``error:`` line naming the file and the problem, exit status 2 (usage), 1 (runtime) or 130 (Ctrl-C)."""

from __future__ import annotations

import errno
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from mrcnn_np import cli
from mrcnn_np.data.shapes import write_shapes_dataset
from mrcnn_np.train import read_log

TRAIN = ["--iterations", "2", "--batch-size", "2", "--min-size", "64", "--milestones", "2", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two small shapes datasets and the weights of a 2-iteration run on the first."""
    root = tmp_path_factory.mktemp("faults")
    train_json = write_shapes_dataset(root / "train", 4, seed=0, height=64, width=64, max_instances=2)
    test_json = write_shapes_dataset(root / "test", 2, seed=1, height=64, width=64, max_instances=2)
    assert cli.main(["train", str(train_json), *TRAIN, "--out", str(root / "run")]) == 0
    return {"train": train_json, "test": test_json, "weights": root / "run" / "model.safetensors",
            "image": test_json.parent / "images" / "000001.png", "root": root}


def run(argv, capsys):
    """``(status, stderr)`` of ``mrcnn-np argv``; a traceback fails the test."""
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def other_categories(path, tmp_path):
    data = json.loads(path.read_text())
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in {c["id"] for c in data["categories"]}]
    out = tmp_path / "two_classes.json"
    out.write_text(json.dumps(data))
    (tmp_path / "images").symlink_to(path.parent / "images")
    return out


# --- classes -----------------------------------------------------------------------------------
def test_val_with_other_categories_is_refused_before_training(files, tmp_path, capsys):
    val = other_categories(files["test"], tmp_path)
    status, err = run(["train", files["train"], *TRAIN, "--out", tmp_path / "run", "--val", val], capsys)
    assert status == 2 and "two_classes.json has the categories" in err and "--val must name the same" in err
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_evaluate_with_weights_of_other_classes(files, tmp_path, capsys):
    val = other_categories(files["test"], tmp_path)
    status, err = run(["evaluate", val, "--weights", files["weights"], "--no-progress"], capsys)
    assert status == 2 and "model.safetensors was trained on the classes" in err and "two_classes.json" in err


def test_predict_classes_must_match_the_model(files, tmp_path, capsys):
    status, err = run(["predict", files["image"], "--weights", files["weights"], "--out", tmp_path / "f.png",
                       "--classes", "background", "square"], capsys)
    assert status == 2 and "--classes gives 2 class name(s) but the model has 4 classes" in err


# --- images and output paths ---------------------------------------------------------------------
def test_predict_on_a_very_thin_image(files, tmp_path, capsys):
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 5000, 3), np.uint8)).save(thin)
    status, err = run(["predict", thin, "--weights", files["weights"], "--out", tmp_path / "f.png"], capsys)
    assert status == 2 and "thin.png" in err and "too thin" in err


def test_out_in_a_missing_folder_is_created(files, tmp_path, capsys):
    figure = tmp_path / "new" / "folder" / "f.png"
    status, _ = run(["predict", files["image"], "--weights", files["weights"], "--out", figure], capsys)
    assert status == 0 and figure.is_file()


def test_out_that_is_a_file_or_a_folder(files, tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    status, err = run(["train", files["train"], *TRAIN, "--out", a_file], capsys)
    assert status == 2 and "--out" in err and "taken is a file" in err
    status, err = run(["train", files["train"], *TRAIN, "--out", a_file / "run"], capsys)
    assert status == 2 and "taken is a file" in err
    status, err = run(["predict", files["image"], "--weights", files["weights"], "--out", tmp_path], capsys)
    assert status == 2 and "is a folder; give a file name" in err
    status, err = run(["predict", files["image"], "--weights", files["weights"], "--out", a_file / "f.png"], capsys)
    assert status == 2 and "taken is a file" in err


def test_evaluate_when_every_image_is_missing(files, tmp_path, capsys):
    data = json.loads(files["test"].read_text())
    lonely = tmp_path / "no_images.json"
    lonely.write_text(json.dumps(data))  # no images/ next to it
    status, err = run(["evaluate", lonely, "--weights", files["weights"], "--no-progress"], capsys)
    assert status == 2 and "no_images.json" in err and "no usable image" in err


# --- weights files ---------------------------------------------------------------------------------
@pytest.fixture
def bad_weights(files, tmp_path):
    cut = tmp_path / "cut.safetensors"
    data = files["weights"].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps({"roi_heads": [1, 2, 3]}))
    return {"cut": cut, "pickle": pickled}


@pytest.mark.parametrize("kind", ["cut", "pickle"])
def test_bad_weights_files_for_predict_and_evaluate(kind, files, bad_weights, tmp_path, capsys):
    weights = bad_weights[kind]
    expected = "not a complete .safetensors file" if kind == "cut" else "a torch.save file (pickle)"
    status, err = run(["predict", files["image"], "--weights", weights, "--out", tmp_path / "f.png"], capsys)
    assert status == 2 and weights.name in err and expected in err
    status, err = run(["evaluate", files["test"], "--weights", weights, "--no-progress"], capsys)
    assert status == 2 and weights.name in err and expected in err


@pytest.mark.parametrize("kind", ["cut", "pickle"])
def test_bad_weights_files_for_convert(kind, bad_weights, tmp_path, capsys):
    pytest.importorskip("torch")  # convert reads torchvision files with torch (the reference extra)
    status, err = run(["convert", bad_weights[kind], tmp_path / "out.safetensors"], capsys)
    assert status == 2 and bad_weights[kind].name in err and "weights_only=True" in err
    assert not (tmp_path / "out.safetensors").exists()


def test_resume_from_a_truncated_checkpoint_falls_back(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", files["train"], *TRAIN, "--checkpoint-every", "1", "--out", out], capsys)[0] == 0
    for name in ("state.json", "model.safetensors"):
        path = out / "checkpoints" / "iter_000002" / name
        path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(UserWarning, match="skipping a damaged checkpoint"):
        status, _ = run(["train", files["train"], *TRAIN, "--checkpoint-every", "1", "--out", out, "--resume"],
                        capsys)
    assert status == 0 and [r["iteration"] for r in read_log(out)] == [1, 2]


# --- run folders and resume --------------------------------------------------------------------------
def test_a_run_folder_is_not_overwritten_without_overwrite(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", files["train"], *TRAIN, "--out", out], capsys)[0] == 0
    status, err = run(["train", files["train"], *TRAIN, "--out", out], capsys)
    assert status == 2 and "already holds a run" in err and "--overwrite" in err
    status, err = run(["train", files["train"], *TRAIN, "--out", out, "--resume", "--overwrite"], capsys)
    assert status == 2 and "exclude each other" in err
    assert run(["train", files["train"], *TRAIN, "--out", out, "--overwrite"], capsys)[0] == 0
    assert [r["iteration"] for r in read_log(out)] == [1, 2]


def test_resume_with_another_configuration_or_nothing_to_resume(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", files["train"], *TRAIN, "--out", out], capsys)[0] == 0
    other = ["--iterations", "3", "--batch-size", "2", "--min-size", "48", "--milestones", "2", "--no-progress"]
    status, err = run(["train", files["train"], *other, "--out", out, "--resume"], capsys)
    assert status == 2 and "different model configuration" in err and "min_size 64 (this model: 48)" in err
    status, err = run(["train", files["train"], *TRAIN, "--out", tmp_path / "empty", "--resume"], capsys)
    assert status == 2 and "no checkpoint in" in err


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "a.json", "--seed", "-1"], "must be an integer >= 0"),
    (["demo", "--seed", "-1"], "must be an integer >= 0"),
    (["demo", "--lr", "0"], "must be a positive number"),
    (["demo", "--lr", "nan"], "must be a positive number"),
    (["verify", "--seed", "x"], "must be an integer >= 0"),
    (["predict", "a.png", "--weights", "w", "--out", "f.png", "--score-thresh", "nan"], "must be a number in [0, 1]"),
    (["predict", "a.png", "--weights", "w", "--out", "f.png", "--score-thresh", "1.5"], "must be a number in [0, 1]"),
])
def test_out_of_range_numbers_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and expected in capsys.readouterr().err


def test_demo_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    status, err = run(["demo", "--out", tmp_path / "taken", "--no-progress"], capsys)
    assert status == 2 and "taken is a file" in err


# --- faults of the environment ---------------------------------------------------------------------
def test_a_full_disk_while_checkpointing(files, tmp_path, monkeypatch, capsys):
    import mrcnn_np.train as train_module

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_module, "save_model", full_disk)
    status, err = run(["train", files["train"], *TRAIN, "--out", tmp_path / "run"], capsys)
    assert status == 1 and "No space left on device" in err and "no checkpoint was written yet" in err


def test_ctrl_c_stops_cleanly_naming_the_last_checkpoint(files, tmp_path, monkeypatch, capsys):
    import mrcnn_np.train as train_module

    real, calls = train_module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    out = tmp_path / "run"
    status, err = run(["train", files["train"], *TRAIN, "--checkpoint-every", "1", "--out", out], capsys)
    assert status == 130 and "interrupted after iteration 1" in err and "iter_000001" in err and "--resume" in err
    monkeypatch.undo()
    assert run(["train", files["train"], *TRAIN, "--checkpoint-every", "1", "--out", out, "--resume"],
               capsys)[0] == 0
    assert [r["iteration"] for r in read_log(out)] == [1, 2]


def test_ctrl_c_in_any_command_is_one_line(files, monkeypatch, capsys):
    import mrcnn_np.evaluate as evaluate_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "evaluate_model", interrupted)
    status, err = run(["evaluate", files["test"], "--weights", files["weights"], "--no-progress"], capsys)
    assert status == 130 and err.strip() == "error: interrupted"
