"""``mrcnn_np.ablate``: the paper's ablations as configurations of the demo's model, their sweep
(resumable, one JSON with every number) and its table."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from mrcnn_np import ablate
from mrcnn_np.ablate import ABLATIONS, BUDGETS, NAMES, Budget, config_for, format_table, run_ablations, summarise
from mrcnn_np.demo import EARLIER_WIDTHS, DemoSettings

TINY = Budget(iterations=2, train_images=4, test_images=2, seeds=(0,))


def test_every_ablation_is_the_demo_model_with_its_switch_only():
    demo = dataclasses.asdict(DemoSettings(iterations=TINY.iterations, train_images=TINY.train_images,
                                           test_images=TINY.test_images, **EARLIER_WIDTHS).config())
    for a in ABLATIONS:
        config = dataclasses.asdict(config_for(a, TINY))
        changed = {k for k in config if config[k] != demo[k]}
        assert changed == set(a.overrides), a.name
        assert all(config[k] == v for k, v in a.overrides.items()), a.name


def test_the_paper_numbers_each_variant_is_compared_with():
    paper = {a.name: a.paper for a in ABLATIONS}
    assert paper["baseline"] is None
    assert (paper["softmax"]["variant"], paper["softmax"]["baseline"]) == (24.8, 30.3)
    assert paper["class_agnostic"]["variant"] == 29.7
    assert (paper["roi_warp"]["variant"], paper["roi_pool"]["variant"]) == (27.2, 26.9)
    assert (paper["mlp_mask_head"]["variant"], paper["mlp_mask_head"]["baseline"]) == (31.5, 33.6)
    assert paper["no_mask_branch"]["metric"] == "box AP"
    assert set(BUDGETS) == {"short", "full"} and all(len(b.seeds) >= 2 for b in BUDGETS.values())
    # the demo's recipe, at the 2100 iterations and the widths it had when notebooks/results/ablations.json was made
    assert dataclasses.asdict(ablate.settings_for(BUDGETS["full"])) == {**dataclasses.asdict(DemoSettings()),
                                                                         "iterations": 2100, "fpn_channels": 64,
                                                                         "mask_channels": 32}


def test_summary_is_the_mean_and_sample_std_over_seeds():
    runs = [{"metrics": {"bbox": {"AP": a, "AP50": a + 0.1, "AP75": a / 2}}} for a in (0.2, 0.5, 0.6)]
    s = summarise(runs)["bbox"]
    assert s["AP"]["mean"] == pytest.approx(statistics.fmean([0.2, 0.5, 0.6]))
    assert s["AP"]["std"] == pytest.approx(statistics.stdev([0.2, 0.5, 0.6]))
    assert s["AP75"]["values"] == [0.1, 0.25, 0.3]
    assert summarise(runs[:1])["bbox"]["AP"]["std"] == 0.0


def test_a_sweep_writes_every_number_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "ablate"
    result = run_ablations(TINY, out, names=["baseline", "no_mask_branch"], progress=False, command="mrcnn-np ablate")
    saved = json.loads((out / "ablations.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["command"] == "mrcnn-np ablate" and saved["budget"]["iterations"] == 2
    assert "commit" in saved["provenance"] and saved["settings"]["train_images"] == 4
    base, faster = saved["ablations"]
    assert set(base["summary"]) == {"bbox", "segm"} and set(faster["summary"]) == {"bbox"}  # no masks without the branch
    assert faster["overrides"] == {"mask_branch": False} and len(base["runs"]) == 1
    for e in (base, faster):
        for kind, metrics in e["summary"].items():
            assert metrics["AP"]["values"] == [e["runs"][0]["metrics"][kind]["AP"]]
    assert (out / "baseline-seed0" / "metrics.json").is_file()

    def never(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(ablate, "run_one", never)  # the same folder: every run is read back
    again = run_ablations(TINY, out, names=["baseline", "no_mask_branch"], progress=False, command="again")
    assert [e["runs"] for e in again["ablations"]] == [e["runs"] for e in saved["ablations"]]

    table = format_table(saved)
    assert "baseline" in table and "no_mask_branch" in table and "37.3 vs 38.2 box AP" in table
    assert table.splitlines()[-1].startswith("budget custom: 2 iterations")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"budget": "medium"}, ValueError, "budget must be one of"),
    ({"budget": 3}, TypeError, "budget must be a name"),
    ({"names": ["baseline", "dropout"]}, ValueError, "unknown ablation"),
    ({"names": []}, ValueError, "unknown ablation"),
    ({"seeds": [0, -1]}, ValueError, "seeds must be"),
    ({"seeds": [True]}, ValueError, "seeds must be"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        run_ablations(**{"budget": TINY, "out_dir": tmp_path / "x", "progress": False, **kwargs})
    assert not (tmp_path / "x").exists()


def test_names_are_unique():
    assert len(set(NAMES)) == len(NAMES)


def test_a_folder_with_another_budget_is_refused_unless_overwritten(tmp_path):
    out = tmp_path / "ablate"
    run_ablations(TINY, out, names=["baseline"], progress=False, command="first")
    other = dataclasses.replace(TINY, iterations=1)
    with pytest.raises(ValueError, match="another budget"):
        run_ablations(other, out, names=["baseline"], progress=False)
    result = run_ablations(other, out, names=["baseline"], progress=False, overwrite=True)
    assert result["budget"]["iterations"] == 1
    assert json.loads((out / "sweep.json").read_text())["budget"]["iterations"] == 1


def test_the_command_line(tmp_path, monkeypatch, capsys):
    from mrcnn_np.cli import main

    monkeypatch.setitem(BUDGETS, "short", TINY)  # the command's short budget, made tinier
    out = tmp_path / "sweep"
    assert main(["ablate", "--only", "baseline", "roi_warp", "--seeds", "3", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "roi_warp" in printed and "27.2 vs 30.3 mask AP" in printed and str(out / "ablations.json") in printed
    saved = json.loads((out / "ablations.json").read_text())
    assert saved["command"] == f"mrcnn-np ablate --budget short --only baseline roi_warp --seeds 3 --out {out}"
    assert [r["seed"] for e in saved["ablations"] for r in e["runs"]] == [3, 3]

    monkeypatch.setitem(BUDGETS, "short", dataclasses.replace(TINY, iterations=1))
    assert main(["ablate", "--only", "baseline", "--out", str(out), "--no-progress"]) == 2  # another budget
    assert "holds runs of another budget" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["ablate", "--out", str(tmp_path / "file"), "--no-progress"]) == 2
    with pytest.raises(SystemExit):
        main(["ablate", "--only", "dropout"])
