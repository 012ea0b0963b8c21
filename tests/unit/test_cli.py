"""The command line and the quick-start demo behind ``mrcnn-np demo``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mrcnn_np import cli, quickstart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def subcommands() -> list[str]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices)


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "demo" in subcommands()


@pytest.mark.parametrize("command", subcommands())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"mrcnn-np {command}" in capsys.readouterr().out


def test_demo_help_names_its_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    out = capsys.readouterr().out
    for option in ("--steps", "--seed", "--out", "--no-progress"):
        assert option in out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["demo", "--steps", "0"], ["demo", "--steps", "x"]])
def test_bad_command_lines_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(("accuracy", "status"), [(0.97, 0), (0.9, 0), (0.5, 1)])
def test_demo_passes_its_options_and_fails_on_low_accuracy(accuracy, status, monkeypatch, capsys):
    calls = []

    def fake_train(**kwargs):
        calls.append(kwargs)
        return {"test_accuracy": accuracy, "final_loss": 0.1, "seconds": 1.0,
                "figures": ["x/loss_curve.png", "x/predictions.png"]}

    monkeypatch.setattr(quickstart, "train_shape_classifier", fake_train)
    assert cli.main(["demo", "--steps", "7", "--seed", "3", "--out", "x", "--no-progress"]) == status
    assert calls == [{"steps": 7, "seed": 3, "progress": False, "out_dir": "x"}]
    out = capsys.readouterr().out
    assert f"test accuracy: {accuracy:.3f}" in out
    assert "x/loss_curve.png" in out and "x/predictions.png" in out


def test_short_training_run_writes_its_figures(tmp_path):
    kwargs = {"steps": 20, "batch_size": 8, "image_size": 16, "n_test": 30, "widths": (8, 16),
              "progress": False}
    result = quickstart.train_shape_classifier(out_dir=tmp_path / "run", **kwargs)
    assert set(result) == {"test_accuracy", "final_loss", "seconds", "figures"}
    assert 0 <= result["test_accuracy"] <= 1
    assert np.isfinite(result["final_loss"]) and result["seconds"] > 0
    assert sorted(result["figures"]) == [str(tmp_path / "run" / "loss_curve.png"),
                                         str(tmp_path / "run" / "predictions.png")]
    for path in result["figures"]:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
    again = quickstart.train_shape_classifier(**kwargs)  # seeded: the same run again
    assert again["final_loss"] == result["final_loss"]
    assert again["test_accuracy"] == result["test_accuracy"] and again["figures"] == []


def test_the_cli_demo_runs_end_to_end(tmp_path, capsys):
    status = cli.main(["demo", "--steps", "2", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert status == (0 if accuracy >= cli.DEMO_MIN_ACCURACY else 1)
    assert (tmp_path / "loss_curve.png").is_file() and (tmp_path / "predictions.png").is_file()


@pytest.mark.parametrize("kwargs", [{"image_size": 20}, {"steps": 0}, {"batch_size": 1}])
def test_train_shape_classifier_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        quickstart.train_shape_classifier(progress=False, **kwargs)
