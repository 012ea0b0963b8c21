"""``mrcnn-np verify``: the table it prints shows agreement at every stage, and it says clearly
what to install when torchvision is missing; so does the chapters' check."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from mrcnn_np import cli, reference, verify


def test_verify_table_float64_agrees_at_every_stage():
    rows = verify.verify(dtype=np.float64, min_size=160, max_size=320)
    stages = [r for r in rows if r["max_rel"] is not None]
    assert len(stages) == 12
    for r in stages:
        assert r["max_rel"] <= 1e-9, r
    detections = next(r for r in rows if r["stage"] == "detections: boxes")
    assert "labels identical" in detections["note"] and not detections["note"].startswith("0 ")
    text = verify.format_table(rows, np.float64)
    assert "backbone + FPN: P6" in text and "masks (pasted" in text


@pytest.mark.parametrize("model", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn_v2",
                                   "tiny_v2", "tiny_c4"])
def test_verify_accepts_the_variants(model):
    """Each variant's table agrees at every stage, with detections to compare; no mask row without masks."""
    rows = verify.verify(dtype=np.float64, min_size=160, max_size=320, model=model)
    stages = [r for r in rows if r["max_rel"] is not None]
    mask = model.startswith("mask") or model.startswith("tiny")
    feature_maps = 1 if model.endswith("c4") else 5  # C4, or the FPN's P2..P6
    assert len(stages) == 7 + feature_maps - (not mask)
    assert [r["stage"] for r in stages][1] == ("backbone: C4" if feature_maps == 1 else "backbone + FPN: P2")
    for r in stages:
        assert r["max_rel"] <= 1e-9, r
    detections = next(r for r in rows if r["stage"] == "detections: boxes")
    assert "labels identical" in detections["note"] and not detections["note"].startswith("0 ")
    assert any(r["stage"].startswith("masks") for r in rows) is mask


def test_verify_cli_names_the_model(capsys):
    assert cli.main(["verify", "--model", "tiny_v2", "--min-size", "96"]) == 0
    assert "detections: boxes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["verify", "--model", "resnet18"])
    assert "invalid choice: 'resnet18'" in capsys.readouterr().err


def test_verify_on_the_device_gives_the_same_table(fake_cupy):
    """Our model on the CuPy stand-in (NumPy kernels on both: default_impl) against torchvision on the CPU."""
    from mrcnn_np.backend import default_impl

    with default_impl("numpy"):
        host = verify.verify(dtype=np.float64, min_size=96, max_size=160)
        device = verify.verify(dtype=np.float64, min_size=96, max_size=160, device="cuda")
    strip = [{k: v for k, v in r.items() if r["stage"] != "wall time (s)"} for r in host]
    assert strip == [{k: v for k, v in r.items() if r["stage"] != "wall time (s)"} for r in device]


def test_verify_without_torchvision_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # ``import torchvision`` raises ImportError
    assert cli.main(["verify"]) == 2
    err = capsys.readouterr().err
    assert "mrcnn-np verify compares with torchvision" in err and "pip install 'mrcnn-np[reference]'" in err


def test_chapters_torch_check(monkeypatch, capsys):
    assert reference.import_torch() is torch and capsys.readouterr().out == ""
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert reference.import_torch() is None
    assert capsys.readouterr().out == reference.NOTEBOOK_HINT + "\n"
    with pytest.raises(ImportError, match="pip install 'mrcnn-np\\[reference\\]'"):
        reference.require_torch()


def test_pair_rows_finds_swapped_rows():
    ref = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 45]], dtype=np.float64)
    ours = ref[[0, 2, 1]] + 1e-4
    order, moved = verify.pair_rows(ours, ref)
    np.testing.assert_array_equal(order, [0, 2, 1])
    assert moved == 2
    assert verify.pair_rows(ours[:2], ref) == (None, 0)
