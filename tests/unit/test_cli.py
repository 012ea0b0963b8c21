"""The command line: help on every command, bad command lines, and demo / train / evaluate / predict
run end to end on a few small generated images."""

from __future__ import annotations

import argparse
import json

import pytest

from mrcnn_np import cli, demo
from mrcnn_np.data.shapes import write_shapes_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMANDS = {"demo", "train", "evaluate", "predict", "convert", "check", "verify", "ablate", "inspect-data"}


def subcommands() -> list[str]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices)


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert set(subcommands()) == COMMANDS
    assert all(c in out for c in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"mrcnn-np {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["demo", "--iterations", "0"], ["demo", "--iterations", "x"],
                                  ["predict", "image.png"], ["train"], ["evaluate", "a.json"]])
def test_bad_command_lines_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(("ap50", "status"), [((0.95, 0.92), 0), ((0.9, 0.9), 0), ((0.95, 0.5), 1)])
def test_demo_passes_its_options_and_fails_below_the_ap_bar(ap50, status, monkeypatch, capsys):
    calls = []

    def fake_demo(settings, out_dir, progress, overwrite, device):
        calls.append((settings, out_dir, progress))
        metrics = {"bbox": {"AP50": ap50[0]}, "segm": {"AP50": ap50[1]}}
        return {"metrics": metrics, "seconds": 2.0, "train_seconds": 1.0, "files": {"predictions": "x/p.png"}}

    monkeypatch.setattr(demo, "run_shapes_demo", fake_demo)
    argv = ["demo", "--iterations", "7", "--lr", "0.005", "--seed", "3", "--train-images", "9", "--out", "x",
            "--no-progress"]
    assert cli.main(argv) == status
    settings, out_dir, progress = calls[0]
    assert (settings.iterations, settings.lr, settings.seed, settings.train_images, out_dir, progress) == (
        7, 0.005, 3, 9, "x", False)
    out = capsys.readouterr().out
    assert f"AP@0.5: bbox {ap50[0]:.3f}, segm {ap50[1]:.3f}" in out and "x/p.png" in out


def test_a_demo_that_diverges_says_which_of_its_options_to_change(monkeypatch, capsys):
    from mrcnn_np.train import NonFiniteLossError

    def diverging(settings, out_dir, progress, overwrite, device):
        raise NonFiniteLossError(28, {"loss_objectness": float("nan"), "loss_classifier": 1.0})

    monkeypatch.setattr(demo, "run_shapes_demo", diverging)
    assert cli.main(["demo", "--iterations", "60", "--out", "x", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "iteration 28: loss_objectness = nan" in err and "(6 here" in err
    assert f"a lower --lr (this run: {demo.DemoSettings().lr}) or more --iterations" in err and "Traceback" not in err


def test_the_demo_runs_end_to_end(tmp_path, capsys):
    argv = ["demo", "--iterations", "2", "--train-images", "4", "--test-images", "2", "--image-size", "64",
            "--out", str(tmp_path), "--no-progress"]
    status = cli.main(argv)
    out = capsys.readouterr().out
    assert status in (0, 1)  # two iterations learn nothing: the exit status follows the AP bar
    assert "AP@0.5: bbox" in out and "Average Precision" in out
    for name in ("loss_curve.png", "predictions.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["metrics"]) == {"bbox", "segm"} and saved["settings"]["iterations"] == 2
    assert saved["recipe"]["iterations"] == 2 and saved["recipe"]["milestones"] == [1, 1]  # the recipe it ran
    assert (tmp_path / "data" / "train" / "annotations.json").is_file()
    assert len(list((tmp_path / "data" / "test" / "images").glob("*.png"))) == 2


def test_the_demo_compiles_its_kernels_in_a_second_process_while_it_writes_the_data(tmp_path, monkeypatch):
    """run_shapes_demo starts warm_kernels in a second process before it writes its data and waits for it after
    (for training to load the compiled kernels); that process runs the model's iteration and inference and exits
    cleanly; one that outlives WARM_UP_SECONDS, or a failed write, is stopped; none starts for a GPU."""
    import subprocess
    import sys

    small = demo.DemoSettings(iterations=1, train_images=2, test_images=1, image_size=64)
    process = demo._start_warming(small)
    assert process.wait(timeout=300) == 0  # the real command: a training iteration and inference, then exit 0
    events = []
    from mrcnn_np.data import shapes

    real_write = shapes.write_shapes_dataset

    def write(*args, **kwargs):
        events.append("write")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(shapes, "write_shapes_dataset", write)
    monkeypatch.setattr(demo, "_start_warming", lambda s: events.append(("start", s)) or "process")
    monkeypatch.setattr(demo, "_finish_warming", lambda p, wait=True: events.append(("finish", p, wait)))
    demo.run_shapes_demo(small, out_dir=tmp_path / "run", progress=False)
    assert events == [("start", small), "write", "write", ("finish", "process", True)]
    events.clear()
    monkeypatch.setattr(shapes, "write_shapes_dataset", lambda *a, **k: events.append("write") or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        demo.run_shapes_demo(small, out_dir=tmp_path / "failed", progress=False)
    assert events == [("start", small), "write", ("finish", "process", False)]  # stopped at once
    events.clear()
    monkeypatch.setattr(shapes, "write_shapes_dataset", write)
    with pytest.raises(RuntimeError):  # no CUDA here: the demo fails on the device, and started no process
        demo.run_shapes_demo(small, out_dir=tmp_path / "gpu", progress=False, device="cuda")
    assert ("start", small) not in events
    monkeypatch.undo()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(demo, "WARM_UP_SECONDS", 0.2)
    demo._finish_warming(sleeper)
    assert sleeper.returncode is not None  # waited 0.2 s, then stopped
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    demo._finish_warming(sleeper, wait=False)
    assert sleeper.returncode is not None
    demo._finish_warming(None)  # no process (it could not start): nothing to do
    for bad in ("demo", {"iterations": 1}, 3):
        with pytest.raises(TypeError, match="warm_kernels: settings must be a DemoSettings"):
            demo.warm_kernels(bad)


@pytest.fixture(scope="module")
def shapes_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root / "train", 4, seed=0, height=64, width=64, max_instances=2), \
        write_shapes_dataset(root / "test", 2, seed=1, height=64, width=64, max_instances=2)


def test_train_evaluate_predict_on_files(shapes_files, tmp_path, capsys):
    train_json, test_json = shapes_files
    run = tmp_path / "run"
    assert cli.main(["train", str(train_json), "--iterations", "2", "--batch-size", "2", "--min-size", "64",
                     "--milestones", "2", "--out", str(run), "--no-progress", "--val", str(test_json)]) == 0
    out = capsys.readouterr().out
    assert "training on 4 images, 3 classes: square, circle, triangle" in out and "Average Precision" in out
    assert (run / "model.safetensors").is_file() and (run / "loss_curve.png").is_file()
    assert cli.main(["train", str(train_json), "--iterations", "3", "--batch-size", "2", "--min-size", "64",
                     "--milestones", "2", "--out", str(run), "--no-progress", "--resume"]) == 0
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()

    figure = tmp_path / "eval.png"
    assert cli.main(["evaluate", str(test_json), "--weights", str(run / "model.safetensors"),
                     "--out", str(figure), "--no-progress"]) == 0
    assert "segm:" in capsys.readouterr().out and figure.read_bytes()[:8] == PNG_MAGIC

    figure = tmp_path / "predict.png"
    image = test_json.parent / "images" / "000001.png"
    assert cli.main(["predict", str(image), "--weights", str(run / "model.safetensors"), "--out", str(figure),
                     "--score-thresh", "0"]) == 0
    assert "detections" not in capsys.readouterr().err and figure.read_bytes()[:8] == PNG_MAGIC


def test_missing_files_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.json"), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert cli.main(["predict", str(tmp_path / "nope.png"), "--weights", str(tmp_path / "w.safetensors"),
                     "--out", str(tmp_path / "f.png")]) == 2
    assert "error" in capsys.readouterr().err


def test_train_lists_annotation_problems_and_goes_on(shapes_files, tmp_path, capsys):
    train_json, _ = shapes_files
    data = json.loads(train_json.read_text())
    data["annotations"][0]["bbox"] = [-10.0, -10.0, 30.0, 30.0]  # partly outside: clipped
    data["annotations"][1]["segmentation"] = [[1.0, 1.0, 5.0, 5.0]]  # a polygon of 2 points: skipped
    data["annotations"][1]["image_id"] = 999  # and a missing image
    bad = train_json.parent / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"bad.json: annotation 1 \(image 1\): box outside the image"):
        status = cli.main(["train", str(bad), "--iterations", "1", "--batch-size", "2", "--min-size", "64",
                           "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    assert cli.main(["train", str(bad), "--strict", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "annotation 2" in capsys.readouterr().err


# --- Faster R-CNN: --task detection (the model without its mask branch) -----------------------
def test_demo_task_detection_passes_the_task_and_reports_bbox_only(monkeypatch, capsys):
    calls = []

    def fake_demo(settings, out_dir, progress, overwrite, device):
        calls.append(settings)
        return {"metrics": {"bbox": {"AP50": 0.95}}, "seconds": 2.0, "train_seconds": 1.0, "files": {}}

    monkeypatch.setattr(demo, "run_shapes_demo", fake_demo)
    assert cli.main(["demo", "--task", "detection", "--out", "x", "--no-progress"]) == 0
    assert calls[0].task == "detection" and calls[0].config().mask_branch is False
    out = capsys.readouterr().out
    assert "AP@0.5: bbox 0.950  (" in out and "segm" not in out


def test_the_detection_demo_runs_end_to_end(tmp_path, capsys):
    argv = ["demo", "--task", "detection", "--iterations", "2", "--train-images", "4", "--test-images", "2",
            "--image-size", "64", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) in (0, 1)  # two iterations learn nothing: the exit status follows the AP bar
    out = capsys.readouterr().out
    assert "AP@0.5: bbox" in out and "segm" not in out
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["metrics"]) == {"bbox"} and saved["settings"]["task"] == "detection"
    assert (tmp_path / "predictions.png").read_bytes()[:8] == PNG_MAGIC


def test_train_evaluate_predict_a_detection_model(shapes_files, tmp_path, capsys):
    from mrcnn_np.convert import load_model

    train_json, test_json = shapes_files
    run = tmp_path / "run"
    assert cli.main(["train", str(train_json), "--task", "detection", "--iterations", "2", "--batch-size", "2",
                     "--min-size", "64", "--milestones", "2", "--out", str(run), "--no-progress",
                     "--val", str(test_json)]) == 0
    out = capsys.readouterr().out
    assert "bbox:" in out and "segm:" not in out
    model = load_model(run / "model.safetensors")
    assert model.config.mask_branch is False and not model.roi_heads.has_mask()
    assert "loss_mask" not in json.loads((run / "log.jsonl").read_text().splitlines()[0])

    assert cli.main(["evaluate", str(test_json), "--weights", str(run / "model.safetensors"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bbox:" in out and "segm:" not in out

    figure = tmp_path / "predict.png"
    image = test_json.parent / "images" / "000001.png"
    assert cli.main(["predict", str(image), "--weights", str(run / "model.safetensors"), "--out", str(figure),
                     "--score-thresh", "0"]) == 0
    assert figure.read_bytes()[:8] == PNG_MAGIC


def test_bad_task_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "a.json", "--task", "keypoints"])
    assert exit_.value.code == 2 and "--task" in capsys.readouterr().err


# --- torchvision's v2 recipe: demo --variant v2, train --config tiny_v2 ----------------------------
def test_demo_variant_v2_passes_the_variant(monkeypatch, capsys):
    calls = []

    def fake_demo(settings, out_dir, progress, overwrite, device):
        calls.append(settings)
        return {"metrics": {"bbox": {"AP50": 0.95}, "segm": {"AP50": 0.93}}, "seconds": 2.0, "train_seconds": 1.0,
                "files": {}}

    monkeypatch.setattr(demo, "run_shapes_demo", fake_demo)
    assert cli.main(["demo", "--variant", "v2", "--task", "detection", "--out", "x", "--no-progress"]) == 0
    config = calls[0].config()
    assert calls[0].variant == "v2" and config.box_head == "FastRCNNConvFCHead" and config.fpn_batch_norm
    assert config.mask_branch is False and config.box_conv_layers == (32,) * 4
    assert demo.DemoSettings().config().box_head == "TwoMLPHead"  # v1 stays the default
    with pytest.raises(ValueError, match="variant must be one of"):
        demo.DemoSettings(variant="v3")
    with pytest.raises(SystemExit):
        cli.main(["demo", "--variant", "v3"])
    assert "invalid choice: 'v3'" in capsys.readouterr().err
    # the model's widths: the demo's by default, the options' when given (the stored experiments' are these)
    default = demo.DemoSettings().config()
    assert (default.fpn_channels, default.mask_layers, default.mask_dim_reduced) == (32, (16,) * 4, 16)
    assert cli.main(["demo", "--fpn-channels", "64", "--mask-channels", "32", "--out", "x", "--no-progress"]) == 0
    config = calls[1].config()
    assert (config.fpn_channels, config.mask_layers, config.mask_dim_reduced) == (64, (32,) * 4, 32)
    assert {"fpn_channels": 64, "mask_channels": 32} == demo.EARLIER_WIDTHS
    for bad in (0, -1, 2.5, "16", None, True):
        with pytest.raises(ValueError, match="mask_channels must be a positive int"):
            demo.DemoSettings(mask_channels=bad)
        with pytest.raises(ValueError, match="fpn_channels must be a positive int"):
            demo.DemoSettings(fpn_channels=bad)
    for bad in ("0", "-3", "1.5"):
        with pytest.raises(SystemExit):
            cli.main(["demo", "--mask-channels", bad])
        assert "--mask-channels" in capsys.readouterr().err


def test_train_config_tiny_v2_saves_a_v2_model(shapes_files, tmp_path):
    from mrcnn_np.convert import load_model

    train_json, _ = shapes_files
    run = tmp_path / "run"
    assert cli.main(["train", str(train_json), "--config", "tiny_v2", "--iterations", "2", "--batch-size", "2",
                     "--min-size", "64", "--milestones", "2", "--out", str(run), "--no-progress"]) == 0
    model = load_model(run / "model.safetensors")
    assert model.config.box_head == "FastRCNNConvFCHead" and model.config.head_batch_norm
    assert model.roi_heads.has_mask() and model.roi_heads.box_head[0][1].num_batches_tracked == 2


def test_demo_variant_c4_and_train_config_tiny_c4(monkeypatch, shapes_files, tmp_path):
    from mrcnn_np.convert import load_model

    assert demo.DemoSettings(variant="c4").config().architecture == "c4"
    train_json, _ = shapes_files
    run = tmp_path / "run"
    assert cli.main(["train", str(train_json), "--config", "tiny_c4", "--iterations", "2", "--batch-size", "2",
                     "--min-size", "64", "--milestones", "2", "--out", str(run), "--no-progress"]) == 0
    model = load_model(run / "model.safetensors")
    assert model.config.architecture == "c4" and model.roi_heads.mask_head is model.roi_heads.box_head.res5
