"""The result chapter 10 (section 10.8) reads, notebooks/results/ablations.json: the JSON that
``mrcnn-np ablate --budget full`` writes (runs/ablate/full/ablations.json, copied by hand). It must
describe the ablations as the library defines them now -- the full budget, the demo's settings for
it, every ablation of ABLATIONS with its switch and the paper's numbers, one run per seed, and
summaries that are those runs' -- or the chapter shows numbers of other experiments.

:func:`check_result` holds the checks; the committed file must pass them, a consistent synthetic
full result (written by the real sweep, its training replaced) passes them, and inconsistent ones
do not."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from mrcnn_np import ablate, cli
from mrcnn_np.ablate import ABLATIONS, BUDGETS, METRICS, NAMES, config_for, settings_for, summarise
from mrcnn_np.demo import recorded_settings
from tests.helpers import as_json

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "notebooks" / "results" / "ablations.json"


def check_result(result: dict, budget_name: str = "full") -> None:
    """AssertionError, saying what differs, unless ``result`` is a sweep of every ablation of
    :data:`~mrcnn_np.ablate.ABLATIONS` with the budget ``BUDGETS[budget_name]`` as the library defines
    them now."""
    budget = BUDGETS[budget_name]
    expected_budget = as_json({"name": budget_name, **asdict(budget)})
    assert result["budget"] == expected_budget, (
        f"budget {result['budget']}, but BUDGETS[{budget_name!r}] is {expected_budget}: rerun "
        f"mrcnn-np ablate --budget {budget_name} and copy its ablations.json")
    assert recorded_settings(result["settings"]) == as_json(asdict(settings_for(budget))), (
        f"settings {result['settings']} are not the demo's for the {budget_name} budget now")
    assert result["command"].startswith(f"mrcnn-np ablate --budget {budget_name}"), (
        f"command {result['command']!r} is not mrcnn-np ablate --budget {budget_name}")
    names = [e["name"] for e in result["ablations"]]
    assert names == list(NAMES), f"ablations {names}, but ABLATIONS has {list(NAMES)}"
    for a, e in zip(ABLATIONS, result["ablations"], strict=True):
        assert e["change"] == a.change, f"{a.name}: change {e['change']!r}, ABLATIONS says {a.change!r}"
        assert e["overrides"] == as_json(a.overrides), f"{a.name}: overrides {e['overrides']}, not {a.overrides}"
        assert e["paper"] == as_json(a.paper), f"{a.name}: paper {e['paper']}, ABLATIONS says {a.paper}"
        seeds = [r["seed"] for r in e["runs"]]
        assert seeds == list(budget.seeds), f"{a.name}: runs of seeds {seeds}, the budget's are {list(budget.seeds)}"
        kinds = ["bbox", "segm"] if config_for(a, budget).mask_branch else ["bbox"]  # no masks without the branch
        for r in e["runs"]:
            assert sorted(r["metrics"]) == kinds, f"{a.name} seed {r['seed']}: metrics {sorted(r['metrics'])}, not {kinds}"
            for kind in kinds:
                for m in METRICS:
                    assert 0 <= r["metrics"][kind][m] <= 1, f"{a.name} seed {r['seed']}: {kind} {m} out of [0, 1]"
            assert r["train_seconds"] > 0, f"{a.name} seed {r['seed']}: no training time"
        assert e["summary"] == as_json(summarise(e["runs"])), f"{a.name}: the summary is not its runs'"
    commit = result["provenance"]["commit"]
    assert isinstance(commit, str) and re.fullmatch("[0-9a-f]{40}", commit), f"provenance without a commit: {commit!r}"


def test_the_committed_result_is_the_full_sweep_of_the_ablations_as_defined_now():
    check_result(json.loads(RESULT.read_text()))


def fake_run(a, budget, seed, train_set, test_set) -> dict:
    """What ``ablate.run_one`` returns, without training: metrics as evaluate_model gives them
    (bbox and segm; bbox only for the model without the mask branch), different per run."""
    kinds = ("bbox",) if a.name == "no_mask_branch" else ("bbox", "segm")
    value = 0.5 + 0.01 * NAMES.index(a.name) + 0.001 * seed
    metrics = {kind: {"AP": value, "AP50": value + 0.3, "AP75": value + 0.1, "APs": -1.0, "AR100": value + 0.2}
               for kind in kinds}
    return {"seed": seed, "metrics": metrics, "train_seconds": 600.0 + seed}


@pytest.fixture
def full_result(tmp_path, monkeypatch):
    """``mrcnn-np ablate --budget full`` as the command line runs it, without the data and the
    training (``run_one`` replaced by :func:`fake_run`): its ablations.json, read back."""
    monkeypatch.setattr("mrcnn_np.data.shapes.write_shapes_dataset", lambda *args, **kwargs: None)
    monkeypatch.setattr("mrcnn_np.data.coco.CocoDataset", lambda *args, **kwargs: None)
    monkeypatch.setattr(ablate, "run_one", fake_run)
    out = tmp_path / "full"
    assert cli.main(["ablate", "--budget", "full", "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / "ablations.json").read_text())


def test_a_consistent_full_result_passes(full_result):
    assert full_result["command"].startswith("mrcnn-np ablate --budget full --out")
    check_result(full_result)


def drop_last_seed(result):
    e = result["ablations"][2]
    e["runs"].pop()
    e["summary"] = as_json(summarise(e["runs"]))  # consistent with its runs: only the seed is missing


def swap_first_ablations(result):
    a = result["ablations"]
    a[1], a[2] = a[2], a[1]


def drop_segm(result):
    e = result["ablations"][0]
    for r in e["runs"]:
        del r["metrics"]["segm"]
    e["summary"] = as_json(summarise(e["runs"]))


def set_(path, value):
    """A mutation that sets ``result[path[0]][path[1]]... = value``."""
    def mutate(result):
        target = result
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, match", [
    (set_(["budget", "iterations"], 2000), "budget"),
    (set_(["budget", "name"], "short"), "budget"),
    (set_(["settings", "lr"], 0.01), "settings"),
    (set_(["command"], "mrcnn-np ablate --budget short --out runs/ablate/short"), "command"),
    (drop_last_seed, "runs of seeds"),
    (lambda r: r["ablations"].pop(), "ablations"),
    (swap_first_ablations, "ablations"),
    (set_(["ablations", 3, "overrides"], {"roi_pooler": "pool"}), "overrides"),
    (set_(["ablations", 1, "paper", "variant"], 25.0), "paper"),
    (set_(["ablations", 1, "change"], "something else"), "change"),
    (drop_segm, "metrics"),
    (set_(["ablations", 6, "runs", 0, "metrics", "bbox", "AP"], 1.5), "out of"),
    (set_(["ablations", 4, "summary", "segm", "AP", "mean"], 0.9), "summary"),
    (set_(["provenance", "commit"], None), "commit"),
], ids=["iterations", "budget name", "settings", "command", "missing seed", "missing ablation", "order",
        "overrides", "paper", "change", "no segm", "AP out of range", "summary", "no commit"])
def test_an_inconsistent_result_fails(full_result, mutate, match):
    result = copy.deepcopy(full_result)
    mutate(result)
    with pytest.raises(AssertionError, match=match):
        check_result(result)
