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
# # 10. The paper's ablations
#
# Every chapter so far built Mask R-CNN the way the paper (He et al., "Mask R-CNN", 2017) and
# torchvision build it. The paper does not just state its design; it argues for it, one choice
# at a time, with ablations on COCO: change one thing, train again, compare the mask AP.
# Table 2 holds the mask branch's choices (2b: a per-class sigmoid against a softmax over the
# classes, and class-specific against class-agnostic masks; 2c: RoIAlign against RoIWarp and
# RoIPool; 2e: a small FCN against an MLP as the mask head), and Table 3 what the mask branch
# does for the boxes (Mask R-CNN against Faster R-CNN, the same detector without it).
#
# Each of these choices is a switch of `MaskRCNNConfig` here, and `mrcnn-np ablate` trains the
# demo's model once per switch and seed on the demo's shapes data. This chapter explains what
# each switch changes in the code, what the paper found and why, runs the sweep (at a budget
# that proves only that it runs), and reads the result of the full one.
#
# | Section | Ablation | Switch | In the code |
# |---|---|---|---|
# | 10.1 | all of them | `mrcnn_np.ablate.ABLATIONS` | `mrcnn_np/ablate.py`, `mrcnn_np/config.py` |
# | 10.2 | Table 2b: softmax over the classes | `mask_loss="softmax"` | `maskrcnn_loss` in `mrcnn_np/model/roi_heads.py` |
# | 10.3 | Table 2b: one mask for every class | `class_agnostic_masks=True` | `make_mask_predictor`, `maskrcnn_loss` |
# | 10.4 | Table 2c: RoIWarp, RoIPool | `roi_pooler="warp"`, `"pool"` | `mrcnn_np/ops/roi_warp.py`, `roi_pool.py`, `poolers.py` |
# | 10.5 | Table 2e: an MLP mask head | `mask_head="mlp"`, `mask_mlp_dim` | `MaskRCNNMLPHead`, `MaskRCNNMLPPredictor` |
# | 10.6 | Table 3: no mask branch | `mask_branch=False` | `RoIHeads.has_mask` |
# | 10.7 | run it yourself | `mrcnn-np ablate --budget short` | `mrcnn_np/cli.py`, `run_ablations` |
# | 10.8 | the full budget | `mrcnn-np ablate --budget full` | `results/ablations.json` |

# %%
import contextlib
import io
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

from mrcnn_np import cli
from mrcnn_np.ablate import ABLATIONS, BUDGETS, config_for, format_table
from mrcnn_np.autograd import Tensor
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.data.shapes import SHAPES, shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import maskrcnn_loss, project_masks_on_boxes
from mrcnn_np.ops.poolers import level_of_boxes
from mrcnn_np.ops.roi_align import roi_align
from mrcnn_np.ops.roi_pool import roi_pool
from mrcnn_np.ops.roi_warp import roi_warp

chapter_start = time.perf_counter()
CLASSES = ("background", *SHAPES)  # the demo's labels: 0 background, 1 square, 2 circle, 3 triangle

# %% [markdown]
# ## 10.1 The ablations and their switches
#
# `mrcnn_np.ablate.ABLATIONS` lists the experiments: a name, what changes, the `MaskRCNNConfig`
# fields it overrides on top of the demo's configuration, and the paper's numbers for it (the
# table, the metric, the paper's baseline and its value for the variant, and the model they were
# measured on). The switches, each defaulting to the paper's (and torchvision's) choice:
#
# - `mask_loss`: `"sigmoid"` (a binary cross-entropy on the true class's mask) or `"softmax"`
#   (a softmax over the classes at every pixel);
# - `class_agnostic_masks`: `False` (one mask per class) or `True` (one mask for all);
# - `roi_pooler`: `"align"` (RoIAlign), `"warp"` (RoIWarp) or `"pool"` (RoIPool), for the box and
#   the mask pooler alike;
# - `mask_head`: `"fcn"` (four 3x3 convs and a deconvolution) or `"mlp"` (fully connected
#   layers, `mask_mlp_dim` wide);
# - `mask_branch`: `True` (Mask R-CNN) or `False` (Faster R-CNN).
#
# The table below is printed from `ABLATIONS` itself:

# %%
print(f"{'ablation':<15} {'switch (MaskRCNNConfig fields)':<40} paper: variant vs baseline")
for a in ABLATIONS:
    switch = ", ".join(f"{k}={v!r}" for k, v in a.overrides.items()) or "(the demo's configuration)"
    p = a.paper
    paper = (f"{p['variant']} vs {p['baseline']} {p['metric']} (Table {p['table']}, {p['model']})" if p
             else "the reference every variant is compared with")
    print(f"{a.name:<15} {switch:<40} {paper}")

# %% [markdown]
# The paper's numbers come from three different models (ResNet-50-C4 for Tables 2b and 2c,
# ResNet-50-FPN for 2e, ResNet-101-FPN for Table 3), so each variant is compared with its own
# baseline, never across rows. Ours come from one tiny FPN model on 128x128 images of three
# shapes, so only the *direction* of each difference, and its size next to the spread across
# seeds, can be compared with the paper's; the values cannot.
#
# **Table 2d is not included.** It compares RoIAlign with RoIPool on a ResNet-50-**C5** model,
# whose RoIs are pooled from the stride-32 output of res5, where a rounding error of half a
# feature pixel is 16 image pixels. The library builds FPN and C4 (stride 16) models but no C5
# backbone, so that experiment has no switch here (`mrcnn_np/ablate.py`, its docstring).
#
# Every variant is the demo's model with its switch only (`config_for`); what changes in the
# model's size:

# %%
full = BUDGETS["full"]
models = {a.name: MaskRCNN(config_for(a, full), rng=0) for a in ABLATIONS}


def n_params(module) -> int:
    return sum(p.size for p in module.parameters())


def mask_branch_params(model) -> int:
    heads = model.roi_heads
    return n_params(heads.mask_head) + n_params(heads.mask_predictor) if heads.has_mask() else 0


print(f"{'ablation':<15} {'model':>10} {'mask head + predictor':>22}")
for name, m in models.items():
    print(f"{name:<15} {n_params(m):>10,} {mask_branch_params(m):>22,}")

# %% [markdown]
# ## 10.2 A softmax over the classes (Table 2b)
#
# The mask head predicts K masks per RoI, one per class. With `mask_loss="sigmoid"` (the
# paper's choice), `maskrcnn_loss` (`mrcnn_np/model/roi_heads.py`) takes, for each positive RoI,
# the channel of **its ground-truth class** only and its binary cross-entropy with the target
# (chapter 5, section 5.8); the other channels get no loss and no gradient. With
# `mask_loss="softmax"` it puts a softmax over the K channels at every pixel and a
# cross-entropy with a distribution per pixel: the target `t` on the true class, `1 - t` on
# channel 0 (the background), 0 on the other classes. At inference the model reads the
# predicted class's channel either way (through a sigmoid, or the softmax over the channels).
#
# The difference is what the loss asks of the other classes' channels. Two constructed
# predictions for the ground-truth boxes of one held-out image, identical in the true class's
# channel and the background channel: **A** draws the object's mask in every class's channel
# (a mask head that draws shapes and leaves the class to the box branch), **B** draws it in the
# true class's channel only and says "not this class" (-8) everywhere else.

# %%
demo = DemoSettings()
held_out = shapes_dataset(demo.test_images, seed=demo.seed + 1, **demo.data())  # the demo's held-out images
_, target = held_out[0]
gt_boxes, gt_labels, gt_masks = target["boxes"], target["labels"], target["masks"]  # (G, 4), (G,), (G, H, W)
G, K, M = len(gt_boxes), len(CLASSES), 28
rows = np.arange(G)  # each box is its own ground truth's: matched index = row
mask_targets = project_masks_on_boxes(gt_masks, gt_boxes.astype(np.float32), rows, M)  # (G, 28, 28), as the loss's
shape_logits = 8 * (mask_targets - 0.5)  # (G, 28, 28): a confident, correct mask
draws = {"A: the mask in every class's channel": np.repeat(shape_logits[:, None], K, axis=1),
         "B: the mask in the true class's channel only": np.full((G, K, M, M), -8.0, dtype=np.float32)}
for logits in draws.values():
    logits[:, 0] = -shape_logits  # the background channel: the complement of the mask
    logits[rows, gt_labels] = shape_logits
print("objects:", [CLASSES[c] for c in gt_labels])
wrong = np.ones((G, K), dtype=bool)
wrong[rows, gt_labels] = False
wrong[:, 0] = False  # the channels of the other *object* classes
inside = mask_targets > 0.5  # (G, 28, 28): the object's pixels
losses = {}
for name, logits in draws.items():
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # (G, K, 28, 28)
    print(f"{name}: the softmax gives the true class {softmax[rows, gt_labels][inside].mean():.2f} of each object "
          "pixel on average")
    for loss_kind in ("sigmoid", "softmax"):
        x = Tensor(logits.astype(np.float32), requires_grad=True)
        loss = maskrcnn_loss(x, [gt_boxes], [gt_masks], [gt_labels], [rows], mask_loss=loss_kind)
        loss.backward()
        losses[name[0], loss_kind] = loss.item()
        share = np.abs(x.grad[wrong]).sum() / np.abs(x.grad).sum()
        print(f"  {loss_kind:<8} loss {loss.item():.4f}; share of the gradient on the other classes' channels "
              f"{100 * share:.1f}%")
print("the sigmoid losses of A and B are equal:", losses["A", "sigmoid"] == losses["B", "sigmoid"])

# %% [markdown]
# The sigmoid loss is the same to the last bit for A and B, and it sends no gradient to the
# other classes' channels: the mask head may draw a triangle under "circle" as well, because
# the box branch's classifier decides which channel is read. The softmax loss charges A for
# every object pixel where the other classes' channels are as confident as the true one (the
# true class gets only a third of the probability there), and most of its gradient goes to
# pushing those channels down. So with a softmax the mask head has to *classify* every pixel
# as well as segment it, and the classes compete for it. The paper calls the sigmoid's
# independence "decoupling" mask and class prediction, and measures the softmax at 24.8
# against 30.3 mask AP (Table 2b): the competition costs most where classes look alike, and
# COCO has 80 of them.

# %% [markdown]
# ## 10.3 One mask for every class (Table 2b)
#
# With `class_agnostic_masks=True`, `make_mask_predictor` gives the mask predictor one output
# channel instead of K, and `maskrcnn_loss` takes channel 0 for every RoI; at inference that one
# mask is the mask of whatever class the box branch predicts. The mask head now predicts "the
# object in this box" without knowing its class. It saves only the last 1x1 convolution's
# channels:

# %%
for name in ("baseline", "class_agnostic"):
    predictor = models[name].roi_heads.mask_predictor
    print(f"{name:<15} mask_fcn_logits {predictor.mask_fcn_logits.weight.shape}, predictor {n_params(predictor):,} "
          "parameters")

# %% [markdown]
# The paper finds class-agnostic masks "nearly as effective": 29.7 against 30.3 mask AP. The
# box decides the class; inside a box, the object is usually the thing in the middle, and its
# outline is much the same task whatever the class. The 0.6 points are what knowing the class
# adds (a person's mask and a horse's have different likely shapes). This is the other half of
# the decoupling argument: the masks do not need to compete (10.2), and they barely need the
# class at all.

# %% [markdown]
# ## 10.4 RoIAlign, RoIWarp and RoIPool (Table 2c)
#
# `roi_pooler` picks the op with which both poolers (`MultiScaleRoIAlign` in
# `mrcnn_np/ops/poolers.py`, `_pool_level`) read each RoI's bins from its FPN level:
#
# - **RoIAlign** (`mrcnn_np/ops/roi_align.py`, chapter 4): the box as it is, equal bins, each
#   the average of 2x2 bilinearly interpolated points;
# - **RoIWarp** (`mrcnn_np/ops/roi_warp.py`, from Dai et al.'s MNC): the box's corners rounded
#   to whole feature pixels, then the bins sampled bilinearly, as RoIAlign samples them (it *is*
#   RoIAlign of the rounded box);
# - **RoIPool** (`mrcnn_np/ops/roi_pool.py`, Fast R-CNN): the corners rounded, the bins cut at
#   whole pixels too, and each bin's maximum.
#
# Where the three read one box of the held-out image, on P2. The sample points are measured
# with the ops themselves: pooled from a map whose channels hold each pixel's own column and
# row, RoIAlign and RoIWarp return the positions of their sample points (bilinear interpolation
# reproduces a linear function exactly; a `2n x 2n` output with one point per bin gives the
# 2x2 points of each of the `n x n` bins), and RoIPool's maxima of the column map and of its
# negative give each bin's last and first column (chapter 4, section 4.2). As in chapter 4,
# feature pixel `j` sits at coordinate `j` and a box corner is multiplied by the scale.

# %%
STRIDE = 4  # P2
N_BINS = 7  # the box pooler's output (the mask pooler's is 14x14)
side = 128 // STRIDE + 2  # P2 of a 128x128 image is 32x32; two pixels more, so no sample falls off its edge
row_map, col_map = np.mgrid[0:side, 0:side].astype(np.float32)
coords = np.stack([col_map, row_map])[None]  # (1, 2, side, side)


def sample_points(pool, boxes, n=N_BINS):
    """Columns and rows of the 2x2 sample points of each of the n x n bins: two arrays (R, 2n)."""
    out = pool(coords, [boxes], 2 * n, 1 / STRIDE, sampling_ratio=1).data  # (R, 2, 2n, 2n)
    return out[:, 0, 0, :], out[:, 1, :, 0]


def box_of(xs, ys):
    """The box (x1, y1, x2, y2) whose bins have the sample points ``xs``, ``ys`` (2n each, evenly spaced)."""
    half_x, half_y = xs[1] - xs[0], ys[1] - ys[0]  # half a bin
    return np.array([xs[0] - half_x / 2, ys[0] - half_y / 2, xs[-1] + half_x / 2, ys[-1] + half_y / 2])


def pool_bins(boxes, n=N_BINS):
    """First and last column and row of each RoIPool bin: four arrays (R, n)."""
    signed = np.concatenate([coords, -coords], axis=1)  # (1, 4, side, side): column, row, -column, -row
    out = roi_pool(signed, [boxes], n, 1 / STRIDE).data  # (R, 4, n, n)
    return -out[:, 2, 0, :], out[:, 0, 0, :], -out[:, 3, :, 0], out[:, 1, :, 0]


box = gt_boxes[:1].astype(np.float32)  # (1, 4): the image's first object, in image pixels
exact = box[0] / STRIDE
points = {"RoIAlign": sample_points(roi_align, box), "RoIWarp": sample_points(roi_warp, box)}
x_first, x_last, y_first, y_last = pool_bins(box)
print(f"{CLASSES[gt_labels[0]]}: box {np.round(box[0], 1)} in image pixels, {np.round(exact, 2)} on P2")
for name, (xs, ys) in points.items():
    print(f"{name}'s box on P2, from its sample points: {np.round(box_of(xs[0], ys[0]), 2)}")
print("RoIPool's bins, columns:", [f"{a:.0f}-{b:.0f}" for a, b in zip(x_first[0], x_last[0], strict=True)])
print("RoIPool's bins, rows:   ", [f"{a:.0f}-{b:.0f}" for a, b in zip(y_first[0], y_last[0], strict=True)])

# %% tags=["hide-input"]
def outline(ax, x1, y1, x2, y2, **kwargs):
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **kwargs))


x_lim, y_lim = (exact[0] - 1.5, exact[2] + 1.5), (exact[1] - 1.5, exact[3] + 1.5)
fig, axes = plt.subplots(1, 3, figsize=(12, 5.8))
for ax, name in zip(axes, ("RoIAlign", "RoIWarp"), strict=False):
    xs, ys = points[name]
    x1, y1, x2, y2 = box_of(xs[0], ys[0])
    for edge in np.linspace(0, 1, N_BINS + 1):  # the bins' edges
        ax.plot([x1 + edge * (x2 - x1)] * 2, [y1, y2], color="tab:blue", lw=0.8)
        ax.plot([x1, x2], [y1 + edge * (y2 - y1)] * 2, color="tab:blue", lw=0.8)
    grid_x, grid_y = np.meshgrid(xs[0], ys[0])
    ax.plot(grid_x.ravel(), grid_y.ravel(), "o", color="tab:red", ms=2.5, mew=0)
    ax.set_title(f"{name}: 7x7 bins, 2x2 points each", fontsize=10)
ax = axes[2]
readers = np.zeros((side, side), dtype=int)  # how many of the 49 bins read each pixel
for bin_y in range(N_BINS):
    for bin_x in range(N_BINS):
        rows_read = slice(int(y_first[0, bin_y]), int(y_last[0, bin_y]) + 1)
        readers[rows_read, int(x_first[0, bin_x]) : int(x_last[0, bin_x]) + 1] += 1
ax.imshow(np.ma.masked_equal(readers, 0), cmap="Oranges", vmin=0, vmax=readers.max() + 1,
          extent=(-0.5, side - 0.5, side - 0.5, -0.5))
for (row, col), n in np.ndenumerate(readers):
    if n:
        ax.text(col, row, n, ha="center", va="center", fontsize=7, zorder=3)
outline(ax, x_first[0, 0] - 0.5, y_first[0, 0] - 0.5, x_last[0, -1] + 0.5, y_last[0, -1] + 0.5,
        edgecolor="tab:orange", lw=2)
ax.set_title("RoIPool: how many bins read each pixel\n(bins of whole pixels; neighbours share one)", fontsize=10)
for ax in axes:
    for v in np.arange(-0.5, side):  # the feature pixels' cells: pixel j sits at coordinate j
        ax.axvline(v, color="lightgray", lw=0.6, zorder=0)
        ax.axhline(v, color="lightgray", lw=0.6, zorder=0)
    outline(ax, *exact, edgecolor="black", lw=1.4, ls="--")
    ax.set_xlim(*x_lim)
    ax.set_ylim(y_lim[1], y_lim[0])
    ax.set_aspect("equal")
    ax.set_xlabel("P2 column")
axes[0].set_ylabel("P2 row")
fig.suptitle(f"One {CLASSES[gt_labels[0]]} of the held-out image on P2 (stride {STRIDE}); dashed: the exact box",
             fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# RoIWarp keeps RoIAlign's even sampling, but of a box moved by up to half a feature pixel at
# each corner. RoIPool's bins are whole pixels: the rounded box is 9 pixels wide and 13 high
# (the last pixel included) for 7 bins each way, so most neighbouring bins share a column or
# a row, and a pixel can be the maximum of up to four bins. How far off, for every object of the
# demo's 100 held-out images: the distance of each bin's centre (the mean of its sample points,
# or the middle of RoIPool's pixels) from the exact bin's centre, in image pixels, and which FPN
# level each object is pooled from.

# %%
all_boxes = [t["boxes"] for _, t in (held_out[i] for i in range(len(held_out)))]
boxes = np.concatenate(all_boxes).astype(np.float32)  # (B, 4)
levels, counts = np.unique(level_of_boxes(all_boxes), return_counts=True)
sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
print(f"{len(boxes)} objects, sqrt(area) {sizes.min():.0f} to {sizes.max():.0f} pixels (median {np.median(sizes):.0f});"
      f" pooled from: {', '.join(f'P{k}: {n}' for k, n in zip(levels, counts, strict=True))}")
bin_w = (boxes[:, 2] - boxes[:, 0]) / N_BINS
exact_centres = boxes[:, :1] + (np.arange(N_BINS) + 0.5) * bin_w[:, None]  # (B, 7) columns, image pixels
centres = {name: (xs[:, 0::2] + xs[:, 1::2]) / 2 * STRIDE
           for name, (xs, _) in ((n, sample_points(f, boxes)) for n, f in (("RoIAlign", roi_align),
                                                                          ("RoIWarp", roi_warp)))}
x_first, x_last, _, _ = pool_bins(boxes)
centres["RoIPool"] = (x_first + x_last) / 2 * STRIDE
misalignment = {}
for name, c in centres.items():
    error = np.abs(c - exact_centres)  # (B, 7) image pixels
    misalignment[name] = error.mean()
    print(f"{name:<8} bin centres off by {error.mean():.2f} image pixels on average, {error.max():.2f} at most; "
          f"{100 * (error.mean(axis=1) / sizes).mean():.1f}% of the object's size")

# %% [markdown]
# RoIAlign's bins sit where they should (its 0.00 is the check of the method). RoIWarp's and
# RoIPool's are off by about one image pixel on average (at most 2 and about 4), **about 2% of
# an object's size**. The paper found
# quantisation costing about 3 mask AP on its stride-16 C4 model (27.2 and 26.9 against 30.3,
# Table 2c), more at the strict IoU threshold of AP75, and more again at stride 32 (Table 2d).
# Two things make the shapes data a mild test: every object here is pooled from P2, the finest
# level, where half a feature pixel is 2 image pixels (in the paper's C4 model every RoI is
# pooled at stride 16, and in C5 at 32), and the objects are large next to that. Whether the
# max of RoIPool against the average of RoIWarp matters is a separate question; the paper
# found it does not (27.2 with the max, 27.1 with the average).

# %% [markdown]
# ## 10.5 An MLP mask head (Table 2e)
#
# `mask_head="mlp"` replaces the FCN (`MaskRCNNHeads`: four 3x3 convs at 14x14, a 2x2
# deconvolution to 28x28, a 1x1 conv to K masks) by `MaskRCNNMLPHead` and `MaskRCNNMLPPredictor`:
# the pooled `(C, 14, 14)` RoI flattened, two fully connected layers of `mask_mlp_dim` with ReLU,
# and a last one to `K x 28 x 28` logits. The paper's is 1024 wide on 256 channels; ours
# (`ABLATIONS`) is 256 wide on 64 channels (the FPN of the demo's model when the sweep was made,
# `demo.EARLIER_WIDTHS`, which every ablation keeps; the demo's is 32 now). The two mask
# branches of the ablations' model, and of the paper's size (computed from `MaskRCNNConfig`'s defaults, torchvision's 91
# classes):

# %%
for name in ("baseline", "mlp_mask_head"):
    heads = models[name].roi_heads
    layers = {k: int(np.prod(v.shape)) for k, v in [*heads.mask_head.state_dict().items(),
                                                   *heads.mask_predictor.state_dict().items()] if "weight" in k}
    print(f"{name:<14} {mask_branch_params(models[name]):>10,} parameters; weights: "
          + ", ".join(f"{k} {v:,}" for k, v in layers.items()))
ratio = mask_branch_params(models["mlp_mask_head"]) / mask_branch_params(models["baseline"])
print(f"the MLP's mask branch has {ratio:.0f} times the FCN's parameters")
c = MaskRCNNConfig()
pooled = c.fpn_channels * c.mask_roi_output_size**2  # 256 x 14 x 14 inputs per RoI
mlp = ((pooled + 1) * c.mask_mlp_dim + (c.mask_mlp_dim + 1) * c.mask_mlp_dim
       + (c.mask_mlp_dim + 1) * c.num_classes * (2 * c.mask_roi_output_size) ** 2)
print(f"paper's size: the MLP mask head and predictor have {mlp:,} parameters")

# %% [markdown]
# The FCN's weights are small filters shared over every position: it keeps the RoI's spatial
# layout, and a shape moved inside the box moves its mask with it (chapter 9, section 9.3). The
# MLP has one weight from every pooled input to every hidden unit and from every hidden unit to
# every output pixel: about 80 times the FCN's parameters here, with nothing that ties the
# mask's layout to the input's but what it learns. The paper's FCN gets 33.6 mask AP against
# the MLP's 31.5 (ResNet-50-FPN, Table 2e). Its reason for the FCN (sec. 3): each layer keeps
# "the explicit m x m object spatial layout without collapsing it into a vector representation
# that lacks spatial dimensions".

# %% [markdown]
# ## 10.6 Without the mask branch (Table 3)
#
# `mask_branch=False` is Faster R-CNN: `RoIHeads` without the mask pooler, head and predictor
# (`has_mask()` False), the same backbone, RPN and box head. The mask loss's gradient reaches
# the box branch only through what they share, the backbone and the FPN (through RoIAlign's
# backward), so removing it changes the features the boxes are read from, not the box head.

# %%
for name in ("baseline", "no_mask_branch"):
    print(f"{name:<15} has_mask() {models[name].roi_heads.has_mask()!s:<5} {n_params(models[name]):>10,} parameters")

# %% [markdown]
# The paper's Table 3 lists Faster R-CNN with RoIAlign at 37.3 box AP and Mask R-CNN at 38.2
# (ResNet-101-FPN, the same training otherwise): learning the masks as well improves the boxes,
# by 0.9 points, which the paper credits to multi-task training. It is the smallest effect of
# all the ablations, the hardest to see through the noise of a few seeds.

# %% [markdown]
# ## 10.7 Run it yourself
#
# `mrcnn-np ablate` runs every ablation with every seed of a budget (`mrcnn_np/ablate.py`,
# `BUDGETS`): it writes the demo's data once to `OUT/data`, trains and evaluates each variant
# (`OUT/NAME-seedS/metrics.json`, read back instead of trained again if it is there), and after
# every run writes everything to `OUT/ablations.json`. The cell below runs it in this kernel,
# exactly as the command line would, with the **short** budget:

# %%
print({name: asdict(b) for name, b in BUDGETS.items()})
scratch = tempfile.TemporaryDirectory(prefix="ablate-short-")  # removed below, or when the kernel exits
tmp_dir = Path(scratch.name)
printed = io.StringIO()
start = time.perf_counter()
with contextlib.redirect_stdout(printed):  # kept, to compare with the JSON below
    status = cli.main(["ablate", "--budget", "short", "--out", str(tmp_dir), "--no-progress"])
short_seconds = time.perf_counter() - start
print(printed.getvalue(), end="")
print(f"exit status {status}, {short_seconds:.0f} s")

# %% [markdown]
# **The short budget proves only that everything runs**: 12 iterations on 16 images, evaluated
# on 8, at a smaller learning rate. Its APs are those of models that have barely started to
# learn and mean nothing; the table is the machinery's smoke test, not a result. What the run
# left behind:

# %%
short = json.loads((tmp_dir / "ablations.json").read_text())
print("files:", sorted(p.name for p in tmp_dir.iterdir()))
print("ablations.json:", list(short))
print("command:", short["command"])
print("budget:", short["budget"])
entry = short["ablations"][0]
print(f"one ablation ({entry['name']}):", list(entry), "; one run:", list(entry["runs"][0]),
      "; its metrics:", {kind: list(m)[:3] + ["..."] for kind, m in entry["runs"][0]["metrics"].items()})
assert printed.getvalue().startswith(format_table(short))  # the table is a function of the JSON
print("the table printed above is format_table(ablations.json)")
for e in short["ablations"]:
    print(f"  {e['name']:<15} training: " + ", ".join(f"seed {r['seed']} {r['train_seconds']:.1f} s" for r in e["runs"]))
scratch.cleanup()

# %% [markdown]
# ## 10.8 The full budget
#
# The full budget (`BUDGETS["full"]`, printed in 10.7) is the demo's recipe for every run, at the
# 2,100 iterations and the widths of the demo's model when these runs were made, a 64-channel FPN
# and a 32-channel mask head (it trains 2,100 iterations again now, with 32 and 16), with
# two seeds each: 14 trainings of about ten minutes each on two CPU cores. It is run once with
#
# ```
# mrcnn-np ablate --budget full
# ```
#
# which writes `runs/ablate/full/ablations.json`; that file is copied into this book as
# `results/ablations.json`, which this section reads. What it is, and where it was made:

# %%
record = json.loads(Path("results/ablations.json").read_text())
made, budget = record["provenance"], record["budget"]
print("produced by:", record["command"])
print(f"commit {made['commit']}{' (with uncommitted changes)' if made['uncommitted_changes'] else ''}, "
      f"{made['date']}")
print(f"Python {made['python']}, NumPy {made['numpy']}, Numba {made.get('numba', '-')}, "
      f"mrcnn-np {made['mrcnn-np']}; {made['platform']}, {made['cpus']} CPUs, load average {made['load_average']}")
print(f"budget {budget['name']!r}: {budget['iterations']} iterations, {budget['train_images']} training and "
      f"{budget['test_images']} held-out images, seeds {budget['seeds']}, lr {record['settings']['lr']}")
train_minutes = sum(r["train_seconds"] for e in record["ablations"] for r in e["runs"]) / 60
print(f"training: {train_minutes:.0f} minutes over the {sum(len(e['runs']) for e in record['ablations'])} runs; "
      f"the last invocation {record['seconds'] / 60:.0f} minutes (it read back the runs finished before)")
print()
print(format_table(record))

# %% [markdown]
# Each ablation's mask AP and box AP (COCO AP over IoU 0.5 to 0.95, x100): one dot per seed,
# their mean as a bar, and the baseline's mean as a dashed line across. The y axes span only
# the values, so that differences of a point or less, and the seeds' spread, can be seen.

# %% tags=["hide-input"]
ablations = record["ablations"]
names = [e["name"] for e in ablations]
baseline = next(e for e in ablations if e["name"] == "baseline")
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
for ax, kind, title in ((axes[0], "segm", "mask AP"), (axes[1], "bbox", "box AP")):
    shown = []
    for i, e in enumerate(ablations):
        if kind not in e["summary"]:
            ax.text(i, 0.5, "no masks", rotation=90, ha="center", va="center", fontsize=9, color="gray",
                    transform=ax.get_xaxis_transform())  # x in data, y in axes coordinates
            continue
        s = e["summary"][kind]["AP"]
        values = 100 * np.asarray(s["values"])
        colour = "gray" if e is baseline else "tab:blue"
        ax.hlines(100 * s["mean"], i - 0.3, i + 0.3, color=colour, lw=3, label="mean of the seeds" if i == 1 else None)
        ax.plot(i + np.linspace(-0.12, 0.12, len(values)), values, "o", color="black", ms=5,
                label="one seed" if i == 1 else None)
        shown.extend(values)
    ax.axhline(100 * baseline["summary"][kind]["AP"]["mean"], color="tab:red", ls="--", lw=1, label="baseline mean")
    pad = max(0.5, 0.2 * (max(shown) - min(shown)))
    ax.set_ylim(min(shown) - pad, max(shown) + pad)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8.5)
    ax.set_ylabel(f"{title} x 100")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
axes[1].legend(fontsize=8, loc="best")
fig.suptitle(f"Budget {budget['name']!r}: {budget['iterations']} iterations, {budget['test_images']} held-out images, "
             f"seeds {budget['seeds']}", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# The comparison with the paper, for the metric the paper reports (mask AP, box AP for
# Table 3): our difference `variant - baseline` (x100), the paper's, and the spread. The
# **spread** is the larger of the two seed ranges (the largest minus the smallest value over
# the seeds), the variant's and the baseline's. The verdict is
#
# - **within the spread** when `|difference| <= spread`: the seeds disagree among themselves by
#   at least as much as the variant differs from the baseline, so the run cannot tell the
#   direction;
# - otherwise **same direction as the paper** when the difference has the paper's sign, and
#   **opposite** when it has the other.
#
# With two seeds this is a rough screen, not a significance test: two runs cannot estimate a
# spread well, and a difference just outside it could still be chance.

# %%
KIND = {"mask AP": "segm", "box AP": "bbox"}


def seed_range(entry, kind) -> float:
    values = entry["summary"][kind]["AP"]["values"]
    return 100 * (max(values) - min(values))


def compare(record) -> list[dict]:
    """Per ablation with paper numbers: our difference from the baseline (x100), the paper's, the spread, a verdict."""
    base = next(e for e in record["ablations"] if e["name"] == "baseline")
    rows = []
    for e in record["ablations"]:
        p = e["paper"]
        if p is None:
            continue
        kind = KIND[p["metric"]]
        ours = 100 * (e["summary"][kind]["AP"]["mean"] - base["summary"][kind]["AP"]["mean"])
        paper = p["variant"] - p["baseline"]
        spread = max(seed_range(e, kind), seed_range(base, kind))
        verdict = ("within the spread" if abs(ours) <= spread
                   else "same direction as the paper" if np.sign(ours) == np.sign(paper) else "opposite")
        rows.append({"name": e["name"], "metric": p["metric"], "ours": ours, "paper": paper, "spread": spread,
                     "verdict": verdict})
    return rows


comparison = compare(record)
print(f"budget {budget['name']!r}, seeds {budget['seeds']}")
print(f"{'ablation':<15} {'metric':<8} {'ours':>7} {'paper':>7} {'spread':>7}  verdict")
for r in comparison:
    print(f"{r['name']:<15} {r['metric']:<8} {r['ours']:>+7.2f} {r['paper']:>+7.1f} {r['spread']:>7.2f}  {r['verdict']}")

# %% [markdown]
# ### What the full budget shows
#
# (x100, mean over the two seeds; the spread is the larger of the two seed ranges; numbers from
# `results/ablations.json` as printed above.)
#
# - **Softmax (Table 2b): the largest effect, in the paper's direction and far beyond it.** Mask
#   AP falls from 77.8 to 28.5 (seeds 33.4 and 23.6), mask AP50 from 94.7 to 50.9, while the box
#   AP stays where it was (72.3 against 73.9, within the seeds' spread): the boxes and classes
#   are found as before, and the masks read from the predicted class's softmax channel are
#   poor. The paper loses 5.5 points; here half the masks miss IoU 0.5. The ablations' mask head
#   (the demo's when they were run) is 32 channels wide and trains for 2,100 iterations at a
#   learning rate tuned for the sigmoid loss; under a softmax it has to learn to tell a square from a triangle at every pixel as well
#   as to segment, and in this budget it has not. How much of the gap a longer schedule or
#   another learning rate would close was not measured.
# - **Class-agnostic masks (Table 2b): lower, within the seeds' spread.** 73.6 against 77.8 mask
#   AP; but the two class-agnostic runs differ by 6.2 points (76.7 and 70.5), and their box AP
#   differs as much (73.4 and 65.6): the spread is the training's, not the masks'. The paper's
#   0.6 points could not show at this spread.
# - **RoIWarp (Table 2c): lower, beyond the spread.** 67.9 against 77.8 mask AP, and the box AP
#   falls as much (66.0 against 73.9): here the pooler is switched for the box head as well as
#   the mask head, as in the paper's table, and rounding each box to the 4-pixel grid of P2
#   moves each of its sides by up to 2 pixels, several percent of a 30-pixel object (10.4). The loss shows most at the
#   strict thresholds (mask AP75 82.8 against 89.6; AP50 90.8 against 94.7), as the paper found.
#
# - **RoIPool (Table 2c): lower, beyond the spread, at the strict thresholds.** 68.4 against
#   77.8 mask AP (seeds 67.7 and 69.1), 69.9 against 73.9 box AP. At IoU 0.5 RoIPool is no worse
#   than RoIAlign (mask AP50 96.2 against 94.7, box AP50 97.2 against 94.7); at 0.75 it is
#   clearly worse (mask AP75 82.1 against 89.6): its maxima over whole-pixel bins find the
#   objects as well, and place their outlines less exactly, the pattern of the paper's Table 2c.
#   RoIPool and RoIWarp end close together (68.4 and 67.9), as in the paper (26.9 and 27.2), but
#   each about 10 points below RoIAlign instead of the paper's 3 (a likely reason, not measured:
#   on P2 a rounding of up to 2 pixels is several percent of a 27-to-97-pixel shape). (The
#   RoIPool runs were the slowest to train, 1,343 s for seed 0 against 529 to 616 s for the seed-0
#   runs of softmax, class_agnostic and roi_warp: `ops/roi_pool.py` is a NumPy loop with no fast
#   kernel. The machine's load varied over the sweep, so the JSON's times are not a benchmark.)
# - **An MLP mask head (Table 2e): lower, beyond the spread, in the paper's direction and
#   larger.** 70.3 against 77.8 mask AP (seeds 71.5 and 69.0); the paper's MLP loses 2.1 points
#   (31.5 against 33.6). Again the loss is at the strict threshold: mask AP75 83.5 against 89.6,
#   while mask AP50 is higher (96.6 against 94.7), following its boxes (box AP50 97.5 against
#   94.7). The MLP's masks land on the objects and miss their outlines, which is what the FCN's
#   spatial layout is for (10.5). Its box AP is higher than the baseline's (78.8 against 73.9), as
#   it is without a mask branch (next point).
# - **No mask branch (Table 3): the opposite of the paper, beyond the spread.** Without the
#   mask branch the box AP is 78.1 (seeds 79.2 and 77.0) against the baseline's 73.9, and AP75
#   89.9 against 83.3. The paper's Mask R-CNN gains 0.9 box AP from its mask branch (the
#   multi-task training helps the shared features); the demo's tiny model, trained from scratch,
#   loses 4.2 to it here. A likely reason, not tested: the mask loss's gradients reach the same
#   64-channel backbone and FPN as the box head's, and in a network this small, without
#   pre-training, the two tasks compete for its capacity rather than help each other. The
#   recipe was chosen for the model with masks and was not retuned without them.

# %% [markdown]
# ### Why the shapes may not show what COCO shows
#
# Whatever the numbers above say, the shapes data is a mild test of every one of these
# choices, and a difference that does not show up here is not evidence against the paper:
#
# - **Softmax** (10.2): the classes compete for a pixel only as far as they look alike. Three
#   shapes of random colours are easy to tell apart from a 14x14 window; COCO's 80 classes
#   (a dog and a cat, a car and a truck) are not.
# - **Class-agnostic masks** (10.3): with three classes there is little class-specific shape
#   knowledge to lose, and even on COCO the paper measured only 0.6 points.
# - **RoIWarp and RoIPool** (10.4): every object of the shapes data is pooled from P2, at
#   stride 4, where their bins are off by about one pixel on objects of 27 to 97 pixels.
#   Quantisation hurts in proportion to the stride, and the paper's largest effect is at
#   stride 32 (Table 2d), which this library does not build. It hurts most at the strict IoU
#   thresholds, so look at AP75 rather than AP50, which is near its ceiling on shapes anyway.
# - **An MLP mask head** (10.5): the shapes' masks are simple, convex and smooth, a 28x28 mask
#   of them is low in detail, and 3,000 training images of them may be enough for the MLP's
#   extra parameters; the paper's argument is about the spatial detail of real objects.
# - **No mask branch** (10.6): the paper's effect is 0.9 box AP, smaller than the spread of two
#   seeds may be, and the demo's boxes are good already (AP50 above 0.9, chapter 6).
# - **Everywhere**: 100 held-out images are a small test set, two seeds a small sample, and the
#   demo's model is tiny and trained from scratch for minutes; the paper's are ResNets
#   pre-trained on ImageNet and trained on COCO.

# %% [markdown]
# ## Summary
#
# 1. The paper argues for each part of the mask branch with one experiment (Tables 2b, 2c, 2e),
#    and for the mask branch itself with Table 3. Each is a switch of `MaskRCNNConfig`
#    (`mask_loss`, `class_agnostic_masks`, `roi_pooler`, `mask_head`, `mask_branch`), listed with
#    the paper's numbers in `mrcnn_np.ablate.ABLATIONS`; Table 2d (stride-32 C5) has no switch,
#    as the library has no C5 backbone.
# 2. The per-class sigmoid sends no gradient to the other classes' mask channels; a softmax over
#    the classes does, and charges a mask drawn in every class's channel for each object pixel
#    (10.2: the same sigmoid loss for the two constructed predictions, a larger softmax loss for
#    A). The mask head then has to classify each pixel as well: the paper loses 5.5 mask AP.
# 3. Class-agnostic masks change only the predictor's last convolution (4 output channels to 1
#    here) and cost the paper 0.6 mask AP: inside its box, an object's mask barely needs its
#    class.
# 4. RoIWarp is RoIAlign of the box rounded to the feature grid, RoIPool rounds the box and its
#    bins and takes maxima. On the demo's held-out objects, all pooled from P2, their bin
#    centres are off by about one image pixel on average, about 2% of an object's size (10.4).
# 5. The MLP mask head has about 80 times the FCN's parameters in the demo's model (4,083,264
#    against 50,468) and drops the spatial layout that the FCN's shared filters keep.
# 6. `mrcnn-np ablate --budget short` runs all seven variants with two seeds in about a minute
#    on two idle cores (this chapter runs it); its APs mean nothing. `--budget full` is the
#    demo's recipe for every run, and section 10.8 compares its differences from the baseline
#    with the paper's, next to the spread across seeds.
# 7. The full budget (two seeds, 10.8): the softmax costs the most mask AP (77.8 to 28.5, far
#    beyond the paper's 5.5 points); RoIWarp, RoIPool and the MLP head cost 7.5 to 9.9 points,
#    mostly at AP75, in the paper's direction and more; class-agnostic masks are lower, within
#    the seeds' wide spread; and without the mask branch the box AP *rises* (73.9 to 78.1), the
#    opposite of the paper's Table 3 (with the MLP head it rises too, to 78.8).
#
# ## Exercises
#
# This chapter has no exercise folder; its exercises are experiments with `mrcnn-np ablate`.
# `--only NAME ...` and `--seeds S ...` pick what to run, and a folder that already holds a
# run reads it back instead of training it again. Each full-budget run is the demo's ten
# minutes on two cores; a short one takes seconds.
#
# 1. How noisy is the short budget? Run `mrcnn-np ablate --budget short --only baseline softmax
#    --seeds 0 1 2 3 --out runs/ablate/short-seeds` and compare the spread of the four seeds'
#    box AP with the difference between the two rows. What would you conclude from two seeds?
# 2. Two seeds give a rough spread. Add seeds to an ablation whose verdict in 10.8 is "within
#    the spread", and to the baseline: `mrcnn-np ablate --budget full --only baseline roi_pool
#    --seeds 2 3 4 --out runs/ablate/more-seeds` (then compute the differences over all five
#    seeds with the function `compare` of 10.8). Does the direction settle? How does the
#    standard deviation of five seeds compare with the difference?
# 3. The paper's Table 2c gap is larger at AP75 than at AP. Compare the AP50 and AP75 columns of
#    the full budget's table for `baseline`, `roi_warp` and `roi_pool`: where is our gap
#    largest? Then set `STRIDE = 32` in section 10.4 (the map's `side` follows) and rerun its
#    measurement: how far off would RoIPool's bins be on a stride-32 map, as in Table 2d?
# 4. Section 10.2's softmax makes three classes compete for each pixel. Before running
#    `mrcnn-np ablate --budget full --only baseline softmax`, predict the sign and rough size
#    of the difference from what you know of the shapes data. Why does the sigmoid's loss not
#    depend on the number of classes at all, and what would change with COCO's 80?

# %%
print(f"chapter run time: {time.perf_counter() - chapter_start:.0f} s")
