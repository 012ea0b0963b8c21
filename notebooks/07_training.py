# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Training, datasets and COCO evaluation
#
# Chapter 6 ended with one SGD step on a batch of synthetic shapes. This chapter does the rest
# of the job: where the training data comes from and in what format, the recipe that turns
# one step into a training run, a short run you can watch, a model trained for longer, and
# how detections and masks are scored, the way papers score them on COCO. In order:
#
# - the **data**: the shapes dataset written as a COCO annotation file, RLE and polygon masks,
#   crowd regions, and what the reader does with broken annotations;
# - the **recipe**: SGD with momentum and weight decay, a warm-up, then steps down; and why
#   the small model trains its batch norms while torchvision freezes them;
# - a **short training run**: the five losses falling, the files a run writes, an exact resume;
# - the **trained model**: `shapes_model()`, shipped with the package, on held-out images;
# - **COCO evaluation**: what AP, AP50, AP75, APs/m/l and AR1/10/100 measure;
# - **failure cases**: the held-out images where the model does worst, and why;
# - a **check against torchvision**: one training step of both libraries, to the last digit.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/data/shapes.py` (`shapes_coco`, `write_shapes_dataset`) | (synthetic; no counterpart) |
# | `mrcnn_np/data/coco.py` (`CocoDataset`) | `references/detection/coco_utils.py` (`ConvertCocoPolysToMask`) |
# | `mrcnn_np/data/loader.py` (`DataLoader`, `hflip`) | `references/detection/presets.py`, `transforms.py` |
# | `mrcnn_np/train.py` (`TrainRecipe`, `train`) | `references/detection/train.py`, `engine.py` |
# | `mrcnn_np/nn/optim.py` (`SGD`, `WarmupMultiStepLR`) | `torch.optim.SGD`, `LinearLR` + `MultiStepLR` |
# | `mrcnn_np/evaluate.py` (`evaluate_model`) | `references/detection/coco_eval.py` (pycocotools' `COCOeval`) |
# | `mrcnn_np/pretrained.py` (`shapes_model`) | `maskrcnn_resnet50_fpn(weights=...)` |
#
# **About the weights.** Sections 7.4 to 7.6 use `shapes_model()`: the small configuration of
# chapter 6, section 6.9, trained from scratch by `mrcnn-np demo` and stored with the package.
# Every number about it below is computed when the chapter runs, none is quoted in the text,
# and the text describes what to look for rather than what you will see.

# %%
import contextlib
import io
import json
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

import mrcnn_np
from mrcnn_np.config import MaskRCNNConfig, tiny
from mrcnn_np.convert import read_metadata
from mrcnn_np.data.coco import CocoDataset, DatasetError, DatasetWarning
from mrcnn_np.data.shapes import shapes_coco, shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.evaluate import STAT_NAMES, evaluate_model, to_coco_results
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.pretrained import SHAPES_WEIGHTS, shapes_model
from mrcnn_np.reference import import_torch
from mrcnn_np.train import TrainRecipe, make_optimizer, train
from mrcnn_np.viz import draw_instances, plot_losses

chapter_start = time.perf_counter()

# %% [markdown]
# ## 7.1 The data: shapes as a COCO dataset
#
# Mask R-CNN learns from images whose objects are annotated with a class, a box and a mask.
# The format nearly every detection dataset is distributed in is COCO's: one JSON file with
# three lists, `images`, `annotations` (one per object) and `categories`, next to a folder of
# images. `mrcnn_np.data.shapes.shapes_coco` draws chapter 6's synthetic shapes (squares,
# circles and triangles of random size, colour and angle, occluding one another) and writes
# them in exactly that format; `write_shapes_dataset` puts the same thing on disk (PNGs and
# `annotations.json`), which is what `mrcnn-np demo` trains on. Image `i` of seed `s` is drawn
# from `np.random.default_rng([s, i])`, so a seed always gives the same images, and seed 0
# (training) and seed 1 (held out) give different ones.

# %%
coco, arrays = shapes_coco(8, seed=0, **DemoSettings().data())  # the demo's training images
print({key: len(value) if isinstance(value, list) else value for key, value in coco.items()})
print("categories:", coco["categories"])
per_image = Counter(a["image_id"] for a in coco["annotations"])
image_id = max(per_image, key=per_image.get)  # the image with the most shapes
print("an image:", next(entry for entry in coco["images"] if entry["id"] == image_id))
annotation = next(a for a in coco["annotations"] if a["image_id"] == image_id)  # its first annotation
print("its first annotation:")
for key, value in annotation.items():
    if key == "segmentation":
        value = dict(value, counts=value["counts"][:40] + "...")
    print(f"  {key}: {json.dumps(value)}")

# %% [markdown]
# An annotation names its image (`image_id`) and its category (`category_id`), and carries:
#
# - `bbox`: `[x, y, width, height]` in pixels, from the top-left corner (the model works in
#   `[x1, y1, x2, y2]`, the reader converts);
# - `segmentation`: the mask, here as a **run-length encoding** (RLE, below);
# - `area`: the mask's pixel count, which COCO evaluation uses to call an object small,
#   medium or large (section 7.5);
# - `iscrowd`: 0 for one object; 1 for a region covering a group of objects too dense to
#   separate (a crowd of people, a shelf of books), explained below.
#
# `CocoDataset` reads such a file (or dict) and gives `(image, target)` pairs in the layout
# the model trains on, as torchvision's detection reference does: boxes converted to `xyxy`,
# masks decoded to arrays, category ids mapped to contiguous labels 1..K (0 is the background).

# %%
dataset = CocoDataset(coco, images=arrays)  # in memory; CocoDataset("annotations.json") reads files
print(dataset)
print("label -> name:", dataset.categories)
image, target = dataset[dataset.image_ids.index(image_id)]  # dataset[i]: the i-th image of the file
print("image", image.shape, image.dtype)
for key, value in target.items():
    print(f"{key:<7}", value if np.isscalar(value) else f"{value.dtype} {value.shape}")

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 4.6))
draw_instances(ax1, image, target, dataset.categories, title=f"image {target['image_id']}: "
               f"{len(target['labels'])} annotated shapes (masks and boxes)")
x, y, w, h = annotation["bbox"]
ax2.imshow(target["masks"][0], cmap="gray")
ax2.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="tab:red", lw=2, ls="--"))
ax2.set_title(f"annotation {annotation['id']} decoded: {target['masks'][0].sum()} pixels,\n"
              f"bbox [x, y, w, h] = {annotation['bbox']} (red)", fontsize=9)
ax2.set_xticks([])
ax2.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# The masks are the *visible* pixels of each shape: a shape partly hidden by a later one loses
# the hidden pixels, so its mask can be far from a square, circle or triangle, even in two
# pieces. The box is the mask's extent (pixel `(row y, column x)` covers `[x, x + 1) x [y, y + 1)`).
#
# ### Masks as RLE and as polygons
#
# COCO stores a mask in one of two ways.
#
# **RLE**: read the mask column by column (top to bottom, then the next column to the right:
# "Fortran" order), and write down the lengths of the runs of equal pixels, alternately 0s and
# 1s, always starting with a run of 0s (of length 0 if the first pixel is 1). `size` is
# `[height, width]`. Those run lengths are the *uncompressed* RLE; the string in the file is
# the *compressed* form pycocotools writes: each run as a few characters of 6 bits each, and from
# the third run on as the difference to the run two before, which is small when consecutive
# columns of a shape look alike. Here is the encoder in four lines, checked against pycocotools:

# %%
def rle_counts(mask):
    """(H, W) bool -> COCO's uncompressed RLE counts: alternating run lengths of 0s and 1s,
    starting with 0s, reading the mask column by column."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)  # (H, W) -> (W*H,), column-major
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where a new run begins
    runs = np.diff(np.concatenate([[0], starts, [flat.size]])).tolist()
    return [0] + runs if flat[0] else runs


mask = target["masks"][0]
runs = rle_counts(mask)
print(f"{len(runs)} runs, the first ten: {runs[:10]}; they cover {sum(runs)} = {mask.shape[0]} x {mask.shape[1]} "
      "pixels")
compressed = mask_utils.frPyObjects({"size": list(mask.shape), "counts": runs}, *mask.shape)["counts"].decode()
print("compressed by pycocotools:", compressed[:40], "...")
assert compressed == annotation["segmentation"]["counts"]

# %% [markdown]
# **Polygons**: `segmentation` is a list of polygons, each a flat list `[x1, y1, x2, y2, ...]`
# of vertices in pixel coordinates, several of them for an object in several pieces. This is
# what annotation tools produce when a person clicks around an object, and how COCO stores
# single objects; pycocotools rasterises a polygon into a mask when the dataset is read. COCO
# stores crowd regions as RLE. The shapes use RLE because their masks are exact pixel sets,
# and an occluded shape's visible part is no longer a simple polygon.
#
# **`iscrowd: 1`** marks a region that covers many objects at once. Such an annotation is not
# a training target (the reader leaves it out of `target`, as torchvision's reference does),
# but it stays in the ground truth for evaluation, where a detection that falls inside a crowd
# region counts neither as a hit nor as a false positive (section 7.5).
#
# ### Bad annotations
#
# Real annotation files have mistakes, and a mistake found in the middle of a long training run
# is expensive. `CocoDataset` checks everything when it is built: each problem becomes a
# `DatasetProblem` in `dataset.problems` saying what was done about it, and one
# `DatasetWarning` sums them up. Below, a small dict with one good polygon, one of each common
# mistake, and a crowd region: an image without pixels, an annotation of an image that is not
# in the file, a "polygon" of two points, a box that runs past the image's edge, and an RLE
# whose runs do not add up to the image's size.

# %%
height, width = 40, 64
crowd = np.zeros((height, width), dtype=bool)
crowd[22:36, 4:24] = True  # a crowd region, as uncompressed RLE
broken_coco = {
    "images": [{"id": 1, "file_name": "toy.png", "height": height, "width": width},
               {"id": 2, "file_name": "lost.png", "height": height, "width": width}],  # no pixels for it below
    "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}, {"id": 3, "name": "triangle"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [6, 2, 16, 16], "iscrowd": 0,
         "segmentation": [[14, 2, 22, 18, 6, 18]]},  # a good triangle, as a polygon
        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0,
         "segmentation": [[0, 0, 5, 0, 5, 5]]},  # image 9 does not exist
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [30, 4, 6, 6], "iscrowd": 0,
         "segmentation": [[30, 4, 36, 10]]},  # two points are not a polygon
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [44, 16, 30, 20], "iscrowd": 0,
         "segmentation": [[44, 16, 74, 16, 74, 36, 44, 36]]},  # runs 10 pixels past the right edge
        {"id": 5, "image_id": 1, "category_id": 2, "bbox": [30, 20, 8, 8], "iscrowd": 0,
         "segmentation": {"size": [height, width], "counts": [100, 8, 32]}},  # 140 pixels, not 40 x 64
        {"id": 6, "image_id": 1, "category_id": 2, "bbox": [4, 22, 20, 14], "iscrowd": 1,
         "segmentation": {"size": [height, width], "counts": rle_counts(crowd)}},
    ],
}
toy_image = np.full((height, width, 3), 200, dtype=np.uint8)

with warnings.catch_warnings(record=True) as caught:  # shown here rather than on stderr
    warnings.simplefilter("always")
    toy = CocoDataset(broken_coco, images={1: toy_image}, name="toy.json")
print(f"warnings: {[type(w.message).__name__ for w in caught]}; the message:\n")
print(caught[0].message)
assert len(caught) == 1 and isinstance(caught[0].message, DatasetWarning)

# %% [markdown]
# Each problem is handled the way that loses least: the image without pixels and the annotations
# that cannot be used are skipped, the box is clipped to the image. What is left:

# %%
print(toy, "images:", toy.image_ids)
_, toy_target = toy[0]
print("training target:", {k: v.tolist() if hasattr(v, "tolist") else v
                           for k, v in toy_target.items() if k != "masks"})
print("ground truth for evaluation:", [(a["id"], a["iscrowd"]) for a in toy.coco.dataset["annotations"]],
      "(id, iscrowd)")
try:
    CocoDataset(broken_coco, images={1: toy_image}, name="toy.json", strict=True)
except DatasetError as e:
    print("\nwith strict=True:", str(e).splitlines()[0])

# %% [markdown]
# Two targets remain, the triangle and the clipped square; the crowd region (annotation 6) is
# not a target, but it is in the ground truth that evaluation uses. With `strict=True` any
# problem is an error instead; the demo reads its own files that way, since a generated file
# should have none. (`mrcnn-np train annotations.json` takes `--strict` too.)
#
# Batches come from `mrcnn_np.data.loader.DataLoader`: batch `t` is a pure function of the seed
# and `t` (which images, in what order, and which of them are flipped left-right, the only
# augmentation of torchvision's reference recipe). Nothing random is carried from one iteration
# to the next, which is what makes an exact resume possible (section 7.3).

# %% [markdown]
# ## 7.2 The recipe
#
# `mrcnn_np.train.TrainRecipe` holds everything that decides a training run besides the model
# and the data. Its defaults are torchvision's detection recipe (`references/detection`):

# %%
print(TrainRecipe())
demo = DemoSettings()
demo_recipe = demo.recipe()
print(f"\nmrcnn-np demo: {demo.iterations} iterations of {demo.batch_size} images "
      f"({demo.iterations * demo.batch_size} samples drawn from {demo.train_images} training images), "
      f"lr {demo_recipe.lr}, warm-up {demo_recipe.warmup_iters}, milestones {demo_recipe.milestones}")

# %% [markdown]
# **SGD with momentum and weight decay.** Every trainable parameter `w` with gradient `g` of the
# summed five losses is updated as in `torch.optim.SGD`:
#
# ```text
# d = g + weight_decay * w        weight decay: a pull towards 0, the gradient of (weight_decay / 2) |w|^2
# v = momentum * v + d            momentum: a running sum of past steps (v = d at the first step)
# w = w - lr * v
# ```
#
# With momentum 0.9, `v` averages about the last ten gradients, which smooths the noise of
# batches of a few images. torchvision's reference uses lr 0.02 for 16 images per batch (8
# GPUs with 2 each); `TrainRecipe` scales it linearly to its batch of 4 (0.005). The demo trains
# the small model from scratch with a larger one, 0.02, after the warm-up printed above; its
# trainable batch norms make that possible.
#
# **Warm-up, then steps.** At the start the weights are random and the gradients large and
# erratic; a full-size step can throw the network into a region where a loss is NaN (`train`
# stops with `NonFiniteLossError` before such an update). So the learning rate starts at
# `warmup_factor` (0.001) times the peak and grows linearly to the peak over `warmup_iters`
# iterations. Late in training it is divided by 10 at each milestone: large steps find the
# region of a good solution, small steps settle into it. `make_optimizer(model, recipe)`
# returns the optimiser and this schedule; stepping the schedule through a run gives the
# demo's learning rate at every iteration:

# %%
config = tiny(num_classes=4, min_size=96, max_size=96)  # the model of section 7.3
model = MaskRCNN(config, rng=0)
optimizer, scheduler = make_optimizer(model, demo_recipe)
lrs = []
for _ in range(demo_recipe.iterations):
    lrs.append(optimizer.param_groups[0]["lr"])  # the lr iteration t uses, as train() reads it
    scheduler.step()
lrs = np.array(lrs)
print(f"lr at iteration 0: {lrs[0]:.2e}, at {demo_recipe.warmup_iters}: {lrs[demo_recipe.warmup_iters]:.2e}, "
      f"last: {lrs[-1]:.2e}")

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), width_ratios=[2, 1])
for ax in (ax1, ax2):
    ax.plot(np.arange(len(lrs)), lrs, color="tab:blue", lw=2)
    ax.axvline(demo_recipe.warmup_iters, color="tab:gray", ls=":", lw=1)
    ax.set_xlabel("iteration")
ax1.set_ylabel("learning rate")
for m in demo_recipe.milestones:
    ax1.axvline(m, color="tab:red", ls="--", lw=1)
    ax1.text(m, lrs.max() * 0.55, f"milestone {m}: lr / 10 ", color="tab:red", fontsize=9, rotation=90,
             ha="right", va="center")
ax1.text(demo_recipe.warmup_iters, lrs.max() * 0.5, " end of warm-up", color="tab:gray", fontsize=9)
ax1.set_title("The demo's schedule, the whole run", fontsize=11)
ax2.set_xlim(0, 2 * demo_recipe.warmup_iters)
ax2.set_yscale("log")
ax2.set_title("The warm-up, on a log scale", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Batch norm: trained here, frozen in torchvision's recipe.** A batch norm layer normalises
# each channel with a mean and a variance. In training mode it uses the current batch's and
# keeps running averages of them; in evaluation mode it uses the running averages.
# torchvision's `maskrcnn_resnet50_fpn` starts from a backbone pretrained on ImageNet and
# *freezes* its batch norms (`FrozenBatchNorm2d`: the ImageNet statistics and affine terms as
# constants), together with the stem and the first stage (`trainable_backbone_layers=3`). It has
# good statistics already, and a detection batch of two large images per GPU would give noisy
# ones. The small model trains **from scratch**: there are no statistics to freeze, and
# normalising with the batch's own statistics is what lets a deep network train from random
# weights at a large learning rate. So `config.tiny()` uses trainable `BatchNorm2d` and trains
# every layer:

# %%
default = MaskRCNNConfig()
for name in ("frozen_batch_norm", "trainable_backbone_layers"):
    print(f"{name:<26} torchvision's default: {getattr(default, name)!s:<6} tiny: {getattr(config, name)}")
norms = Counter(type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__)
trainable = sum(p.size for p in model.parameters() if p.requires_grad)
print(f"norm layers of the small model: {dict(norms)}; trainable parameters: {trainable:,} of "
      f"{sum(p.size for p in model.parameters()):,}")

# %% [markdown]
# The price of trainable batch norms is that a model behaves differently in `train()` and in
# `eval()` mode, and that its running statistics are part of its state: a checkpoint must hold
# them (it does, as buffers next to the weights), or a resumed run would not be the same run.

# %% [markdown]
# ## 7.3 A short training run
#
# `train(model, dataset, recipe, out_dir)` runs the loop of the module docstring of
# `mrcnn_np/train.py`: batch `t` from the loader, the five losses with the anchors and RoIs
# sampled from `np.random.default_rng([seed, t])`, a check that every loss is finite, backward,
# the SGD step, the schedule step, a log line, and a checkpoint every `checkpoint_every`
# iterations. Here the small model of section 7.2 trains for 40 iterations of 2 images of
# 96 x 96 (80 training images, one epoch), with a warm-up of 15 iterations and a step down at
# 30, and writes into a temporary folder. That is a few percent of what the demo does, enough
# to watch the losses start to fall. The peak learning rate is half the demo's: with batches of
# 2 instead of 4 the gradients are noisier, and with the demo's 0.02 and so short a warm-up this
# run can diverge (try it: `train` stops with a `NonFiniteLossError` that names the iteration).

# %%
run_folder = tempfile.TemporaryDirectory(prefix="mrcnn-np-chapter7-")
run = Path(run_folder.name)
train_set = shapes_dataset(80, seed=0, height=96, width=96)
recipe = TrainRecipe(iterations=40, batch_size=2, lr=0.01, warmup_iters=15, milestones=(30,), checkpoint_every=10)
result = train(model, train_set, recipe, out_dir=run, progress=False)
print(f"{result.iterations} iterations in {result.seconds:.1f} s")
first, last = result.history[:5], result.history[-5:]
print(f"{'':<17} {'first 5':>8} {'last 5':>8}   (mean over the iterations)")
for name in ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"):
    print(f"{name:<17} {np.mean([r[name] for r in first]):8.3f} {np.mean([r[name] for r in last]):8.3f}")

# %% [markdown]
# `plot_losses` draws a run's log, each loss as a moving average (here over 5 iterations), on a
# log scale, with the learning rate beside it (given a path it writes a PNG, as `mrcnn-np demo`
# does; without one it returns the figure):

# %%
plot_losses(result.history, window=5, title=f"config.tiny on 96 x 96 shapes, {recipe.iterations} iterations")

# %% [markdown]
# The curves are noisy: every iteration sees two other images, one with a single large shape,
# the next with four small ones, and the smoothing over 5 iterations hides only part of that.
# What counts is the trend. The five losses (chapter 6, section 6.9, has their definitions):
#
# - `objectness`, the RPN's binary cross-entropy of object against background on the sampled
#   anchors, starts near ln 2 = 0.69 and is the first to learn something: a flat background is
#   easy to tell from a shape.
# - `rpn_box_reg`, the smooth L1 of the RPN's box deltas on the positive anchors, is small from
#   the start because it is divided by the number of sampled anchors, most of them negative.
# - `classifier`, the box head's cross-entropy over background and the three shapes, starts near
#   ln 4 = 1.39 and falls fast at first: at least 75% of the sampled RoIs are background, and
#   saying "background" nearly everywhere is learnt in a few steps. Telling squares from
#   triangles takes much longer.
# - `box_reg`, the smooth L1 of the box head's deltas on the positive RoIs, divided by the number
#   of sampled RoIs. It can rise early on: as the RPN improves, more of the sampled RoIs are
#   positives, and each brings a term.
# - `mask`, the binary cross-entropy of the 28 x 28 mask of the true class, starts high (the
#   mask predictor's initialisation gives logits far from 0) and drops quickly to about
#   ln 2 = 0.69, the loss of a mask that says 0.5 everywhere. Below that it needs good RoIs and
#   features; it is the slowest to improve, and keeps falling long after the others level off.
#
# Forty iterations are a start, not a model: the predictions of this one are still poor. The
# model of the next sections is `mrcnn-np demo` with its default settings (the
# `DemoSettings` printed in section 7.2), which trains `config.tiny()` at 128 x 128 for the number
# of iterations below, on two CPU cores in minutes rather than seconds:

# %%
print(f"mrcnn-np demo trains for DemoSettings().iterations = {DemoSettings().iterations} iterations")

# %% [markdown]
# ### The files of a run, and an exact resume
#
# The run folder holds the log (one JSON line per iteration), a checkpoint every 10 iterations
# and the final weights:

# %%
print(f"{run.name}/:", sorted(p.name for p in run.iterdir()))
print("checkpoints/:", sorted(p.name for p in (run / "checkpoints").iterdir()))
for path in sorted((run / "checkpoints" / "iter_000040").iterdir()):
    print(f"  iter_000040/{path.name:<22} {path.stat().st_size / 1e6:5.2f} MB")
print("log line:", (run / "log.jsonl").read_text().splitlines()[-1][:110], "...")

# %% [markdown]
# A checkpoint is written into a temporary folder that is then renamed, so an interrupted run
# never leaves half of one behind. It holds the weights *and* the batch-norm statistics
# (`model.safetensors`), the momentum buffers (`optimizer.safetensors`) and the iteration, the
# recipe and the schedule (`state.json`). Because nothing else is carried from one iteration to
# the next, that is the whole state of the run, and resuming from a checkpoint gives the run
# that was never interrupted, **bit for bit**. Here a model with different random weights
# resumes from iteration 30 (`train(..., resume=...)`, or `mrcnn-np train --resume`) and runs
# the last 10 iterations again:

# %%
resumed = MaskRCNN(config, rng=1)  # other random weights: all of the state must come from the checkpoint
again = train(resumed, train_set, recipe, resume=run / "checkpoints" / "iter_000030", progress=False)
same_losses = [r["loss"] for r in again.history] == [r["loss"] for r in result.history[30:]]
state, state_resumed = model.state_dict(), resumed.state_dict()
same_state = list(state) == list(state_resumed) and all(np.array_equal(state[k], state_resumed[k]) for k in state)
print(f"iterations run again: {[r['iteration'] for r in again.history]}")
print(f"the same losses: {same_losses}; the same {len(state)} weights and statistics, to the bit: {same_state}")
assert same_losses and same_state
run_folder.cleanup()

# %% [markdown]
# What a crash can leave behind is handled too: a folder that holds a run is refused unless you
# resume it or ask to `overwrite` it; resuming refuses a checkpoint of another model
# configuration or recipe, skips a damaged checkpoint for the newest intact one, and drops a log
# line cut short by a kill. `tests/unit/test_kill_resume.py` kills a run with SIGKILL at random
# moments, resumes it each time, and checks the final weights against an uninterrupted run, bit
# for bit.

# %% [markdown]
# ## 7.4 The trained model
#
# `mrcnn_np.pretrained.shapes_model()` loads the model the demo trained: `config.tiny()` for
# 128 x 128 images and three classes, stored in float16 to keep the package small and computed
# in float32. The file also holds the names of the classes, the number of iterations it was
# trained for, and the COCO numbers the demo measured on its held-out images.

# %%
trained = shapes_model()
metadata = read_metadata(SHAPES_WEIGHTS)
print("classes:", trained.classes, "| trained for", metadata.get("iteration"), "iterations")
print(f"parameters: {sum(p.size for p in trained.parameters()):,}; the same configuration as the demo's:",
      asdict(trained.config) == asdict(demo.config()))
bn = trained.backbone.body.bn1
print(f"the first batch norm's running statistics, no longer the initial 0 and 1: mean "
      f"{bn.running_mean.min():.2f} to {bn.running_mean.max():.2f}, variance {bn.running_var.min():.3f} to "
      f"{bn.running_var.max():.3f}")

# %% [markdown]
# The held-out images are the demo's: seed 1 (training used seed 0). The first six, with their
# ground truth above and the model's detections with a score of at least 0.5 below:

# %%
test_set = shapes_dataset(40, seed=1, **DemoSettings().data())
samples = [test_set[i] for i in range(6)]
start = time.perf_counter()
predictions = trained([im for im, _ in samples])  # eval mode: one dict per image, no autograd tape
print(f"6 images in {time.perf_counter() - start:.2f} s; detections with score >= 0.5 per image:",
      [int((p["scores"] >= 0.5).sum()) for p in predictions])

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 6, figsize=(14, 5.2))
for k, ((im, gt), pred) in enumerate(zip(samples, predictions, strict=True)):
    draw_instances(axes[0, k], im, gt, trained.classes, title=f"image {gt['image_id']}: ground truth")
    draw_instances(axes[1, k], im, pred, trained.classes, score_thresh=0.5, title="prediction (score >= 0.5)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Chapter 6 opened the model up on a photograph with random weights; here is one step of that
# inspection again, trained, on the first held-out image: the RPN's 20 best proposals (left),
# every detection above the box head's score threshold of 0.05 (middle, coloured by score), and
# the pasted mask probabilities of the detections kept at 0.5 (right, the largest over the
# detections at each pixel).

# %%
im, gt = samples[0]
with mrcnn_np.no_grad():
    batch, _ = trained.transform([im], dtype=np.float32)
    features = trained.backbone(batch.tensors)
    (proposals,), (objectness,) = trained.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
print(f"proposals {proposals.shape}, the 20 best with objectness {objectness[19]:.3f} to {objectness[0]:.3f}")
pred = predictions[0]
kept = pred["scores"] >= 0.5

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
cmap = plt.get_cmap("viridis")
for ax in axes[:2]:
    ax.imshow(im)
for rank in reversed(range(20)):  # 128 x 128: the transform does not resize, boxes are in image pixels
    x1, y1, x2, y2 = proposals[rank]
    axes[0].add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5,
                                        edgecolor=cmap(rank / 19)))
axes[0].set_title("the 20 best proposals (dark: the best)", fontsize=10)
for box, score in sorted(zip(pred["boxes"], pred["scores"], strict=True), key=lambda b: b[1]):
    x1, y1, x2, y2 = box
    axes[1].add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5,
                                        edgecolor=plt.get_cmap("plasma")(float(score))))
axes[1].set_title(f"all {len(pred['scores'])} detections (colour: score 0 to 1)", fontsize=10)
heat = pred["masks"][kept, 0].max(axis=0) if kept.any() else np.zeros(im.shape[:2])
shown_heat = axes[2].imshow(heat, cmap="magma", vmin=0, vmax=1)
axes[2].set_title(f"mask probabilities of the {int(kept.sum())} detections >= 0.5", fontsize=10)
fig.colorbar(shown_heat, ax=axes[2], fraction=0.046)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# A trained RPN's best proposals crowd on the shapes, several per shape; the box head scores
# them, refines them, and per-class NMS should leave one confident box per shape, with a trail of
# low-scoring detections (the 0.05 threshold is low on purpose: evaluation wants the whole
# ranking, section 7.5). A trained mask head's probabilities are close to 0 or 1, soft only along
# the edges of the shapes.

# %% [markdown]
# ## 7.5 COCO evaluation
#
# `evaluate_model(model, dataset)` runs the model on every image of a `CocoDataset` and scores
# the detections against `dataset.coco` with pycocotools' `COCOeval`, once with box overlaps
# (`bbox`) and once with mask overlaps (`segm`), and prints COCO's standard table for each:

# %%
start = time.perf_counter()
metrics, outputs = evaluate_model(trained, test_set, progress=False)
print(f"\n{len(test_set)} images, {sum(len(o['scores']) for o in outputs)} detections, "
      f"{time.perf_counter() - start:.1f} s")

# %% [markdown]
# How the numbers are made, for one IoU threshold `t` and one class:
#
# 1. All the class's detections in all images are sorted by score. Going down that list, each
#    detection is matched to the not yet matched ground-truth object of its image that it
#    overlaps most, if their **IoU** (intersection over union, of boxes for `bbox`, of masks for
#    `segm`) is at least `t`: a true positive. Otherwise it is a false positive (or ignored, if
#    it lies on a crowd region).
# 2. After each detection, **precision** is the fraction of the detections so far that are true
#    positives, **recall** the fraction of the ground-truth objects found so far. Lowering the
#    score threshold trades precision for recall: that is the precision-recall curve.
# 3. **AP** (average precision) is the area under that curve: the mean of the (interpolated)
#    precision at 101 recall levels 0, 0.01, ..., 1.
#
# The table then averages:
#
# - **AP**: over the 10 IoU thresholds 0.50, 0.55, ..., 0.95 and over the classes. It rewards
#   boxes and masks that fit tightly, not only ones in the right place; this is COCO's main
#   number, often written AP@[.5:.95].
# - **AP50**, **AP75**: at one threshold each. AP50 is the PASCAL VOC measure (a box that covers
#   the object roughly is enough); AP75 asks for a close fit.
# - **APs**, **APm**, **APl**: AP over objects of area below 32², 32² to 96² and above 96²
#   pixels (detections and objects outside the range are left out). A value of -1 means there is
#   no object of that size in the data: the shapes of these 128 x 128 images are all small or
#   medium (counted below).
# - **AR1**, **AR10**, **AR100**: average recall, the largest recall reached when only the 1,
#   10 or 100 best detections of each image count, averaged over the IoU thresholds and the
#   classes. AR100 says how many objects the model finds at all; **ARs/m/l** split it by area.

# %%
areas = np.array([a["area"] for a in test_set.coco.dataset["annotations"]])
print(f"ground-truth objects: {len(areas)}; small (< 32^2): {np.sum(areas < 32**2)}, medium: "
      f"{np.sum((areas >= 32**2) & (areas < 96**2))}, large (>= 96^2): {np.sum(areas >= 96**2)}")

# %% [markdown]
# The precision-recall curves behind the table: `COCOeval` keeps, after `accumulate()`, the
# precision at every IoU threshold, recall level, class, area range and detection limit. Below,
# the mean over the three classes, for all areas and up to 100 detections per image, at three
# IoU thresholds; AP50 and AP75 are the areas under the first two curves (checked in the code).

# %%
results = to_coco_results(outputs, test_set.image_ids, category_ids=test_set.category_ids)
curves = {}
for iou_type in ("bbox", "segm"):
    if not results:
        break  # nothing detected: no curve to draw
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        evaluator = COCOeval(test_set.coco, test_set.coco.loadRes([dict(r) for r in results]), iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, 2]  # (10 IoUs, 101 recalls, K, area all, 100 dets)
    precision = np.where(precision < 0, np.nan, precision)  # -1: a class without objects
    curves[iou_type] = np.nanmean(precision, axis=2)  # (10, 101): the mean over the classes
    for t, name in ((0, "AP50"), (5, "AP75")):
        assert np.isclose(np.nanmean(precision[t]), metrics[iou_type][name]), (iou_type, name)
recall_levels = evaluator.params.recThrs if curves else None

# %% tags=["hide-input"]
if curves:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), sharey=True)
    for ax, (iou_type, curve) in zip(axes, curves.items(), strict=False):
        for t, colour in ((0, "tab:green"), (5, "tab:blue"), (8, "tab:red")):
            iou = 0.5 + 0.05 * t
            ax.plot(recall_levels, curve[t], color=colour, lw=2,
                    label=f"IoU {iou:.2f}: AP {np.nanmean(curve[t]):.3f}")
        ax.set(xlabel="recall", title=f"{iou_type}: precision-recall, mean over the classes", xlim=(0, 1.01),
               ylim=(0, 1.03))
        ax.legend(fontsize=9, loc="lower left")
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# A curve that stays near the top until it drops at the right means: the high-scoring
# detections are right, and the drop is where the objects the model cannot find begin. The
# stricter the threshold, the lower the curve: boxes and masks found in the right place but
# drawn a few pixels off stop counting. Comparing the `bbox` and `segm` curves at the same
# threshold shows whether the masks or the boxes are the weaker part.
#
# The demo measured the same numbers on its 100 held-out images, of which these 40 are the
# first; they are stored in the weights file (`model.metrics`). Side by side:

# %%
stored = trained.metrics
if stored is None:
    print("this weights file stores no metrics")
else:
    print(f"{'':<6} {'bbox, 40':>9} {'bbox, 100':>10} {'segm, 40':>9} {'segm, 100':>10}")
    for name in STAT_NAMES:
        print(f"{name:<6} {metrics['bbox'][name]:9.3f} {stored['bbox'][name]:10.3f} "
              f"{metrics['segm'][name]:9.3f} {stored['segm'][name]:10.3f}")

# %% [markdown]
# The two columns of each kind should be close, not equal: 40 images are a smaller sample of the
# same distribution. The gaps between the rows are the interesting part: between AP50 and AP, how
# much is lost to a loose fit; between `bbox` and `segm`, how much the masks lose to the boxes.
# For scale: on COCO's photographs, torchvision's pretrained `maskrcnn_resnet50_fpn` reaches a
# box AP of 0.379 and a mask AP of 0.346. Synthetic shapes on flat backgrounds are far easier.

# %% [markdown]
# ## 7.6 Failure cases
#
# The table says how often the model is wrong, not how. To see that, match each image's
# detections (score at least 0.5) to its objects by mask IoU, the way COCO matches at IoU 0.5
# but **ignoring the class**, so that a right mask with the wrong label shows up as a class
# confusion rather than as one miss and one false positive. Going down the detections by score:
#
# - matched to a free object with IoU >= 0.5: **correct**, or **wrong class**;
# - overlapping an object already matched: a **duplicate**;
# - overlapping nothing: a **false positive**;
#
# and the objects left unmatched are **missed**.

# %%
def match_image(pred, gt, score_thresh=0.5, iou_thresh=0.5):
    """Greedy class-agnostic matching of one image's detections to its objects by mask IoU.
    Returns {"errors": [...], "pairs": [(gt label, predicted label, IoU)], "missed": [gt index]}."""
    keep = np.flatnonzero(pred["scores"] >= score_thresh)  # already sorted by decreasing score
    G, H, W = gt["masks"].shape
    pm = (pred["masks"][keep, 0] >= 0.5).reshape(len(keep), H * W).astype(np.int64)  # (D, 1, H, W) -> (D, H*W)
    gm = gt["masks"].reshape(G, H * W).astype(np.int64)  # (G, H, W) -> (G, H*W)
    inter = pm @ gm.T  # (D, G) pixels in both
    iou = inter / np.maximum(pm.sum(1)[:, None] + gm.sum(1)[None, :] - inter, 1)  # (D, G)
    matched, errors, pairs = set(), [], []
    for d, label in enumerate(pred["labels"][keep]):
        free = [g for g in range(G) if g not in matched and iou[d, g] >= iou_thresh]
        if free:
            g = max(free, key=lambda g: iou[d, g])
            matched.add(g)
            pairs.append((int(gt["labels"][g]), int(label), float(iou[d, g])))
            if label != gt["labels"][g]:
                errors.append(f"{trained.classes[gt['labels'][g]]} called {trained.classes[label]}")
        elif (iou[d] >= iou_thresh).any():
            errors.append(f"duplicate {trained.classes[label]}")
        else:
            errors.append(f"false {trained.classes[label]}")
    missed = [g for g in range(G) if g not in matched]
    errors += [f"missed {trained.classes[gt['labels'][g]]}" for g in missed]
    return {"errors": errors, "pairs": pairs, "missed": missed}


matches = [match_image(out, test_set[i][1]) for i, out in enumerate(outputs)]
kinds = Counter("wrong class" if e.split()[0] in trained.classes else e.split()[0]  # "square called circle"
                for m in matches for e in m["errors"])
print(f"objects: {len(areas)}; found with the right class: "
      f"{sum(gl == pl for m in matches for gl, pl, _ in m['pairs'])}; errors: {dict(kinds)}")
print(f"images without any error: {sum(not m['errors'] for m in matches)} of {len(matches)}")

# %% [markdown]
# Which objects are found, by class, and with what label (rows: the true class; columns: the
# label of the matching detection, or none):

# %%
K = len(trained.classes)
confusion = np.zeros((K, K), dtype=int)  # (true label, predicted label); column 0: missed
for i, m in enumerate(matches):
    for gl, pl, _ in m["pairs"]:
        confusion[gl, pl] += 1
    for g in m["missed"]:
        confusion[test_set[i][1]["labels"][g], 0] += 1
corner = "true \\ found"
print(f"{corner:<13}" + "".join(f"{name if k else 'missed':>10}" for k, name in enumerate(trained.classes)))
for k in range(1, K):
    print(f"{trained.classes[k]:<13}" + "".join(f"{n:>10}" for n in confusion[k]))
ious = [iou for m in matches for gl, pl, iou in m["pairs"] if gl == pl]
if ious:
    print(f"mask IoU of the correct detections: median {np.median(ious):.3f}, lowest {min(ious):.3f}")
gt_area = [(test_set[i][1]["masks"][g].sum(), g in m["missed"]) for i, m in enumerate(matches)
           for g in range(len(test_set[i][1]["labels"]))]
missed_area = [a for a, missed in gt_area if missed]
if missed_area:
    print(f"median area of the missed objects: {np.median(missed_area):.0f} pixels, of all objects: "
          f"{np.median([a for a, _ in gt_area]):.0f}")

# %% [markdown]
# The four images with the most errors (ties broken by the lowest mean IoU of their matches),
# ground truth above, detections with a score of at least 0.5 below, the errors in the title:

# %%
def badness(i):
    m = matches[i]
    mean_iou = np.mean([iou for _, _, iou in m["pairs"]]) if m["pairs"] else 0.0
    return (-len(m["errors"]), mean_iou)


worst = sorted(range(len(matches)), key=badness)[:4]
for i in worst:
    print(f"image {test_set.image_ids[i]}: {'; '.join(matches[i]['errors']) or 'no error'}")

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 4, figsize=(12, 7.4), layout="constrained")
for k, i in enumerate(worst):
    im, gt = test_set[i]
    draw_instances(axes[0, k], im, gt, trained.classes, title=f"image {gt['image_id']}: ground truth")
    errors = matches[i]["errors"]
    caption = "\n".join(errors[:3] + ([f"... {len(errors) - 3} more"] if len(errors) > 3 else [])) or "no error"
    draw_instances(axes[1, k], im, outputs[i], trained.classes, score_thresh=0.5, title=caption)
plt.show()

# %% [markdown]
# What makes these images hard follows from how the data is made:
#
# - **Occlusion.** The demo lets a shape hide at most 30% of each earlier one
#   (`random_image(max_overlap=0.3)`) and annotates an object while at least half of it is
#   visible (`min_visible=0.5`); two or three shapes on top of one can still hide most of what
#   the annotation allows. A partly hidden object is easier to miss, and its label is harder: a
#   square's hidden corner and a triangle's look alike, while a circle's curved edge stays
#   recognisable from a small piece. The confusion matrix shows which pairs of classes the model
#   mixes up. (With `random_image`'s defaults, any overlap, 10% visibility and a colour distance of
#   0.3, many objects are slivers, and the same recipe reaches an AP50 of only about 0.7.)
# - **Split objects.** A later shape can cut an earlier one into two separate pieces: one
#   object, one mask, one box around both pieces. The model may find one piece (a low IoU, or a
#   miss), or both pieces as two detections: the second is a duplicate, or a false positive if
#   neither piece alone overlaps the whole enough.
# - **Clutter.** A shape hidden below the half is dropped from the annotations, but its visible
#   pixels stay in the image. Detecting it is right by eye and a false positive by the ground
#   truth.
# - **Similar colours.** Colours are drawn to differ from the background and from the shapes
#   drawn before, by a minimum distance (0.4 in the demo's data); two touching shapes of close colours have a weak edge
#   between them, and their masks may bleed into each other.
#
# None of this is specific to shapes: occlusion, objects in pieces, unlabelled objects and weak
# edges are the main sources of error on COCO too. Looking at the worst images of a held-out
# set, rather than only at the average, is how one finds out which of them a model suffers from,
# and whether more data, longer training or a larger model would help.

# %% [markdown]
# ## 7.7 One training step against torchvision
#
# The reference tests (`tests/reference/test_train.py`) check that three SGD steps of ours and
# of torchvision with `torch.optim` give the same parameters, batch-norm statistics and losses.
# Here is one such step, cheaply: the small configuration in float64 at 96 x 96.
# `mrcnn_np.reference.twins.twin_pair` builds torchvision's model of exactly our architecture
# with random weights and loads them into ours; `torchvision_optimizer` and
# `torchvision_train_step` (`mrcnn_np.reference.training`) are `torch.optim`'s twins of
# `make_optimizer` and `train_step`. Two details make the comparison exact:
#
# - torchvision *samples* anchors and RoIs at random; `train_step(..., return_sampled=True)`
#   returns the sample our step drew, and `mrcnn_np.reference.sampling.replay_sampling` replaces
#   torchvision's two samplers by functions that return it;
# - torchvision builds the RPN's labels in float32 whatever the model's dtype, so its objectness
#   loss has float32 precision; `replay_sampling` also gives them the model's dtype (with
#   `float64_labels`, of the same module).
#
# The images get a little noise: on a perfectly flat background, many anchors have exactly equal
# scores, and `torch.topk` orders exact ties in its own way.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    from mrcnn_np.reference.sampling import replay_sampling
    from mrcnn_np.reference.training import torchvision_optimizer, torchvision_train_step
    from mrcnn_np.reference.twins import targets_to_torch, to_torch, twin_pair
    from mrcnn_np.train import train_step

    start = time.perf_counter()
    twin_config = tiny(num_classes=4, min_size=96, max_size=96, dtype=np.float64)
    tv, ours = twin_pair(twin_config)
    noise = np.random.default_rng(0)
    images, targets = [], []
    for i in range(2):
        im, t = train_set[i]
        images.append(np.clip(im / 255 + noise.normal(0, 0.02, im.shape), 0, 1))  # (H, W, 3) float64
        targets.append({"boxes": t["boxes"].astype(np.float64), "labels": t["labels"], "masks": t["masks"]})
    one_step = TrainRecipe(iterations=1, batch_size=2, lr=0.02, warmup_iters=0, milestones=())
    optimizer, _ = make_optimizer(ours, one_step)
    tv_optimizer, _ = torchvision_optimizer(tv, one_step)
    ours.train()
    tv.train()
    losses, sampled = train_step(ours, optimizer, images, targets, rng=0, return_sampled=True)

    replay_sampling(tv, sampled)  # torchvision's samplers return the anchors and RoIs ours drew; float64 RPN labels
    tv_losses = torchvision_train_step(tv, tv_optimizer, to_torch(images, np.float64), targets_to_torch(targets))

    print(f"{'':<17} {'mrcnn_np':>12} {'torchvision':>12} {'difference':>10}")
    for name in losses:
        print(f"{name:<17} {losses[name]:12.8f} {tv_losses[name]:12.8f} {abs(losses[name] - tv_losses[name]):10.1e}")
    theirs = tv.state_dict()
    worst_rel = max(np.abs(v - theirs[k].numpy()).max() / max(np.abs(theirs[k].numpy()).max(), 1e-300)
                    for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked"))
    print(f"after the step, {len(theirs)} parameters and statistics: largest relative difference {worst_rel:.1e}")
    print(f"({time.perf_counter() - start:.1f} s)")
    assert all(abs(losses[k] - tv_losses[k]) < 1e-8 for k in losses) and worst_rel < 1e-8

# %% [markdown]
# The losses agree to about 1e-15 and every weight and batch-norm statistic after the step to
# the rounding of float64: the same sampled anchors and RoIs, the same five losses, the same
# gradients, the same SGD update. What makes the trained model work is therefore the recipe and
# the data, not anything in which `mrcnn_np` trains differently from torchvision.

# %%
print(f"chapter run time: {time.perf_counter() - chapter_start:.0f} s")

# %% [markdown]
# ## Summary
#
# - A COCO dataset is one JSON file with `images`, `annotations` (an `image_id`, a `category_id`,
#   a `bbox` as `[x, y, width, height]`, a `segmentation` as RLE or polygons, an `area` and
#   `iscrowd`) and `categories`. `CocoDataset` gives the model's layout: `xyxy` float32 boxes,
#   labels 1..K (0 is the background) and `(G, H, W)` uint8 masks.
# - RLE lists the lengths of the runs of a mask read column by column, starting with a run of
#   0s, and pycocotools compresses them into a string. Crowd regions (`iscrowd: 1`) are not
#   training targets but stay in the ground truth for evaluation.
# - `CocoDataset` checks the whole file when it is built. Each broken annotation becomes a
#   `DatasetProblem` that says what was done (skipped, or clipped), and `strict=True` turns any
#   problem into an error.
# - `TrainRecipe`'s defaults are torchvision's reference recipe scaled to 4 images per batch:
#   SGD with lr 0.005, momentum 0.9 and weight decay 1e-4, a linear warm-up over 100 iterations
#   from 0.001 times the peak, and steps down by 10 at iterations 750 and 920. The demo trains
#   for 2,100 iterations at a peak of 0.02.
# - Torchvision freezes its pretrained batch norms; the small model trains from scratch with
#   trainable `BatchNorm2d` in every layer, so its running statistics are part of its state.
# - A checkpoint holds the weights and batch-norm statistics, the momentum buffers and the
#   iteration, recipe and schedule. Resuming a 40-iteration run from iteration 30 gives the same
#   losses and the same weights, bit for bit.
# - COCO's AP is the area under the interpolated precision-recall curve (101 recall levels),
#   averaged over 10 IoU thresholds from 0.50 to 0.95 and over the classes. The table adds AP50,
#   AP75, AP by object size (below 32², up to 96², above) and AR at 1, 10 and 100 detections; -1
#   means there is no object of that size.
# - One float64 training step matches torchvision's: the losses agree to about 1e-15, and all
#   144 parameters and statistics afterwards to float64 rounding.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/07_training/`. `mrcnn-np check 07` grades it against `mrcnn_np`,
# torch and pycocotools; `mrcnn-np check 07 --hint` reveals the hints one at a time. The tasks:
#
# 1. `sgd_momentum_step`: one step of SGD with momentum and weight decay, against
#    `torch.optim.SGD`.
# 2. `warmup_lr`: the learning rate at any iteration (linear warm-up, then steps down), against
#    torch's `LinearLR` chained with `MultiStepLR`.
# 3. `average_precision`: COCO's box AP of one class at one IoU threshold (such as 0.5), with
#    crowd regions, worked out by hand and compared with pycocotools' `COCOeval`.
#
# Further questions:
#
# - PyTorch's momentum accumulates `v = m v + g` and steps by `lr * v`, while some papers step by
#   `v = m v + lr g`. When are the two the same, and what happens to each when the learning
#   rate drops at a milestone?
# - Why does AP stay the same if every score is squared, and what changes if two detections
#   swap places in the ranking?
# - A square detected with a good mask but labelled a triangle: how does COCOeval count it, and
#   how does section 7.6?
