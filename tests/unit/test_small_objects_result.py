"""benchmarks/small_objects_anchors.py (chapter 11, section 11.5) and the result it wrote,
notebooks/results/small_objects.json: the script runs end to end at a toy size and writes what the
chapter reads; the committed result describes the script's defaults and the library as they are now
(the demo's recipe, the data's sizes, the default anchors and the suggested ones), or the chapter
shows numbers of another experiment."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from mrcnn_np.demo import DemoSettings, recorded_settings
from tests.helpers import as_json, load_benchmark

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "notebooks" / "results" / "small_objects.json"


@pytest.fixture(scope="module")
def script():
    return load_benchmark("small_objects_anchors")


def check_result(result: dict, script, iterations=2100, lr=0.01, train_images=1000, test_images=100) -> None:
    recorded = {**result["settings"], "demo": recorded_settings(result["settings"]["demo"])}  # fields added since
    assert recorded == as_json(script.settings(iterations, lr, train_images, test_images))
    assert result["recipe"] == as_json(asdict(DemoSettings(iterations=iterations, lr=lr).recipe()))
    default, suggested = result["variants"]
    assert (default["name"], suggested["name"]) == ("default", "suggested")
    base = script.base_config(3)
    assert default["anchor_sizes"] == as_json(base.anchor_sizes) and default["aspect_ratios"] == as_json(base.aspect_ratios)
    inspection = result["inspection"]
    assert (suggested["anchor_sizes"], suggested["aspect_ratios"]) == (inspection["anchor_sizes"], inspection["aspect_ratios"])
    assert suggested["anchor_sizes"] != default["anchor_sizes"]
    assert inspection["before"] == {k: inspection["summary"][k] for k in inspection["before"]}
    assert set(inspection["after"]) == set(inspection["before"])
    for v in (default, suggested):
        assert sorted(v["metrics"]) == ["bbox", "segm"]
        assert all(0 <= v["metrics"][k][m] <= 1 for k in ("bbox", "segm") for m in ("AP", "AP50", "AP75"))
        recall = v["proposal_recall"]
        assert recall["objects"] > 0 and 0 <= recall["recall@0.7"] <= recall["recall@0.5"] <= 1
        assert v["train_seconds"] > 0
    assert len(result["provenance"]["commit"]) == 40


def test_the_script_runs_at_a_toy_size_and_resumes(script, tmp_path, capsys):
    argv = ["--iterations", "2", "--train-images", "3", "--test-images", "2", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "result.json")]
    assert script.main(argv) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    check_result(result, script, iterations=2, train_images=3, test_images=2)
    assert result["command"] == "python benchmarks/small_objects_anchors.py " + " ".join(argv)
    first = [v["train_seconds"] for v in result["variants"]]
    assert script.main(argv) == 0  # both variants finished: read back, not trained again
    again = json.loads((tmp_path / "result.json").read_text())
    assert [v["train_seconds"] for v in again["variants"]] == first
    with pytest.raises(SystemExit, match="holds runs of other settings"):
        script.main([*argv[:1], "3", *argv[2:]])
    capsys.readouterr()


def test_the_committed_result_is_the_scripts_with_its_defaults(script):
    check_result(json.loads(RESULT.read_text()), script)
