"""Train every architecture on the demo's shapes data with the demo's recipe (at :data:`ITERATIONS`) and collect the
held-out AP and the time per iteration side by side (chapter 6, section 6.11, reads the result).

Each architecture is one ``mrcnn-np demo`` run from the command line, in its own folder:

    fpn         mrcnn-np demo                                 Mask R-CNN, ResNet-FPN (torchvision v1)
    c4          mrcnn-np demo --variant c4                    Mask R-CNN, ResNet-C4 (the paper's Fig. 4, left)
    faster      mrcnn-np demo --task detection                Faster R-CNN, ResNet-FPN (no mask branch)
    fpn_v2      mrcnn-np demo --variant v2                    Mask R-CNN, torchvision's v2 recipe
    faster_v2   mrcnn-np demo --task detection --variant v2   Faster R-CNN, v2 recipe

each with ``--iterations 2100 --fpn-channels 64 --mask-channels 32``: the demo's iterations and widths when
the committed result was made (:data:`mrcnn_np.demo.EARLIER_WIDTHS`; the demo now trains, for as many iterations,
an FPN of 32 channels and a mask head of 16; a sweep of the demo as it is now would have to run all five again,
hours here).

A folder that already holds a finished run (``metrics.json``) is read, not trained again, so an
interrupted sweep resumes where it stopped; ``--overwrite`` trains everything again. The result,
``notebooks/results/architectures.json`` by default, holds for every architecture its demo
command, settings, recipe, COCO metrics, training time, median seconds per iteration, its losses
averaged over the last 100 iterations, and the provenance of its run (commit, clean tree or not,
versions, CPUs, load average), recorded when this script started the run (``null`` for a run it
found, which it did not see start).

    python benchmarks/compare_architectures.py [--runs runs/architectures] [--only c4 faster]
        [--out notebooks/results/architectures.json] [--overwrite]

Times come from the same machine in one sweep; they are comparable with each other only if the
machine was otherwise idle (each entry records the load average before and after its run).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from mrcnn_np.demo import EARLIER_WIDTHS
from mrcnn_np.provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURES = {  # name -> (what it is, the DemoSettings fields that differ from the demo's)
    "fpn": ("Mask R-CNN, ResNet-FPN", {}),
    "c4": ("Mask R-CNN, ResNet-C4", {"variant": "c4"}),
    "faster": ("Faster R-CNN, ResNet-FPN", {"task": "detection"}),
    "fpn_v2": ("Mask R-CNN, ResNet-FPN, v2 recipe", {"variant": "v2"}),
    "faster_v2": ("Faster R-CNN, ResNet-FPN, v2 recipe", {"task": "detection", "variant": "v2"}),
}
ITERATIONS = 2100  # every architecture's training iterations (see above)
WIDTHS = EARLIER_WIDTHS  # and the model's widths (DemoSettings.fpn_channels, .mask_channels)
WARM_UP_ITERATIONS = 10  # left out of the median time per iteration (first calls compile and allocate)
FINAL_ITERATIONS = 100  # the final losses: the mean over this many last iterations


def seconds_per_iteration(log_path: Path) -> float:
    """Median wall time of one training iteration in a run's ``log.jsonl`` (warm-up left out)."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    times = [r["seconds"] for r in records if "seconds" in r and r.get("iteration", 0) > WARM_UP_ITERATIONS]
    return statistics.median(times)


def final_losses(log_path: Path, last: int = FINAL_ITERATIONS) -> dict:
    """Every loss of a run's ``log.jsonl``, averaged over its last ``last`` iterations."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()][-last:]
    names = [k for k in records[-1] if k.startswith("loss")]
    return {k: statistics.fmean(r[k] for r in records) for k in names}


def run_architecture(name: str, folder: Path, overwrite: bool) -> dict:
    """Train ``name`` with ``mrcnn-np demo`` into ``folder`` (unless it holds a finished run) and
    return its entry of the result."""
    title, fields = ARCHITECTURES[name]
    arguments = [word for field in ("task", "variant") if field in fields for word in (f"--{field}", fields[field])]
    widths = [word for field, value in WIDTHS.items() for word in (f"--{field.replace('_', '-')}", str(value))]
    command = ["mrcnn-np", "demo", *arguments, "--iterations", str(ITERATIONS), *widths, "--out", str(folder),
               "--no-progress"]
    record = folder / "provenance.json"
    if overwrite or not (folder / "metrics.json").is_file():
        print(f"[{name}] {shlex.join(command)}", flush=True)
        started = provenance()
        executable = Path(sys.executable).with_name("mrcnn-np")
        result = subprocess.run([str(executable), *command[1:], *(["--overwrite"] if overwrite else [])])
        if result.returncode not in (0, 1):  # 1: the run finished below the demo's AP threshold
            raise SystemExit(f"[{name}] mrcnn-np demo failed with status {result.returncode}")
        record.write_text(json.dumps({"before": started, "after_load_average":
                                      [round(x, 2) for x in os.getloadavg()]}, indent=1))
    else:
        print(f"[{name}] reading the finished run in {folder}", flush=True)
    run = json.loads((folder / "metrics.json").read_text())
    made = json.loads(record.read_text()) if record.is_file() else None
    return {"title": title, "command": shlex.join(command[:-3]), "settings": run["settings"],
            "recipe": run["recipe"], "metrics": run["metrics"], "train_seconds": run["train_seconds"],
            "seconds_per_iteration": seconds_per_iteration(folder / "log.jsonl"),
            "final_losses": final_losses(folder / "log.jsonl"),
            "provenance": made["before"] if made else None,
            "load_average_after": made["after_load_average"] if made else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "architectures",
                        help="folder of the runs, one subfolder per architecture")
    parser.add_argument("--only", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks" / "results" / "architectures.json")
    parser.add_argument("--overwrite", action="store_true", help="train again runs that have finished")
    args = parser.parse_args(argv)

    entries = {name: run_architecture(name, args.runs / name, args.overwrite) for name in args.only}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": shlex.join(["python", "benchmarks/compare_architectures.py",
                                                           *(sys.argv[1:] if argv is None else argv)]),
                                    "written": provenance(), "architectures": entries}, indent=1) + "\n")
    print(f"{'architecture':<38} {'box AP50':>8} {'mask AP50':>9} {'box AP':>7} {'mask AP':>7} {'s/iter':>7}")
    for e in entries.values():
        box, mask = e["metrics"]["bbox"], e["metrics"].get("segm", {})  # no "segm" without the mask branch
        mask_ap50, mask_ap = (f"{mask[k]:.3f}" if mask else "-" for k in ("AP50", "AP"))
        print(f"{e['title']:<38} {box['AP50']:8.3f} {mask_ap50:>9} {box['AP']:7.3f} {mask_ap:>7} "
              f"{e['seconds_per_iteration']:7.2f}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
