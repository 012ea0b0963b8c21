"""The shipped shapes model: it loads, its file is float16 with the demo's metadata, and export_half
writes such a file from a model file of the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn_np.config import tiny
from mrcnn_np.convert import load_safetensors, read_metadata, save_model
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.pretrained import SHAPES_WEIGHTS, export_half, shapes_model


def test_the_shipped_model_loads_and_predicts():
    model = shapes_model()
    assert model.classes == ["background", "square", "circle", "triangle"]
    assert set(model.metrics) == {"bbox", "segm"} and 0 <= model.metrics["segm"]["AP50"] <= 1
    assert model.dtype == np.float32 and not model.training
    assert {v.dtype for v in load_safetensors(SHAPES_WEIGHTS).values()} <= {np.dtype(np.float16), np.dtype(np.int64)}
    out = model([np.zeros((128, 128, 3), np.uint8)])[0]
    assert out["masks"].shape[1:] == (1, 128, 128)


def test_export_half_keeps_configuration_classes_and_metrics(tmp_path):
    model = MaskRCNN(tiny(min_size=64, max_size=64), rng=0)
    source = tmp_path / "model.safetensors"
    save_model(model, source, {"classes": json.dumps(["background", "a", "b", "c"])})
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"bbox": {"AP50": 0.5}, "segm": {"AP50": 0.4}}}))
    target = export_half(source, tmp_path / "half.safetensors")
    again = shapes_model(target)
    assert again.classes == ["background", "a", "b", "c"] and again.metrics["segm"]["AP50"] == 0.4
    for k, v in model.state_dict().items():
        got = again.state_dict()[k]
        if v.dtype.kind == "f":
            np.testing.assert_array_equal(got, v.astype(np.float16).astype(np.float32))  # rounded once
        else:
            np.testing.assert_array_equal(got, v)
    assert read_metadata(target).keys() >= {"mrcnn_np.config", "classes", "metrics"}


def test_missing_files_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="mrcnn-np demo"):
        shapes_model(tmp_path / "none.safetensors")
    plain = tmp_path / "plain.safetensors"
    from mrcnn_np.convert import save_safetensors

    save_safetensors({"w": np.zeros(2, np.float32)}, plain)
    with pytest.raises(ValueError, match="no model configuration"):
        export_half(plain, tmp_path / "x.safetensors")
