"""Chapter 11's before and after: the demo's model (with the widths it had when the committed result was made,
:data:`mrcnn_np.demo.EARLIER_WIDTHS`) trained on specks and rods (small and thin objects,
:mod:`mrcnn_np.data.small_objects`) once with the default anchors and once with the anchors that
``mrcnn-np inspect-data`` suggests for the training set, everything else the same (data, recipe, seed);
both evaluated on the same held-out images. Chapter 11 ("Your own data") reads the result.

    python benchmarks/small_objects_anchors.py [--out notebooks/results/small_objects.json]
        [--runs runs/small_objects] [--iterations 2100] [--lr 0.01] [--train-images 1000] [--overwrite]

The same with the command line, for a user's own data:

    mrcnn-np inspect-data specks/train/annotations.json          # prints --anchor-sizes ... --aspect-ratios ...
    mrcnn-np train specks/train/annotations.json --val specks/test/annotations.json [the printed options]

Per variant (``default``, ``suggested``) the result holds the configuration's anchors, the inspection's
summary of the training set under them, the held-out COCO metrics (boxes and masks), the RPN's proposal
recall on the held-out objects (IoU >= 0.5 and 0.7, among the proposals kept in testing), the training
time and the losses' last values; and the command, the settings and the provenance (commit, versions,
machine). A finished variant (``RUNS/NAME/metrics.json``) is read, not trained again, unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mrcnn_np.autograd import no_grad
from mrcnn_np.data.coco import CocoDataset
from mrcnn_np.data.inspect import inspect_data, with_suggested_anchors
from mrcnn_np.data.small_objects import write_small_objects_dataset
from mrcnn_np.demo import EARLIER_WIDTHS, DemoSettings
from mrcnn_np.evaluate import evaluate_model
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.ops import box_iou
from mrcnn_np.provenance import provenance
from mrcnn_np.train import read_log, train

ROOT = Path(__file__).resolve().parent.parent
RECALL_IOUS = (0.5, 0.7)


def settings(iterations: int, lr: float, train_images: int, test_images: int) -> dict:
    """What both variants share: the data (sizes, seeds) and the demo's recipe at ``iterations`` and ``lr``."""
    return {"train_images": train_images, "test_images": test_images, "train_seed": 0, "test_seed": 1,
            "image_size": 128, "demo": dataclasses.asdict(DemoSettings(iterations=iterations, lr=lr,
                                                                         **EARLIER_WIDTHS))}


def base_config(num_classes: int):
    """The demo's model (128 x 128, no resizing) for ``num_classes`` (background included), with the widths of
    :data:`mrcnn_np.demo.EARLIER_WIDTHS`."""
    return dataclasses.replace(DemoSettings(**EARLIER_WIDTHS).config(), num_classes=num_classes)


def proposal_recall(model, dataset) -> dict:
    """The fraction of held-out objects with a proposal (the RPN's, as kept in testing) of IoU >= each of
    :data:`RECALL_IOUS`; also the number of objects and the mean number of proposals per image."""
    best, kept = [], []
    model.eval()
    with no_grad():
        for i in range(len(dataset)):
            image, target = dataset[i]
            batch, _ = model.transform([image], dtype=model.dtype)  # 128 x 128 stays 128 x 128
            features = model.backbone(batch.tensors)
            (proposals,), _ = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
            kept.append(len(proposals))
            gt = target["boxes"].astype(np.float64)
            iou = box_iou(gt, np.asarray(proposals, np.float64)) if len(proposals) else np.zeros((len(gt), 1))
            best.extend(iou.max(axis=1))  # (G,) each object's best proposal
    best = np.asarray(best)
    return {"objects": int(best.size), "proposals_per_image": float(np.mean(kept)),
            **{f"recall@{t}": float((best >= t).mean()) for t in RECALL_IOUS}}


def run_variant(name: str, config, train_set, test_set, demo: DemoSettings, folder: Path) -> dict:
    """Train ``config``'s model (seed 0) with the demo's recipe, evaluate it; ``metrics.json`` in ``folder``."""
    model = MaskRCNN(config, rng=demo.seed)
    recipe = dataclasses.replace(demo.recipe(), checkpoint_every=0)
    result = train(model, train_set, recipe, folder, progress=True)
    metrics, _ = evaluate_model(model, test_set, progress=False, verbose=False)
    log = read_log(folder)
    last = {k: float(np.mean([r[k] for r in log[-100:]])) for k in log[-1] if k.startswith("loss")}
    out = {"name": name, "anchor_sizes": [list(s) for s in config.anchor_sizes],
           "aspect_ratios": [list(r) for r in config.aspect_ratios], "metrics": metrics,
           "proposal_recall": proposal_recall(model, test_set), "train_seconds": result.seconds,
           "final_losses": last}
    (folder / "metrics.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "notebooks" / "results" / "small_objects.json"))
    p.add_argument("--runs", default="runs/small_objects", help="data and one folder per variant")
    p.add_argument("--iterations", type=int, default=2100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--test-images", type=int, default=100)
    p.add_argument("--overwrite", action="store_true", help="train both variants again")
    args = p.parse_args(argv)

    shared = settings(args.iterations, args.lr, args.train_images, args.test_images)
    demo = DemoSettings(iterations=args.iterations, lr=args.lr, **EARLIER_WIDTHS)
    runs = Path(args.runs)
    if args.overwrite and runs.is_dir():
        shutil.rmtree(runs)
    runs.mkdir(parents=True, exist_ok=True)
    shared_file = runs / "settings.json"
    if shared_file.is_file() and json.loads(shared_file.read_text()) != json.loads(json.dumps(shared)):
        sys.exit(f"error: {runs} holds runs of other settings ({shared_file}); --overwrite or another --runs")
    shared_file.write_text(json.dumps(shared, indent=1) + "\n")
    size = shared["image_size"]
    data = runs / "data"
    if not (data / "test" / "annotations.json").is_file():
        write_small_objects_dataset(data / "train", args.train_images, seed=0, height=size, width=size, progress=True)
        write_small_objects_dataset(data / "test", args.test_images, seed=1, height=size, width=size, progress=True)
    train_set = CocoDataset(data / "train" / "annotations.json", strict=True)
    test_set = CocoDataset(data / "test" / "annotations.json", strict=True)

    started = time.perf_counter()
    config = base_config(len(train_set.categories))
    inspection = inspect_data(train_set, config, progress=True)
    suggestion = inspection["suggestion"]
    suggested = with_suggested_anchors(config, suggestion)
    result = {"command": " ".join(["python", "benchmarks/small_objects_anchors.py", *(argv or sys.argv[1:])]),
              "provenance": provenance(), "settings": shared, "recipe": dataclasses.asdict(demo.recipe()),
              "inspection": {"anchor_sizes": suggestion["anchor_sizes"], "aspect_ratios": suggestion["aspect_ratios"],
                             "before": suggestion["before"], "after": suggestion["after"],
                             "summary": inspection["summary"]},
              "variants": []}
    for name, cfg in (("default", config), ("suggested", suggested)):
        folder = runs / name
        done = folder / "metrics.json"
        if done.is_file():
            run = json.loads(done.read_text())
        else:
            if folder.exists():
                shutil.rmtree(folder)  # an unfinished run: start it again
            run = run_variant(name, cfg, train_set, test_set, demo, folder)
        result["variants"].append(run)
        print(f"{name}: anchors {run['anchor_sizes']} ratios {run['aspect_ratios'][0]}; "
              f"box AP {run['metrics']['bbox']['AP']:.3f}, mask AP {run['metrics']['segm']['AP']:.3f}, "
              f"proposal recall {run['proposal_recall']}")
    result["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
