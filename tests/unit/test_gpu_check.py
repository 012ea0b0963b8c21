"""benchmarks/gpu_check.py, the GPU issue's one-run check, end to end on the CPU: ``--fake --quick``
runs every section with the strict CuPy stand-in (tests/fake_cupy.py) and the stand-in kernels
(tests/fake_kernels.py), so the script that a GPU session gets a few minutes for has run before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ["versions", "kernels", "layers", "float64", "demo", "resnet50", "train300"]


def run_check(folder: Path, *extra: str):
    out = folder / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--fake", "--quick", "--out", str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_check")
    proc, report = run_check(folder, "--snapshots", str(folder / "snapshots"))
    return proc, report, folder / "snapshots"


def test_every_section_runs_without_error(quick):
    proc, report, _ = quick
    assert report["status"] == "complete" and report["fake"] and report["quick"]
    assert report["sections_done"] == SECTIONS and list(report["sections"]) == SECTIONS
    for name in SECTIONS:
        section = report["sections"][name]
        assert "error" not in section and "skipped" not in section, (name, section)
    assert not report["imported_pycocotools"]  # the GPU machine has none
    assert all(t["pass"] is not None for t in report["targets"].values()), report["targets"]
    assert "float64 detections identical" in proc.stdout and "PASS" in proc.stdout  # the table


def test_float64_device_run_equals_the_host_under_the_stand_in(quick):
    _, report, _ = quick
    f64 = report["sections"]["float64"]
    assert f64["detections"]["identical"] and f64["detections"]["bitwise"]
    assert sum(n for image in f64["detections"]["images"] for n in image["detections"]) > 0
    assert f64["loss_max_abs_diff"] <= 1e-10 and f64["same_sampled_anchors_and_rois"]
    assert f64["gradients"]["same_set"] and f64["gradients"]["worst_rel_err"] == 0
    targets = report["targets"]
    assert targets["float64 detections identical"]["pass"] and targets["float64 losses"]["pass"]


def test_the_report_is_valid_json_after_every_section(quick):
    _, _, snapshots = quick
    files = sorted(snapshots.glob("*.json"))
    assert [f.stem for f in files] == [f"{k:02d}" for k in range(1, len(SECTIONS) + 1)]
    for k, f in enumerate(files, 1):
        report = json.loads(f.read_text())
        assert report["sections_done"] == SECTIONS[:k] and list(report["sections"]) == SECTIONS[:k]


def test_past_the_budget_the_later_sections_are_skipped(tmp_path):
    _, report = run_check(tmp_path, "--budget-s", "0")
    assert report["status"] == "complete" and report["sections_done"] == SECTIONS
    assert "skipped" not in report["sections"]["versions"]
    for name in SECTIONS[1:]:
        assert "skipped" in report["sections"][name], name
    assert all(t["pass"] is None for t in report["targets"].values())


# --- the parts only a GPU runs, on stand-ins ---------------------------------------------------------
def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cupy_peak_reads_the_pool_at_every_allocation_and_restores_the_allocator():
    from types import SimpleNamespace

    class Pool:
        used = 0

        def malloc(self, size):
            self.used += size
            return size

        def used_bytes(self):
            return self.used

    pool, allocators = Pool(), []
    cp = SimpleNamespace(get_default_memory_pool=lambda: pool, cuda=SimpleNamespace(set_allocator=allocators.append))
    with load_script().cupy_peak(cp) as peak:
        allocators[-1](10)
        pool.used -= 10  # freed
        allocators[-1](4)
    assert peak[0] == 10 and allocators[-1] == pool.malloc


def test_targets_judge_gpu_like_numbers():
    sections = {"float64": {"detections": {"identical": True}, "loss_max_abs_diff": 3e-11},
                "demo": {"projected_2100_iterations_s": 200.0},
                "train300": {"wall_s": 20.0, "projected_2100_iterations_s": 140.0, "iterations": 300,
                             "loss_falls": True, "finite": True},
                "resnet50": {"predict": {"ratio": 2.5}, "train_step": {"ratio": 3.5}}}
    verdicts = {name: (t["pass"], t.get("goal_2x")) for name, t in load_script().targets(sections).items()}
    assert verdicts == {"float64 detections identical": (True, None), "float64 losses": (True, None),
                        "demo 2100 iterations": (False, None), "demo 300 iterations, wall": (True, None),
                        "demo loss falls, finite": (True, None),
                        "resnet50 predict / torchvision": (True, False),
                        "resnet50 train_step / torchvision": (False, False)}
