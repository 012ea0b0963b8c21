"""The paper's ablations on the shapes data (``mrcnn-np ablate``).

He et al., "Mask R-CNN" (2017), argue for each design choice with one experiment (Table 2, and
Table 3 for the mask branch's effect on boxes). Each is a configuration switch here, applied to
the demo's model (:meth:`mrcnn_np.demo.DemoSettings.config`, with the widths it had when the committed
sweep was made: a 64-channel FPN, a 32-channel mask head, :data:`mrcnn_np.demo.EARLIER_WIDTHS`), trained and
evaluated on the
demo's shapes data with the demo's recipe, once per seed::

    baseline         per-pixel sigmoid, class-specific masks, RoIAlign, FCN mask head
    softmax          a softmax over the classes per pixel instead          Table 2b: 24.8 vs 30.3 mask AP
    class_agnostic   one mask for every class                              Table 2b: 29.7 vs 30.3
    roi_warp         RoIWarp pooling (quantised box, bilinear bins)        Table 2c: 27.2 vs 30.3
    roi_pool         RoIPool (quantised box and bins, max)                 Table 2c: 26.9 vs 30.3
    mlp_mask_head    an MLP mask head instead of the FCN                   Table 2e: 31.5 vs 33.6
    no_mask_branch   Faster R-CNN: the same model without the mask branch  Table 3: 37.3 vs 38.2 box AP

The paper's numbers are COCO mask AP (box AP for Table 3) of ResNet-50-C4 (2b, 2c), ResNet-50-FPN
(2e) and ResNet-101-FPN (Table 3) models; ours are the tiny FPN model's on shapes, so only the
direction and the size relative to the spread across seeds can be compared. Table 2d (RoIAlign
against RoIPool on a stride-32 ResNet-50-C5 map) needs a C5 backbone and is not included.

    result = run_ablations("short", "runs/ablate")   # also written to runs/ablate/ablations.json

A :data:`BUDGETS` entry sets the iterations, the data sizes and the seeds: ``short`` is a smoke
run that CI can afford (its APs mean nothing), ``full`` is the demo's recipe. Every run is kept
in ``out_dir/NAME-seedS/metrics.json`` as soon as it ends, and a later call with the same
``out_dir`` reads finished runs instead of training them again, so an interrupted sweep resumes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

METRICS = ("AP", "AP50", "AP75")  # reported for boxes and masks


class SweepExistsError(ValueError):
    """The output folder holds runs of another budget or other settings."""


@dataclass(frozen=True)
class Ablation:
    """One experiment: ``overrides`` (MaskRCNNConfig fields) on top of the demo's configuration, and
    what the paper measured for it (``paper``: metric, the paper's baseline value and its value
    for this variant, the model it was measured on, where)."""

    name: str
    change: str
    overrides: dict
    paper: dict | None


ABLATIONS = (
    Ablation("baseline", "sigmoid masks, class-specific, RoIAlign, FCN mask head", {}, None),
    Ablation("softmax", "a softmax over the classes per pixel (multinomial masks)", {"mask_loss": "softmax"},
             {"table": "2b", "metric": "mask AP", "baseline": 30.3, "variant": 24.8, "model": "ResNet-50-C4"}),
    Ablation("class_agnostic", "one mask for every class", {"class_agnostic_masks": True},
             {"table": "2b", "metric": "mask AP", "baseline": 30.3, "variant": 29.7, "model": "ResNet-50-C4"}),
    Ablation("roi_warp", "RoIWarp: the box quantised, the bins sampled bilinearly", {"roi_pooler": "warp"},
             {"table": "2c", "metric": "mask AP", "baseline": 30.3, "variant": 27.2, "model": "ResNet-50-C4"}),
    Ablation("roi_pool", "RoIPool: the box and the bins quantised, max", {"roi_pooler": "pool"},
             {"table": "2c", "metric": "mask AP", "baseline": 30.3, "variant": 26.9, "model": "ResNet-50-C4"}),
    # the paper's MLP is fc 1024 on 256-channel features; the tiny model's are 64 channels wide
    Ablation("mlp_mask_head", "an MLP mask head (fc, fc, fc to K x 28 x 28) instead of the FCN",
             {"mask_head": "mlp", "mask_mlp_dim": 256},
             {"table": "2e", "metric": "mask AP", "baseline": 33.6, "variant": 31.5, "model": "ResNet-50-FPN"}),
    Ablation("no_mask_branch", "Faster R-CNN: no mask branch (its effect on the boxes)", {"mask_branch": False},
             {"table": "3", "metric": "box AP", "baseline": 38.2, "variant": 37.3, "model": "ResNet-101-FPN"}),
)
NAMES = tuple(a.name for a in ABLATIONS)


@dataclass(frozen=True)
class Budget:
    """How long each run trains, on how much data, and with which seeds (model weights, sampling
    and data order; the data itself is the demo's, the same for every run); ``lr`` None: the demo's."""

    iterations: int
    train_images: int
    test_images: int
    seeds: tuple
    lr: float | None = None


BUDGETS = {
    # runs, says nothing; at the demo's lr (after a one-iteration warm-up) 12 iterations leave BatchNorm
    # running statistics far from the activations, and inference overflowed float32
    "short": Budget(iterations=12, train_images=16, test_images=8, seeds=(0, 1), lr=0.004),
    # the demo's recipe as it was when these runs were made: 2100 iterations (as the demo trains again since stop 36)
    "full": Budget(iterations=2100, train_images=3000, test_images=100, seeds=(0, 1)),
}


def settings_for(budget: Budget):
    """The demo's settings (:class:`mrcnn_np.demo.DemoSettings`) with the budget's iterations and data sizes, and
    the widths the demo's model had when the full sweep was made (:data:`mrcnn_np.demo.EARLIER_WIDTHS`)."""
    from .demo import EARLIER_WIDTHS, DemoSettings

    lr = {} if budget.lr is None else {"lr": budget.lr}
    return DemoSettings(iterations=budget.iterations, train_images=budget.train_images,
                        test_images=budget.test_images, **EARLIER_WIDTHS, **lr)


def config_for(ablation: Ablation, budget: Budget):
    """The demo's model configuration with ``ablation.overrides`` applied (checked by MaskRCNNConfig)."""
    from .config import as_config

    return as_config(dataclasses.replace(settings_for(budget).config(), **ablation.overrides), "ablate")


def run_one(ablation: Ablation, budget: Budget, seed: int, train_set, test_set) -> dict:
    """Train the variant with ``seed`` and evaluate it: ``{"seed", "metrics", "train_seconds"}``."""
    from .evaluate import evaluate_model
    from .model.mask_rcnn import MaskRCNN
    from .train import train

    settings = settings_for(budget)
    model = MaskRCNN(config_for(ablation, budget), rng=seed)
    recipe = dataclasses.replace(settings.recipe(), seed=seed, checkpoint_every=0)
    result = train(model, train_set, recipe, progress=False)
    metrics, _ = evaluate_model(model, test_set, progress=False, verbose=False)
    return {"seed": seed, "metrics": metrics, "train_seconds": result.seconds}


def summarise(runs: list[dict]) -> dict:
    """Per IoU type and metric (:data:`METRICS`): the mean and the spread (sample standard deviation,
    0 for one run) over the runs, and the values themselves."""
    out = {}
    for kind in runs[0]["metrics"] if runs else ():
        out[kind] = {}
        for m in METRICS:
            values = [r["metrics"][kind][m] for r in runs]
            out[kind][m] = {"mean": statistics.fmean(values),
                            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return out


def run_ablations(budget="short", out_dir="runs/ablate", names=None, seeds=None, progress: bool = True,
                  command: str | None = None, overwrite: bool = False) -> dict:
    """Run every ablation in ``names`` (default: all of :data:`ABLATIONS`) with every seed of the budget
    (or ``seeds``); returns the result and writes it to ``out_dir/ablations.json`` after every run.

    ``budget``: a :data:`BUDGETS` name or a :class:`Budget`. The result holds the command, the
    provenance (commit, versions, machine), the budget, the demo settings, and per ablation its
    switch, configuration overrides, the paper's numbers, every run's metrics and their summary.
    A folder that holds runs of another budget or other settings is a ValueError unless ``overwrite``
    (which deletes them first); runs of the same budget are read back, not trained again."""
    from .data.coco import CocoDataset
    from .data.shapes import write_shapes_dataset
    from .progress import progress_bar
    from .provenance import provenance

    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise ValueError(f"ablate: budget must be one of {sorted(BUDGETS)}, got {budget!r}")
        budget_name, budget = budget, BUDGETS[budget]
    elif isinstance(budget, Budget):
        budget_name = "custom"
    else:
        raise TypeError(f"ablate: budget must be a name in {sorted(BUDGETS)} or a Budget, got {type(budget).__name__}")
    names = list(NAMES if names is None else names)
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise ValueError(f"ablate: unknown ablation(s) {unknown}; expected names from {list(NAMES)}")
    seeds = list(budget.seeds if seeds is None else seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"ablate: seeds must be one or more non-negative integers, got {seeds!r}")
    chosen = [a for a in ABLATIONS if a.name in names]
    for a in chosen:  # every configuration is checked before anything trains
        config_for(a, budget)

    out = Path(out_dir)
    settings = settings_for(budget)
    sweep = {"budget": {**asdict(budget), "seeds": None}, "settings": asdict(settings)}  # what the runs share
    sweep = json.loads(json.dumps(sweep))  # tuples as lists, as read back
    sweep_file = out / "sweep.json"
    if sweep_file.is_file() and json.loads(sweep_file.read_text()) != sweep:
        if not overwrite:
            raise SweepExistsError(f"ablate: {out} holds runs of another budget or settings ({sweep_file}); give "
                                   "another folder, or overwrite=True (--overwrite) to start again there")
    if overwrite and out.is_dir():
        for path in [out / "data", out / "ablations.json", sweep_file, *out.glob("*-seed*")]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    sweep_file.write_text(json.dumps(sweep, indent=1) + "\n")
    data = out / "data"
    if not (data / "test" / "annotations.json").is_file():  # the demo's data, written once for every run
        write_shapes_dataset(data / "train", settings.train_images, seed=settings.seed, progress=progress,
                             **settings.data())
        write_shapes_dataset(data / "test", settings.test_images, seed=settings.seed + 1, progress=progress,
                             **settings.data())
    train_set = CocoDataset(data / "train" / "annotations.json", strict=True)
    test_set = CocoDataset(data / "test" / "annotations.json", strict=True)

    result = {"command": command if command is not None else " ".join(sys.argv), "provenance": provenance(),
              "budget": {"name": budget_name, **asdict(budget), "seeds": seeds}, "settings": asdict(settings),
              "ablations": []}
    bar = progress_bar(progress, total=len(chosen) * len(seeds), desc="ablate")
    started = time.perf_counter()
    try:
        for a in chosen:
            entry = {"name": a.name, "change": a.change, "overrides": a.overrides, "paper": a.paper, "runs": []}
            result["ablations"].append(entry)
            for seed in seeds:
                bar.set_postfix({"run": f"{a.name} seed {seed}"}, refresh=False)
                run_file = out / f"{a.name}-seed{seed}" / "metrics.json"
                if run_file.is_file():  # finished earlier: read, not trained again
                    run = json.loads(run_file.read_text())
                else:
                    run = run_one(a, budget, seed, train_set, test_set)
                    run_file.parent.mkdir(exist_ok=True)
                    run_file.write_text(json.dumps(run, indent=1) + "\n")
                entry["runs"].append(run)
                entry["summary"] = summarise(entry["runs"])
                result["seconds"] = time.perf_counter() - started
                (out / "ablations.json").write_text(json.dumps(result, indent=1) + "\n")
                bar.update()
    finally:
        bar.close()
    return result


def format_table(result: dict) -> str:
    """The result as a text table: per ablation, mask and box AP / AP50 / AP75 as mean +- std over
    the seeds (x100, as the paper prints them), and the paper's number for it next to its baseline."""
    def cell(summary, kind, m):
        if kind not in summary:
            return "-"
        s = summary[kind][m]
        return f"{100 * s['mean']:.1f}+-{100 * s['std']:.1f}"

    head = ["ablation", "mask AP", "AP50", "AP75", "box AP", "AP50", "AP75", "paper (variant vs baseline)"]
    rows = []
    for e in result["ablations"]:
        s = e.get("summary", {})
        p = e["paper"]
        paper = f"{p['variant']} vs {p['baseline']} {p['metric']} (Table {p['table']}, {p['model']})" if p else ""
        rows.append([e["name"], *(cell(s, "segm", m) for m in METRICS), *(cell(s, "bbox", m) for m in METRICS), paper])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    b = result["budget"]
    lines.append(f"budget {b['name']}: {b['iterations']} iterations, {b['train_images']} training and "
                 f"{b['test_images']} held-out images, seeds {b['seeds']}; mean+-std over the seeds, x100")
    return "\n".join(lines)
