"""The ``mrcnn-np`` command line: one subcommand per task, one function per subcommand.

``mrcnn-np demo`` is the main job (generate shapes, train a small Mask R-CNN, evaluate it
with pycocotools); ``train``, ``evaluate``, ``predict`` and ``convert`` do those steps on
your own data; ``check`` grades an exercise, ``verify`` compares every stage with torchvision.
To add one, write ``_add_<name>(subparsers)`` that declares its
parser and ``set_defaults(run=<function>)``, and list it in :data:`COMMANDS`; the
function takes the parsed arguments and returns the exit status.

Heavy imports (matplotlib, the model) happen inside the command functions, so
``mrcnn-np --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__


# --- demo --------------------------------------------------------------------------------
def _add_demo(subparsers) -> None:
    from .demo import DEMO_MIN_AP50, VARIANTS, DemoSettings

    d = DemoSettings()
    p = subparsers.add_parser(
        "demo",
        help="the main job: train a small Mask R-CNN on generated shapes and evaluate it with pycocotools "
             "(--task detection: a Faster R-CNN)",
        description=(
            "Generates a shapes dataset (COCO JSON with RLE masks + PNG images) under OUT/data, trains the "
            "small Mask R-CNN configuration from scratch on the CPU, evaluates it on held-out images with "
            "pycocotools (bbox and segm AP table), and writes a loss curve and a figure of predictions. "
            f"Exits with status 1 when bbox or segm AP@0.5 is below {DEMO_MIN_AP50}. With --task detection it "
            "trains and evaluates Faster R-CNN, the same configuration without the mask branch (bbox AP only)."
        ),
    )
    p.add_argument("--iterations", type=_positive_int, default=d.iterations,
                   help="training iterations (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=d.lr,
                   help="peak learning rate, after a warm-up over the first 10%% of the iterations (default: "
                        "%(default)s); lower it if training stops at a non-finite loss")
    p.add_argument("--train-images", type=_positive_int, default=d.train_images,
                   help="generated training images (default: %(default)s)")
    p.add_argument("--test-images", type=_positive_int, default=d.test_images,
                   help="generated held-out images (default: %(default)s)")
    p.add_argument("--image-size", type=_positive_int, default=d.image_size,
                   help="side of the square images, in pixels (default: %(default)s)")
    p.add_argument("--seed", type=_nonnegative_int, default=d.seed, help="random seed (default: %(default)s)")
    _add_task(p)
    p.add_argument("--variant", choices=VARIANTS, default=d.variant,
                   help="v1: torchvision's maskrcnn_resnet50_fpn recipe (narrower); v2: its _v2 recipe (BatchNorm in "
                        "the FPN and heads, two RPN convs, a conv box head); c4: the paper's ResNet-C4 model (one "
                        "stride-16 map, res5 as the RoI head) (default: %(default)s)")
    p.add_argument("--fpn-channels", type=_positive_int, default=d.fpn_channels,
                   help="channels of the feature pyramid, so also of the RPN head and of the features the box "
                        "and mask heads read (default: %(default)s; 64 is config.tiny's)")
    p.add_argument("--mask-channels", type=_positive_int, default=d.mask_channels,
                   help="channels of each of the mask head's four convs and of its deconvolution "
                        "(default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="folder for data, weights, log and figures "
                   "(default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_device(p)
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Generate, train, evaluate, draw; print the AP table and where everything went."""
    from dataclasses import replace

    from .demo import DEMO_MIN_AP50, DemoSettings, run_shapes_demo

    settings = replace(DemoSettings(), iterations=args.iterations, lr=args.lr, train_images=args.train_images,
                       test_images=args.test_images, image_size=args.image_size, seed=args.seed, task=args.task,
                       variant=args.variant, fpn_channels=args.fpn_channels,
                       mask_channels=args.mask_channels)
    from .train import NonFiniteLossError, RunExistsError, TrainingInterrupted

    try:
        _check_out_folder(args.out)
        _check_device_usable(args.device)
        result = run_shapes_demo(settings, out_dir=args.out, progress=not args.no_progress,
                                 overwrite=args.overwrite, device=args.device)
    except NonFiniteLossError as e:  # the demo has no --resume: what to change, in its own options
        return _error(f"{e} The demo warms up over the first 10% of its iterations ({settings.recipe().warmup_iters} "
                      f"here; a short run ramps up fast): run it again with a lower --lr (this run: {settings.lr}) "
                      "or more --iterations.", 2)
    except (RunExistsError, NotADirectoryError, RuntimeError) as e:
        return _error(e, 2)
    except TrainingInterrupted as e:
        return _error(e, 130)
    ap50 = {k: m["AP50"] for k, m in result["metrics"].items()}  # bbox, and segm for Mask R-CNN
    print(f"AP@0.5: {', '.join(f'{k} {v:.3f}' for k, v in ap50.items())}  "
          f"(training {result['train_seconds']:.0f} s, whole demo {result['seconds']:.0f} s)")
    for name, path in result["files"].items():
        print(f"{name}: {path}")
    if min(ap50.values()) < DEMO_MIN_AP50:
        print(f"error: AP@0.5 below {DEMO_MIN_AP50}", file=sys.stderr)
        return 1
    return 0


# --- train -------------------------------------------------------------------------------
# train --config NAME: the preset of mrcnn_np.config.PRESETS it builds (--task sets mask_branch)
TRAIN_CONFIGS = {"tiny": "tiny", "tiny_v2": "tiny_v2", "tiny_c4": "tiny_c4", "resnet50_fpn": "maskrcnn_resnet50_fpn",
                 "resnet50_fpn_v2": "maskrcnn_resnet50_fpn_v2", "resnet50_c4": "maskrcnn_resnet50_c4"}


def _add_train(subparsers) -> None:
    from .train import TrainRecipe

    r = TrainRecipe()
    p = subparsers.add_parser(
        "train",
        help="train a Mask R-CNN (or, with --task detection, a Faster R-CNN) on a COCO-format dataset",
        description=(
            "Trains a Mask R-CNN from scratch on a COCO-format instance-segmentation dataset (JSON with polygon "
            "or RLE masks, images next to it or under --images). SGD with momentum 0.9 and weight decay, linear "
            "warm-up then step decay, horizontal flips. Writes OUT/log.jsonl (a line per iteration), "
            "OUT/checkpoints/iter_N/ and OUT/model.safetensors, and a loss curve; --resume goes on from the "
            "latest checkpoint. With --task detection the annotations need only a bbox (any segmentation is "
            "ignored). Problems in the annotation file are listed with the file and annotation id and "
            "skipped (or, with --strict, stop the run). A NaN or infinite loss stops training with the "
            "offending loss (exit status 1)."
        ),
    )
    p.add_argument("annotations", help="COCO-format annotation file (JSON)")
    p.add_argument("--images", default=None, help="image folder (default: next to the JSON, or its images/)")
    p.add_argument("--val", default=None, help="a COCO-format file of held-out images to evaluate at the end")
    p.add_argument("--val-images", default=None, help="image folder of --val")
    p.add_argument("--config", choices=TRAIN_CONFIGS, default="tiny",
                   help="the network: tiny (the demo's), tiny_v2 (the same with torchvision's v2 recipe), tiny_c4 "
                        "(with the ResNet-C4 architecture), resnet50_fpn (torchvision's maskrcnn/fasterrcnn_resnet50_"
                        "fpn), resnet50_fpn_v2 (their _v2), resnet50_c4 (the paper's R50-C4); --task picks the mask "
                        "branch (default: %(default)s)")
    _add_task(p)
    _add_model_options(p)
    p.add_argument("--iterations", type=_positive_int, default=r.iterations, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=r.batch_size, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=r.lr, help="peak learning rate (default: %(default)s)")
    p.add_argument("--warmup-iters", type=int, default=r.warmup_iters, help="(default: %(default)s)")
    p.add_argument("--milestones", type=_positive_int, nargs="*", default=None,
                   help="iterations where the lr drops 10x (default: 75%% and 92%% of --iterations)")
    p.add_argument("--checkpoint-every", type=int, default=r.checkpoint_every,
                   help="iterations between checkpoints; 0: at the end only (default: %(default)s)")
    p.add_argument("--seed", type=_nonnegative_int, default=r.seed, help="(default: %(default)s)")
    p.add_argument("--out", default="runs/train", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="go on from the latest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a run "
                   "(deletes its log, checkpoints and weights)")
    p.add_argument("--strict", action="store_true", help="stop on any problem in the annotation file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_device(p)
    p.set_defaults(run=run_train)


def _add_model_options(p) -> None:
    """The options of ``train`` and ``inspect-data`` that change the configuration's input size and anchors."""
    p.add_argument("--min-size", type=_positive_int, default=None, help="shorter side after resizing "
                   "(default: the configuration's)")
    p.add_argument("--max-size", type=_positive_int, default=None, help="longer side at most")
    p.add_argument("--anchor-sizes", type=_positive_float, nargs="+", default=None, metavar="S",
                   help="anchor sizes in pixels (of the resized image): one per FPN level P2..P6 (5 numbers), or "
                        "all the sizes of the C4 models' one level (default: the configuration's, 32 64 128 256 512)")
    p.add_argument("--aspect-ratios", type=_positive_float, nargs="+", default=None, metavar="R",
                   help="anchor aspect ratios h / w, the same on every level (default: 0.5 1 2)")


def _model_config(args: argparse.Namespace, num_classes: int, masks: bool):
    """``--config``'s preset with ``--min-size``/``--max-size``/``--anchor-sizes``/``--aspect-ratios`` applied;
    ValueError (or TypeError) for a combination the configuration refuses."""
    from . import config as configs

    name = TRAIN_CONFIGS[args.config]
    base = configs.preset(name)
    sizes = {k: v for k, v in (("min_size", args.min_size), ("max_size", args.max_size)) if v}
    if "min_size" in sizes and "max_size" not in sizes:
        sizes["max_size"] = max(sizes["min_size"], base.max_size)
    levels = len(base.anchor_sizes)
    anchors = {}
    if args.anchor_sizes:
        if levels > 1 and len(args.anchor_sizes) != levels:
            raise ValueError(f"--anchor-sizes: give one size per FPN level ({levels}: P2..P6) for --config "
                             f"{args.config}, got {len(args.anchor_sizes)}")
        anchors["anchor_sizes"] = (tuple((s,) for s in args.anchor_sizes) if levels > 1
                                   else (tuple(args.anchor_sizes),))  # FPN: one size per level; C4: all on C4
    if args.aspect_ratios:
        anchors["aspect_ratios"] = (tuple(args.aspect_ratios),) * levels  # (levels, R): the same on every level
    return configs.preset(name, num_classes=num_classes, **sizes, **anchors, mask_branch=masks)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.coco import CocoDataset, DatasetError
    from .model.mask_rcnn import MaskRCNN
    from .train import (
        CheckpointMismatchError,
        NonFiniteLossError,
        RunExistsError,
        TrainingInterrupted,
        TrainRecipe,
        read_log,
        train,
    )
    from .viz import plot_losses

    if args.resume and args.overwrite:
        return _error("--resume and --overwrite exclude each other", 2)
    masks = args.task == "segmentation"  # the mask branch; detection (Faster R-CNN) reads boxes only
    try:
        _check_out_folder(args.out)
        dataset = CocoDataset(args.annotations, args.images, strict=args.strict, masks=masks)
        if not dataset.coco.getAnnIds():
            boxes_only = masks and any(p.message == "no segmentation" for p in dataset.problems)
            raise DatasetError(f"{args.annotations}: no usable annotation, nothing to learn from"
                               + ("; its annotations have no segmentation: --task detection trains Faster R-CNN "
                                  "on boxes only" if boxes_only else ""))
        val = CocoDataset(args.val, args.val_images, strict=args.strict, masks=masks) if args.val else None
        if val is not None and val.categories != dataset.categories:
            raise DatasetError(f"{args.val} has the categories {val.categories[1:]}, but {args.annotations} "
                               f"has {dataset.categories[1:]}: --val must name the same categories")
    except (DatasetError, OSError) as e:
        return _error(e, 2)
    try:
        config = _model_config(args, len(dataset.categories), masks)
    except (TypeError, ValueError) as e:
        return _error(e, 2)
    milestones = args.milestones if args.milestones is not None else (
        int(0.75 * args.iterations), int(0.92 * args.iterations))
    try:
        recipe = TrainRecipe(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                             warmup_iters=args.warmup_iters, milestones=tuple(milestones), seed=args.seed,
                             checkpoint_every=args.checkpoint_every)
    except ValueError as e:
        return _error(e, 2)
    try:
        model = MaskRCNN(config, rng=args.seed).to(_check_device_usable(args.device))
    except RuntimeError as e:
        return _error(e, 2)
    print(f"training on {len(dataset)} images, {len(dataset.categories) - 1} classes: "
          f"{', '.join(dataset.categories[1:])}")
    try:
        result = train(model, dataset, recipe, args.out, resume=args.out if args.resume else None,
                       overwrite=args.overwrite, progress=not args.no_progress)
    except (RunExistsError, FileNotFoundError, CheckpointMismatchError) as e:  # the command line's mistake
        return _error(e, 2)
    except TrainingInterrupted as e:
        return _error(f"{e}; go on with --resume", 130)
    except (NonFiniteLossError, DatasetError, ValueError, OSError) as e:
        return _error(e, 1)
    out = Path(args.out)
    print(f"weights: {result.weights}")
    print(f"loss curve: {plot_losses(read_log(out), out / 'loss_curve.png')}")
    if val is not None:
        from .evaluate import evaluate_model

        try:
            evaluate_model(model, val, progress=not args.no_progress)
        except DatasetError as e:
            return _error(e, 1)
    return 0


# --- evaluate ----------------------------------------------------------------------------
def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="COCO AP of trained weights on a COCO-format dataset (pycocotools)",
        description=(
            "Runs the model saved in WEIGHTS (a .safetensors file written by mrcnn-np train or demo) on every "
            "image of a COCO-format dataset and prints pycocotools' bbox and segm AP tables (bbox only for a "
            "Faster R-CNN, a model trained with --task detection)."
        ),
    )
    p.add_argument("annotations", help="COCO-format annotation file (JSON)")
    p.add_argument("--weights", required=True, help="model .safetensors (with its configuration)")
    p.add_argument("--images", default=None, help="image folder (default: next to the JSON, or its images/)")
    p.add_argument("--out", default=None, help="also draw the first images' predictions into this PNG")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_device(p)
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from .convert import load_model
    from .data.coco import CocoDataset, DatasetError
    from .evaluate import evaluate_model

    try:
        if args.out:
            _check_out_file(args.out)
        model = load_model(args.weights).to(_check_device_usable(args.device))
        # no usable image: a DatasetError; a model without the mask branch is scored on boxes only
        dataset = CocoDataset(args.annotations, args.images, masks=model.roi_heads.has_mask())
        _check_classes(args.weights, model, dataset.categories, args.annotations)
    except (DatasetError, OSError, ValueError, RuntimeError) as e:
        return _error(e, 2)
    try:
        _, outputs = evaluate_model(model, dataset, progress=not args.no_progress)
    except DatasetError as e:  # an image changed or vanished since the dataset was read
        return _error(e, 1)
    if args.out:
        from .viz import plot_predictions

        n = min(8, len(dataset))
        samples = [dataset[i] for i in range(n)]
        print("figure:", plot_predictions([s[0] for s in samples], outputs[:n], args.out, [s[1] for s in samples],
                                          dataset.categories))
    return 0


# --- predict -----------------------------------------------------------------------------
def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="draw a trained model's detections on an image: predict IMAGE --weights W --out FIG.png",
        description="Runs the model saved in WEIGHTS on IMAGE (PNG or JPEG) and draws its masks, boxes and "
                    "scores into FIG.png; prints one line per detection.",
    )
    p.add_argument("image", help="an image file")
    p.add_argument("--weights", required=True, help="model .safetensors (with its configuration)")
    p.add_argument("--out", required=True, help="the figure to write (PNG)")
    p.add_argument("--score-thresh", type=_probability, default=0.5, help="draw detections at least this sure "
                   "(default: %(default)s)")
    p.add_argument("--classes", nargs="*", default=None, help="class names, background first "
                   "(default: from the weights file, else numbers)")
    _add_device(p)
    p.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    from matplotlib.figure import Figure

    from .convert import load_model, read_metadata
    from .data.coco import read_image
    from .viz import draw_instances

    try:
        _check_out_file(args.out)
        model = load_model(args.weights).to(_check_device_usable(args.device))
        image = read_image(args.image)
        names = args.classes or json.loads(read_metadata(args.weights).get("classes", "null"))
        if names is not None and len(names) != model.config.num_classes:
            raise ValueError(f"{'--classes gives' if args.classes else args.weights + ' names'} {len(names)} "
                             f"class name(s) but the model has {model.config.num_classes} classes "
                             "(background first)")
    except (OSError, ValueError, RuntimeError) as e:
        return _error(e, 2)
    try:
        out = model([image])[0]
    except ValueError as e:  # e.g. an image too thin to resize
        return _error(f"{args.image}: {e}", 2)
    keep = out["scores"] >= args.score_thresh
    for box, label, score in zip(out["boxes"][keep], out["labels"][keep], out["scores"][keep], strict=True):
        name = names[label] if names else str(label)
        print(f"{name:>12s} {score:.3f}  box {np.array2string(box, precision=1)}")
    fig = Figure(figsize=(6, 6 * image.shape[0] / image.shape[1] + 0.3), layout="constrained")
    draw_instances(fig.subplots(), image, out, names, args.score_thresh,
                   title=f"{int(keep.sum())} detections with score >= {args.score_thresh}")
    fig.savefig(args.out, dpi=120)
    print(f"figure: {args.out}")
    return 0


# --- convert -----------------------------------------------------------------------------
def _add_convert(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="torchvision Mask R-CNN or Faster R-CNN weights file -> .safetensors (needs the reference extra)",
        description=(
            "Reads a torchvision maskrcnn_resnet50_fpn or fasterrcnn_resnet50_fpn (or _v2) state dict (a .pth file, "
            "loaded with torch.load(weights_only=True)), checks it fits mrcnn_np's MaskRCNN (with or without "
            "the mask branch), and writes it as .safetensors with the configuration, ready for mrcnn-np "
            "predict/evaluate --weights. Needs torch: "
            "pip install 'mrcnn-np[reference]'."
        ),
    )
    p.add_argument("source", help="torchvision weights (.pth)")
    p.add_argument("target", help="the .safetensors file to write")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_torchvision_file

    try:
        config = convert_torchvision_file(args.source, args.target)
    except (ImportError, OSError, ValueError, KeyError) as e:
        return _error(e, 2)
    model = "Mask R-CNN" if config.mask_branch else "Faster R-CNN"
    v2 = " v2" if config.box_head == "FastRCNNConvFCHead" else ""
    print(f"wrote {args.target}: {model}{v2} {config.backbone}-{config.architecture.upper()}, "
          f"{config.num_classes} classes")
    return 0


# --- check -------------------------------------------------------------------------------
def _add_check(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="grade an exercise: mrcnn-np check 01 [--path my_copy.py]",
        description=(
            "Grades your solution of a chapter's exercise (exercises/NN_stage/) task by task "
            "against mrcnn_np and, when installed, torch, and prints a report. Exits with "
            "status 0 when every task passes, 1 when one does not (or your file does not "
            "import), 2 when the chapter or a file cannot be found."
        ),
    )
    p.add_argument("chapter", help="the chapter: 01, 1 or 01_backbone")
    p.add_argument("--path", default=None,
                   help="your file to grade (default: the chapter's stub, exercises/NN_stage/exercise.py)")
    p.add_argument("--exercises-dir", default=None,
                   help="the exercises folder (default: ./exercises, else the one next to the package)")
    p.add_argument("--hint", nargs="?", const="", default=None, metavar="TASK",
                   help="after the report, reveal one more hint for TASK (default: the first task that does not "
                   "pass); each call shows the next one")
    p.add_argument("--reset-hints", action="store_true",
                   help="forget the hints revealed for this chapter (the next --hint starts again at the first)")
    p.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Grade the learner's file on every task of the chapter and print the report."""
    from pathlib import Path

    from .exercises import (
        ExerciseError,
        find_chapter,
        format_hints,
        format_report,
        grade,
        load_grader,
        load_hints,
        reset_hints,
        reveal_hint,
    )

    try:
        chapter_dir = find_chapter(args.chapter, args.exercises_dir)
        grader = load_grader(chapter_dir)  # once: grade() reuses it
        path = Path(args.path) if args.path else chapter_dir / grader.STUB
        if not path.is_file():
            raise ExerciseError(f"no such file: {path}")
    except ExerciseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        results = grade(chapter_dir, path, grader=grader)
    except ExerciseError as exc:  # the learner's file does not import
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(results, title=f"Exercise {chapter_dir.name}: grading {path.resolve()}"))
    command = f"mrcnn-np check {args.chapter}" + (f" --path {args.path}" if args.path else "")
    try:
        if args.reset_hints:
            reset_hints(chapter_dir)
            print("\nthe hints of this chapter are hidden again")
        if args.hint is not None:
            reveal = reveal_hint(chapter_dir, results, args.hint or None)
            print("\n" + format_hints(reveal, command + " --hint" + (f" {args.hint}" if args.hint else "")))
        else:
            stuck = next((r.name for r in results if not r.passed), None)
            written = len(load_hints(chapter_dir).get(stuck, [])) if stuck else 0
            if written:
                print(f"\nstuck on {stuck}? `{command} --hint` reveals its {written} hints one at a time")
    except (ExerciseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r.passed for r in results) else 1


# --- verify -------------------------------------------------------------------------------
def _add_verify(subparsers) -> None:
    from .config import PRESETS

    p = subparsers.add_parser(
        "verify",
        help="compare every stage with torchvision on a photograph (needs the reference extra)",
        description=(
            "Builds torchvision's Mask R-CNN (ResNet-50-FPN; or --model: Faster R-CNN, the v2 recipes) with seeded "
            "random weights, loads them into "
            "mrcnn_np's, runs both on a photograph matplotlib ships and prints a stage-by-stage table of "
            "the largest differences: transform, backbone levels, proposals, box head, detections, masks. "
            "Needs torch and torchvision: pip install 'mrcnn-np[reference]'."
        ),
    )
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="arithmetic of both models (default: %(default)s)")
    p.add_argument("--min-size", type=_positive_int, default=512,
                   help="shorter image side after resizing (torchvision's default is 800; default: %(default)s)")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of the random weights (default: %(default)s)")
    p.add_argument("--model", choices=sorted(PRESETS), default="maskrcnn_resnet50_fpn",
                   help="the architecture, by torchvision's name (tiny, tiny_v2: the small networks of the demo) "
                        "(default: %(default)s)")
    _add_device(p)
    p.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print the agreement table; status 2 when torchvision is missing."""
    import numpy as np

    from .verify import format_table, verify

    dtype = np.dtype(args.dtype)
    try:
        rows = verify(dtype=dtype, seed=args.seed, min_size=args.min_size, max_size=max(1333, args.min_size),
                      device=_check_device_usable(args.device), model=args.model)
    except (ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(rows, dtype))
    return 0


# --- the parser -----------------------------------------------------------------------
# --- ablate ------------------------------------------------------------------------------
def _add_ablate(subparsers) -> None:
    from .ablate import BUDGETS, NAMES

    p = subparsers.add_parser(
        "ablate",
        help="the paper's ablations (Table 2, 3) on the shapes data: every switch trained with several seeds, "
             "AP side by side with the paper's numbers",
        description=(
            "Trains the demo's model once per ablation (softmax masks, class-agnostic masks, RoIWarp, RoIPool, "
            "an MLP mask head, no mask branch, and the baseline) and seed on the demo's shapes data, evaluates "
            "each on held-out images, and prints mask and box AP, AP50 and AP75 (mean +- std over the seeds) "
            "next to the paper's numbers. Writes OUT/ablations.json (the command, commit, settings and every "
            "number) after every run; finished runs in OUT are read back, not trained again. "
            + "; ".join(f"--budget {k}: {b.iterations} iterations, {b.train_images} training images, seeds "
                        f"{list(b.seeds)}" for k, b in BUDGETS.items())
            + ". The short budget only shows that everything runs."
        ),
    )
    p.add_argument("--budget", choices=sorted(BUDGETS), default="short", help="(default: %(default)s)")
    p.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                   help=f"run only these ablations (from: {', '.join(NAMES)})")
    p.add_argument("--seeds", nargs="+", type=_nonnegative_int, metavar="SEED",
                   help="the seeds (default: the budget's)")
    p.add_argument("--out", default=None, help="folder for the data, the runs and ablations.json "
                   "(default: runs/ablate/BUDGET)")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds another budget's runs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run_ablate)


def run_ablate(args: argparse.Namespace) -> int:
    """Run the sweep, print its table and where the JSON is."""
    from pathlib import Path

    from .ablate import SweepExistsError, format_table, run_ablations

    out = Path(args.out if args.out is not None else f"runs/ablate/{args.budget}")
    command = " ".join(["mrcnn-np ablate --budget", args.budget, *(["--only", *args.only] if args.only else []),
                        *(["--seeds", *map(str, args.seeds)] if args.seeds else []), "--out", str(out)])
    try:
        _check_out_folder(out)
        result = run_ablations(args.budget, out, names=args.only, seeds=args.seeds, progress=not args.no_progress,
                               command=command, overwrite=args.overwrite)
    except (NotADirectoryError, SweepExistsError) as e:
        return _error(e, 2)
    print(format_table(result))
    print(f"every number: {out / 'ablations.json'}")
    return 0


# --- inspect-data ------------------------------------------------------------------------
def _add_inspect_data(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect-data",
        help="before training: how a COCO-format dataset's objects meet the anchors, the FPN levels and the 28x28 mask",
        description=(
            "Reads a COCO-format annotation file as mrcnn-np train does and, for every ground truth in the model's "
            "own coordinates (the configuration's resize), reports its best anchor IoU and that anchor's FPN level, "
            "the anchors the RPN's matcher makes positive (IoU >= 0.7; objects matched only by the low-quality "
            "rule, or not at all), the level the RoI heads pool it from, the IoU of its mask after the mask "
            "target's round trip (RoIAlign to 28x28 on its box, pasted back), and objects too small for the finest "
            "stride or the smallest anchor. Suggests anchor sizes and aspect ratios from the data and shows what "
            "they would change. Prints a summary and the worst cases; writes OUT/inspect.json (every number) and "
            "figures (OUT/best_anchor_iou.png, levels.png, mask_iou.png, anchors.png)."
        ),
    )
    p.add_argument("annotations", help="COCO-format annotation file (JSON)")
    p.add_argument("--images", default=None, help="image folder (default: next to the JSON, or its images/)")
    p.add_argument("--config", default="tiny", metavar="NAME",
                   help=f"the network whose anchors, levels and mask size are used, as mrcnn-np train --config: "
                        f"{', '.join(TRAIN_CONFIGS)} (default: %(default)s)")
    p.add_argument("--task", choices=("segmentation", "detection"), default="segmentation",
                   help="detection: read the boxes only (annotations without segmentation), no mask round trip "
                        "(default: %(default)s)")
    _add_model_options(p)
    p.add_argument("--worst", type=_nonnegative_int, default=8, help="ground truths listed in each table of worst "
                   "cases (default: %(default)s)")
    p.add_argument("--out", default="runs/inspect", help="folder for inspect.json and the figures "
                   "(default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run_inspect_data)


def run_inspect_data(args: argparse.Namespace) -> int:
    """Inspect the dataset with the configuration's model; print the report, write the JSON and the figures."""
    from .data.coco import CocoDataset, DatasetError
    from .data.inspect import format_report, inspect_data, save_report

    if args.config not in TRAIN_CONFIGS:
        return _error(f"unknown --config {args.config!r}; expected one of {', '.join(TRAIN_CONFIGS)}", 2)
    masks = args.task == "segmentation"
    try:
        _check_out_folder(args.out)
        dataset = CocoDataset(args.annotations, args.images, masks=masks)
        if not dataset.coco.getAnnIds():
            raise DatasetError(f"{args.annotations}: no usable annotation, nothing to inspect")
        config = _model_config(args, len(dataset.categories), masks)
    except (DatasetError, OSError, TypeError, ValueError, NotADirectoryError) as e:
        return _error(e, 2)
    try:
        result = inspect_data(dataset, config, progress=not args.no_progress)
    except DatasetError as e:  # an image changed or vanished since the dataset was read
        return _error(e, 1)
    print(f"{args.annotations} with --config {args.config}")
    print(format_report(result, worst=args.worst))
    files = save_report(result, args.out)
    print("\n" + "\n".join(f"{name}: {path}" for name, path in files.items()))
    return 0


COMMANDS = (_add_demo, _add_train, _add_evaluate, _add_predict, _add_convert, _add_check, _add_verify, _add_ablate,
            _add_inspect_data)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="mrcnn-np",
        description="mrcnn-np: Mask R-CNN written out in NumPy, verified against torchvision.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True,
                                       metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status.

    Exit status: 0 done, 1 a runtime failure (a NaN loss, a full disk, AP below the bar), 2 a
    mistake in the command line or its files, 130 Ctrl-C. Mistakes and faults of the
    environment are one ``error:`` line, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except MemoryError:
        return _error("out of memory (try a smaller --batch-size or image size)", 1)
    except OSError as e:  # the environment: a full disk, a folder that vanished, permissions
        return _error(e, 1)


# --- helpers ----------------------------------------------------------------------------
def _add_task(p) -> None:
    p.add_argument("--task", choices=("segmentation", "detection"), default="segmentation",
                   help="segmentation: Mask R-CNN (boxes and masks); detection: Faster R-CNN, the same model "
                        "without the mask branch (boxes only, bbox AP) (default: %(default)s)")


def _add_device(p) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the model runs: cpu, or cuda (an NVIDIA GPU, with pip install "
                        "'mrcnn-np[gpu]'; default: %(default)s)")


def _check_device_usable(device: str) -> str:
    """``device``, or a RuntimeError saying what is missing for ``"cuda"``."""
    from .backend import cupy_available

    if device == "cuda" and not cupy_available():
        raise RuntimeError("--device cuda needs CuPy and an NVIDIA GPU with its driver: pip install "
                           "'mrcnn-np[gpu]' on such a machine (or use --device cpu)")
    return device


def _error(message, status: int) -> int:
    """Print ``error: message`` to stderr and return ``status``."""
    print(f"error: {message}", file=sys.stderr)
    return status


def _check_out_folder(path) -> None:
    """``--out`` as a folder: it may not exist yet (it is created), but it may not be a file."""
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file; give a folder")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"--out {path}: {parent} is a file")


def _check_out_file(path) -> None:
    """``--out`` as a figure file: its folder is created when missing; a folder or a file in the way is an error."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; give a file name such as {path / 'figure.png'}")
    _check_out_folder(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)


def _check_classes(weights, model, categories: list, file) -> None:
    """The model's classes must be the dataset's: the same number, and the same names when the weights
    file records them (labels would otherwise map to the wrong category)."""
    import json

    from .convert import read_metadata

    names = json.loads(read_metadata(weights).get("classes", "null"))
    if names is not None and list(names) != list(categories):
        raise ValueError(f"{weights} was trained on the classes {names[1:]}, but {file} has {categories[1:]}")
    if model.config.num_classes != len(categories):
        raise ValueError(f"{weights} has {model.config.num_classes} classes (background included), but {file} "
                         f"has {len(categories)}")


def _argument_type(convert, ok, expected: str):
    """An argparse type: ``convert(text)`` when ``ok`` of it holds, else "must be <expected>, got 'text'"."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):  # a NaN fails every comparison, so ok() refuses it
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value
    return parse


_positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0")  # a seed
_probability = _argument_type(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")  # a score threshold
_positive_float = _argument_type(float, lambda v: math.isfinite(v) and v > 0, "a positive number")  # anchors


if __name__ == "__main__":
    sys.exit(main())
