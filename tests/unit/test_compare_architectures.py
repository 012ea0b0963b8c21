"""benchmarks/compare_architectures.py (the runs behind chapter 6, section 6.11) and the result it
wrote, notebooks/results/architectures.json: the result must describe the demo as it is now, at the
script's ITERATIONS and WIDTHS (the same settings and recipe for every architecture), or the chapter
shows numbers of another model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from mrcnn_np.demo import DemoSettings, recorded_settings
from tests.helpers import as_json, load_benchmark

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "notebooks" / "results" / "architectures.json"


@pytest.fixture(scope="module")
def script():
    return load_benchmark("compare_architectures")


def write_run(folder: Path, settings: DemoSettings, seconds: list[float]) -> None:
    """A finished demo run as ``mrcnn-np demo`` leaves it: metrics.json and log.jsonl."""
    folder.mkdir(parents=True)
    kinds = ("bbox", "segm") if settings.task == "segmentation" else ("bbox",)
    metrics = {kind: {"AP": 0.5, "AP50": 0.75} for kind in kinds}
    (folder / "metrics.json").write_text(json.dumps({"settings": asdict(settings), "recipe": asdict(settings.recipe()),
                                                     "metrics": metrics, "train_seconds": sum(seconds),
                                                     "seconds": sum(seconds) + 1}))
    (folder / "log.jsonl").write_text("".join(json.dumps({"iteration": i + 1, "loss": 1.0, "seconds": s}) + "\n"
                                              for i, s in enumerate(seconds)))


def test_seconds_per_iteration_is_the_median_after_the_warm_up(script, tmp_path):
    seconds = [9.0] * script.WARM_UP_ITERATIONS + [0.3, 0.5, 0.4, 100.0, 0.2]
    write_run(tmp_path / "run", DemoSettings(), seconds)
    assert script.seconds_per_iteration(tmp_path / "run" / "log.jsonl") == 0.4


def test_final_losses_average_the_last_iterations(script, tmp_path):
    folder = tmp_path / "run"
    write_run(folder, DemoSettings(), [1.0] * 150)
    lines = [json.dumps({"iteration": i + 1, "loss": float(i), "loss_mask": 2.0 * i, "seconds": 1.0}) for i in range(150)]
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    assert script.final_losses(folder / "log.jsonl") == {"loss": 99.5, "loss_mask": 199.0}  # mean of 50 ... 149


def test_a_finished_run_is_read_not_trained_again(script, tmp_path):
    settings = DemoSettings(task="detection", variant="v2")
    write_run(tmp_path / "faster_v2", settings, [1.0] * 20)
    entry = script.run_architecture("faster_v2", tmp_path / "faster_v2", overwrite=False)
    assert entry["command"] == ("mrcnn-np demo --task detection --variant v2 --iterations 2100 --fpn-channels 64 "
                                "--mask-channels 32")
    assert entry["settings"] == as_json(asdict(settings)) and entry["metrics"] == {"bbox": {"AP": 0.5, "AP50": 0.75}}
    assert entry["seconds_per_iteration"] == 1.0
    assert entry["final_losses"] == {"loss": 1.0}
    assert entry["provenance"] is None and entry["load_average_after"] is None  # it did not see the run start
    assert not (tmp_path / "faster_v2" / "provenance.json").exists()


def test_provenance_names_the_commit_and_the_machine(script):
    made = script.provenance()
    assert made["cpus"] >= 1 and len(made["load_average"]) == 3
    assert made["commit"] is None or len(made["commit"]) == 40


def test_the_result_holds_every_architecture_trained_as_the_demo_is_now_at_the_scripts_iterations(script):
    record = json.loads(RESULT.read_text())
    assert list(record["architectures"]) == list(script.ARCHITECTURES)
    assert record["command"].startswith("python benchmarks/compare_architectures.py")
    for name, entry in record["architectures"].items():
        title, fields = script.ARCHITECTURES[name]
        settings = DemoSettings(**fields, iterations=script.ITERATIONS, **script.WIDTHS)
        assert entry["title"] == title
        # a run recorded before a field was added ran with the value it had then
        assert recorded_settings(entry["settings"]) == as_json(asdict(settings)), (
            f"{name}: trained with other settings than the demo's")
        assert entry["recipe"] == as_json(asdict(settings.recipe())), f"{name}: another recipe than the demo's"
        kinds = ["bbox", "segm"] if settings.task == "segmentation" else ["bbox"]
        assert sorted(entry["metrics"]) == kinds, name
        for kind in kinds:
            assert 0 <= entry["metrics"][kind]["AP"] <= entry["metrics"][kind]["AP50"] <= 1, (name, kind)
        assert 0 < entry["seconds_per_iteration"] < entry["train_seconds"], name
        assert ("loss_mask" in entry["final_losses"]) == (settings.task == "segmentation"), name
        if entry["provenance"] is not None:
            assert len(entry["provenance"]["commit"]) == 40 and entry["provenance"]["cpus"] >= 1, name
