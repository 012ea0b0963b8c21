# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Anchors, matching and NMS
#
# The RPN (chapter 3) does not predict boxes from nothing. It starts from **anchors**, fixed
# reference boxes tiled over every position of every FPN level, and predicts for each anchor
# an objectness score and a small correction. Four tools make that work (the box head reuses the
# last three):
#
# - **anchors**: which boxes, where, and how many;
# - **IoU** (intersection over union) and the **matcher**: which anchors count as an object
#   (positive), as background (negative), or are ignored during training;
# - the **box coder**: a box expressed relative to an anchor as four numbers, and back;
# - **non-maximum suppression** (NMS): many overlapping predictions of one object thinned
#   to one.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/model/anchors.py` | `torchvision/models/detection/anchor_utils.py` (`AnchorGenerator`) |
# | `mrcnn_np/ops/boxes.py` | `torchvision/ops/boxes.py` (`box_iou`, `clip_boxes_to_image`, `remove_small_boxes`) |
# | `mrcnn_np/ops/nms.py` | `torchvision/ops/boxes.py` (`nms`, `batched_nms`) |
# | `mrcnn_np/ops/box_coder.py`, `matcher.py`, `sampler.py` | `torchvision/models/detection/_utils.py` |

# %%
import functools
import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cbook, patches

import mrcnn_np
from mrcnn_np.model.anchors import AnchorGenerator, cell_anchors
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.ops import batched_nms, box_area, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from mrcnn_np.ops.box_coder import BBOX_XFORM_CLIP, BoxCoder
from mrcnn_np.ops.matcher import Matcher
from mrcnn_np.ops.nms import nms_numpy
from mrcnn_np.ops.sampler import BalancedPositiveNegativeSampler
from mrcnn_np.reference import import_torch

path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
image = plt.imread(path)[:576]  # (600, 512, 3) -> (576, 512, 3): both sides multiples of 32
H, W = image.shape[:2]
LEVELS = ["P2", "P3", "P4", "P5", "P6"]
LEVEL_COLOURS = ["tab:red", "tab:orange", "gold", "tab:green", "tab:cyan"]


# %% tags=["hide-input"]
# drawing helpers for the figures
def draw_box(ax, box, colour, lw=1.5, ls="-", alpha=1.0, **kwargs):
    """An xyxy box as an unfilled rectangle."""
    x1, y1, x2, y2 = box
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, lw=lw, ls=ls,
                                   alpha=alpha, **kwargs))


def label_box(ax, box, text, colour, where="tl", fontsize=8):
    """Text on a coloured patch at a corner of an xyxy box: "tl", "tr", "bl", "br" inside the box,
    "above-l", "above-r", "below-l", "below-r" outside it, or "left" of it."""
    x1, y1, x2, y2 = box
    place = {"tl": (x1 + 2, y1 + 2, "left", "top"), "tr": (x2 - 2, y1 + 2, "right", "top"),
             "bl": (x1 + 2, y2 - 2, "left", "bottom"), "br": (x2 - 2, y2 - 2, "right", "bottom"),
             "above-l": (x1, y1 - 3, "left", "bottom"), "above-r": (x2, y1 - 3, "right", "bottom"),
             "below-l": (x1, y2 + 3, "left", "top"), "below-r": (x2, y2 + 3, "right", "top"),
             "left": (x1 - 3, (y1 + y2) / 2, "right", "center")}
    x, y, ha, va = place[where]
    ax.text(x, y, text, color="white", fontsize=fontsize, ha=ha, va=va, bbox={"facecolor": colour, "lw": 0, "pad": 1})


# %% [markdown]
# ## 2.1 Cell anchors
#
# For an aspect ratio `r = h / w` and a size `s`, the anchor is the box of area about `s²` with
# that shape, centred on the origin:
#
# ```
# w = s / sqrt(r)        h = s * sqrt(r)
# anchor = round(-w/2), round(-h/2), round(w/2), round(h/2)
# ```
#
# Mask R-CNN with an FPN uses **one size per level** (32 on P2, 64, 128, 256, 512 on P6) and
# three ratios (0.5, 1, 2), so there are `A = 3` *cell anchors* per level. A ratio of 0.5 is a
# wide box, 2 a tall one. The generator takes them as keywords; in the model they are the
# `anchor_sizes` and `aspect_ratios` of `MaskRCNNConfig`, and
# `AnchorGenerator.from_config(MaskRCNNConfig())` builds the same generator as below.

# %%
generator = AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)),  # maskrcnn_resnet50_fpn's
                            aspect_ratios=((0.5, 1.0, 2.0),) * 5)
print("sizes:", generator.sizes, " ratios:", generator.aspect_ratios[0])
print("anchors per location:", generator.num_anchors_per_location())
for level, sizes, cell in zip(LEVELS, generator.sizes, generator.cell_anchors, strict=True):
    shapes = ", ".join(f"{w:.0f} x {h:.0f}" for w, h in cell[:, 2:] - cell[:, :2])  # (A, 2) widths, heights
    print(f"{level}, size {sizes[0]}: {cell.astype(int).tolist()}\n    w x h: {shapes}")

# %% [markdown]
# The corners are rounded to whole pixels, so the areas are not exactly `s²` (46 x 22 = 1012
# for `s = 32`, `r = 0.5`). Two details decide the exact numbers, and the library follows
# torchvision in both:
#
# - **ordering**: with several sizes per level the anchors are listed **ratios outer, sizes
#   inner**: every size of the first ratio, then every size of the second...
# - **rounding**: the corners are computed in float32 and rounded **half to even**, as
#   `torch.round` and `np.round` do. For the default sizes no corner is exactly half-way, but
#   for odd sizes it is: size 5 gives corners at +-2.5, rounded to +-2, a 4 x 4 box; size 7
#   gives +-3.5, rounded to +-4, an 8 x 8 box. (Rounding half away from zero would give 6 x 6
#   and 8 x 8.)

# %%
print("sizes (32, 64), ratios (0.5, 1, 2):\n", cell_anchors((32, 64), (0.5, 1.0, 2.0)))
print("sizes (5, 7), ratio 1:\n", cell_anchors((5, 7), (1.0,)))

# %% [markdown]
# ## 2.2 Anchors on every level
#
# The cell anchors of a level are copied to every position of its feature map: the anchors of
# position `(x, y)` (column, row) are shifted by `(x * stride_w, y * stride_h)`, with the stride
# **computed** as `image size // feature size` (integer division), not read from a table. The
# anchors of position (0, 0) are centred on the image's top-left corner, not on the centre of
# the first stride-by-stride cell.
#
# The feature sizes come from the backbone. A tiny configuration of chapter 1's ResNet-FPN
# (one block per stage, width 8) has the same strides and is enough to get them; the
# generator is then called the way the RPN calls it, with the image size and the feature maps.
# The anchors are ordered by level, then position (row-major), then cell anchor.

# %%
small = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8, rng=0)  # sizes only: the strides are ResNet-50's


@functools.cache  # each size is computed once
def feature_maps(height, width):
    """The FPN maps {"0": P2, ..., "pool": P6} of a blank (1, 3, height, width) image."""
    with mrcnn_np.no_grad():
        return small(np.zeros((1, 3, height, width), dtype=np.float32))


maps = list(feature_maps(H, W).values())  # [P2, ..., P6], each (1, C, h, w)
anchors = generator((H, W), maps)[0]  # one (sum_l h_l*w_l*A, 4) array per image; one image here
counts = [m.shape[2] * m.shape[3] * 3 for m in maps]  # anchors per level: h * w * A
starts = np.cumsum([0, *counts])
level_anchors = [anchors[a:b] for a, b in zip(starts, starts[1:], strict=False)]  # (h*w*A, 4) per level
level_of = np.repeat(np.arange(5), counts)  # (total,) level index of every anchor
print(f"image {H}x{W}")
print("level  feature  stride  positions  anchors")
for level, m, n in zip(LEVELS, maps, counts, strict=True):
    h, w = m.shape[2:]
    print(f"{level}     {h:>3}x{w:<3}  {H // h:>2}x{W // w:<2}  {h * w:>9,}  {n:>7,}")
print(f"total {len(anchors):,} anchors, {anchors.dtype}, shape {anchors.shape}")
inside = (clip_boxes_to_image(anchors, (H, W)) == anchors).all(axis=1)
print(f"{(~inside).sum():,} of them cross the image border")

# %% [markdown]
# P2 holds three quarters of all anchors. About one in seven reaches outside the image (from 11 %
# on P2 to all but two on P6); torchvision keeps them all: the original Faster R-CNN ignored
# cross-boundary anchors during training, torchvision's RPN does not. The 15 anchors centred on
# the point (256, 256), which is an anchor position on every level:

# %% tags=["hide-input"]
centre = np.array([256, 256], dtype=np.float32)
fig, ax = plt.subplots(figsize=(9, 8))
ax.imshow(image)
for level, boxes, colour in zip(LEVELS, level_anchors, LEVEL_COLOURS, strict=True):
    here = boxes[((boxes[:, :2] + boxes[:, 2:]) / 2 == centre).all(axis=1)]  # the 3 anchors centred there
    for k, (box, ls) in enumerate(zip(here, ["-", "--", ":"], strict=True)):
        draw_box(ax, box, colour, lw=2, ls=ls, label=level if k == 0 else None)
ax.plot(*centre, "w+", ms=6, mew=1.5)
ax.add_patch(patches.Rectangle((0, 0), W, H, fill=False, edgecolor="black", lw=1))
ax.set_xlim(-130, W + 130)
ax.set_ylim(H + 130, -130)
ax.legend(title="level\n(ratio 0.5 solid,\n1 dashed, 2 dotted)", loc="upper left", bbox_to_anchor=(1.01, 1),
          fontsize=10)
ax.set_title("The 3 cell anchors of every level, centred on (256, 256)")
plt.show()

# %% [markdown]
# On every level the anchor size is 8 strides. So the level's grid of anchor centres looks the
# same relative to its anchors at every scale; what changes is how much of the image a window
# of 16 x 16 positions covers. Each panel below is such a window around (256, 256), with the
# centres of all anchors of that level (dots) and the 3 anchors of one position:

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.6))
overview = axes[1, 2]  # the sixth panel: where the five windows lie
overview.imshow(image)
for ax, level, boxes, m, colour in zip(axes.flat[:5], LEVELS, level_anchors, maps, LEVEL_COLOURS, strict=True):
    stride = H // m.shape[2]
    half = 8 * stride  # a window of 16 x 16 positions
    ax.imshow(image)
    centres = (boxes[::3, :2] + boxes[::3, 2:]) / 2  # (h*w, 2): one centre per position
    near = (np.abs(centres - centre) <= half).all(axis=1)
    ax.plot(centres[near, 0], centres[near, 1], "o", color=colour, ms=3.5, mec="white", mew=0.7)
    here = boxes[((boxes[:, :2] + boxes[:, 2:]) / 2 == centre).all(axis=1)]
    for box, ls in zip(here, ["-", "--", ":"], strict=True):
        draw_box(ax, box, colour, lw=2, ls=ls)
    ax.add_patch(patches.Rectangle((0, 0), W, H, fill=False, edgecolor="black", lw=1))
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] + half, centre[1] - half)
    ax.set_title(f"{level}: stride {stride}, size {8 * stride}\nwindow {2 * half} x {2 * half} px", fontsize=10.5)
    ax.tick_params(labelsize=8)
    overview.add_patch(patches.Rectangle(centre - half, 2 * half, 2 * half, fill=False, edgecolor=colour, lw=2))
overview.set_xlim(-260, W + 260)
overview.set_ylim(H + 220, -260)
overview.set_title("the five windows", fontsize=10.5)
overview.tick_params(labelsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# A consequence of `stride = image size // feature size`: the model's transform pads images to a
# multiple of 32, not 64, and P6 takes every other pixel of P5, rounding up. For 544 rows P5 has
# 17 rows and P6 has 9, so P6's vertical stride is `544 // 9 = 60`, not 64. The same happens to
# a typical COCO image, resized to 800 x 1066 and padded to 800 x 1088 (stride `800 // 13 = 61`),
# which has about three times as many anchors as our photograph:

# %%
for height, width in [(544, 512), (800, 1088)]:
    sizes = [m.shape[2:] for m in feature_maps(height, width).values()]  # [(h, w)] of P2..P6
    strides = [(height // h, width // w) for h, w in sizes]
    n = sum(len(a) for a in generator.grid_anchors((height, width), sizes))
    print(f"{height}x{width}: features {sizes}\n    strides {strides}, {n:,} anchors")

# %% [markdown]
# ## 2.3 Intersection over union
#
# The IoU of two boxes is the area they share divided by the area they cover together:
# `IoU = inter / (area1 + area2 - inter)`, from 0 (disjoint) to 1 (identical). The intersection
# of two boxes is a box too: its top-left corner is the larger of the two top-left corners, its
# bottom-right the smaller of the two bottom-right ones (or nothing, if those cross).
# `box_iou(boxes1, boxes2)` computes all pairs at once: `(R1, 4), (R2, 4) -> (R1, R2)`.

# %%
a = np.array([[40, 30, 200, 150]], dtype=np.float32)  # (1, 4) x1, y1, x2, y2
b = np.array([[90, 50, 230, 180]], dtype=np.float32)
inter_box = np.concatenate([np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])], axis=1)
inter = box_area(inter_box)[0]
print(f"area a {box_area(a)[0]:.0f}, area b {box_area(b)[0]:.0f}, intersection {inter:.0f}, "
      f"union {box_area(a)[0] + box_area(b)[0] - inter:.0f}")
print("box_iou(a, b) =", box_iou(a, b))

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
for ax, shaded in zip(axes, ["intersection", "union"], strict=True):
    if shaded == "union":
        for box in (a[0], b[0]):
            ax.add_patch(patches.Rectangle(box[:2], *(box[2:] - box[:2]), facecolor="#d9c6ea", lw=0))
    else:
        ax.add_patch(patches.Rectangle(inter_box[0, :2], *(inter_box[0, 2:] - inter_box[0, :2]),
                                       facecolor="tab:purple", alpha=0.6, lw=0))
    draw_box(ax, a[0], "tab:blue", lw=2.5)
    draw_box(ax, b[0], "tab:orange", lw=2.5)
    ax.text(45, 45, "a", color="tab:blue", fontsize=14)
    ax.text(225, 172, "b", color="tab:orange", fontsize=14, ha="right")
    ax.set_xlim(0, 270)
    ax.set_ylim(210, 0)
    ax.set_aspect("equal")
    area = inter if shaded == "intersection" else box_area(a)[0] + box_area(b)[0] - inter
    ax.set_title(f"{shaded}: {area:.0f} px²")
fig.suptitle(f"IoU(a, b) = {inter:.0f} / {box_area(a)[0] + box_area(b)[0] - inter:.0f} = {box_iou(a, b)[0, 0]:.3f}")
fig.tight_layout()
plt.show()

# %% [markdown]
# Against anchors, the IoU of one ground-truth box is a map per level and per ratio. For the head
# in the photograph (cap included, 208 x 328 px), P4 and P5 below: each cell is one anchor
# position, drawn centred where its anchors are centred (so the maps start half a stride before
# the image's top-left corner and stop short of its other edges), coloured by the IoU of its
# anchor with the head. The contours mark IoU 0.3 and 0.7, the RPN's two thresholds (section 2.4).

# %%
head = np.array([[162, 22, 370, 350]], dtype=np.float32)  # (1, 4), drawn by hand
head_iou = [box_iou(head, boxes)[0] for boxes in level_anchors]  # per level (h*w*A,)
for level, iou in zip(LEVELS, head_iou, strict=True):
    k = int(iou.argmax())
    print(f"{level}: best IoU {iou.max():.3f} (ratio {generator.aspect_ratios[0][k % 3]}), "
          f"anchors with IoU >= 0.7: {(iou >= 0.7).sum()}")

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.8), layout="constrained")
for row, lvl in enumerate((2, 3)):  # P4, P5
    h, w = maps[lvl].shape[2:]
    stride = H // h
    iou = head_iou[lvl].reshape(h, w, 3)  # (h*w*A,) -> (h, w, A)
    extent = (-stride / 2, w * stride - stride / 2, h * stride - stride / 2, -stride / 2)  # cells on the centres
    for k, ax in enumerate(axes[row]):
        ax.imshow(image, alpha=0.35)
        shown = ax.imshow(iou[:, :, k], cmap="viridis", vmin=0, vmax=1, alpha=0.8, extent=extent)
        centres_x, centres_y = np.arange(w) * stride, np.arange(h) * stride
        ax.contour(centres_x, centres_y, iou[:, :, k], levels=[0.3, 0.7], colors=["white", "red"], linewidths=1.5)
        draw_box(ax, head[0], "white", lw=2)
        best = level_anchors[lvl][np.argmax(iou[:, :, k]) * 3 + k]
        draw_box(ax, best, "red", lw=1.5, ls="--")
        ax.set_xlim(-stride / 2, W)
        ax.set_ylim(H, -stride / 2)
        ratio = generator.aspect_ratios[lvl][k]
        ax.set_title(f"{LEVELS[lvl]} (size {generator.sizes[lvl][0]}), ratio {ratio}: best {iou[:, :, k].max():.2f}",
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(shown, ax=axes, shrink=0.6, label="IoU with the head (white box); contours 0.3 white, 0.7 red")
fig.suptitle("IoU of the head with every anchor of P4 and P5 (red dashed: the best anchor of each map)")
plt.show()

# %% [markdown]
# The head is 208 px wide and 328 tall: P4's anchors (128) are too small for it, and only P5's
# tall anchors (ratio 2, 182 x 362) reach IoU 0.7, at a few neighbouring positions. An object is
# matched to whichever level's anchors fit it; the levels are not assigned by size in advance.
# Because the stride is 1/8 of the anchor size on every level, one step of the grid changes the
# IoU by about as much on every level.

# %% [markdown]
# ## 2.4 Matching anchors to ground truth
#
# To train the RPN every anchor gets a label. The `Matcher` takes the IoU matrix
# `(M ground truths, N anchors)`, the anchors of **all levels together**, and gives each anchor
# its best ground-truth box (ties: the lowest index), then:
#
# - best IoU **>= 0.7**: **positive**, matched to that box (its objectness target is 1 and it
#   learns to regress onto the box);
# - best IoU **< 0.3**: **negative**, background (target 0);
# - in between: **neutral** (`-2`), ignored by the loss.
#
# Four boxes drawn by hand on the photograph: the head, the name tag, the ribbon bar and a small
# button on the jacket.

# %%
gt_names = ["head", "name tag", "ribbons", "button"]
gt_boxes = np.array([[162, 22, 370, 350],
                     [82, 484, 170, 516],
                     [320, 490, 452, 528],
                     [243, 503, 257, 517]], dtype=np.float32)  # (M, 4)
GT_COLOURS = ["tab:red", "tab:orange", "deepskyblue", "magenta"]
iou = box_iou(gt_boxes, anchors)  # (M, N) = (4, 73656)
strict = Matcher(0.7, 0.3, allow_low_quality_matches=False)(iou)  # (N,) matched index, -1 or -2
rpn = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)  # what the RPN uses
best_gt = iou.argmax(axis=0)  # (N,) the best ground truth of every anchor
print("box       size     best IoU  level  positives  + low-quality  neutral")
for g, name in enumerate(gt_names):
    w, h = gt_boxes[g, 2:] - gt_boxes[g, :2]
    best = int(iou[g].argmax())
    neutral = ((strict == Matcher.BETWEEN_THRESHOLDS) & (best_gt == g)).sum()
    print(f"{name:<9} {w:>3.0f}x{h:<4.0f} {iou[g, best]:>8.3f}  {LEVELS[level_of[best]]:>5}"
          f"  {(strict == g).sum():>9}  {(rpn == g).sum():>13}  {neutral:>7}")
print(f"all anchors: {(rpn >= 0).sum()} positive, {(rpn == -2).sum()} neutral, {(rpn == -1).sum():,} negative")

# %% [markdown]
# With the two thresholds alone, only the head has positive anchors. The name tag and the ribbons
# are well framed by anchors of P3, yet the best reaches only 0.67 and 0.60: their shapes are
# flatter than the flattest anchor (ratio 0.5). Size alone can do the same: consecutive levels'
# sizes are a factor 2 apart, and a square of side 181, half-way between, has IoU
# `(128/181)² = (181/256)² = 0.5` with the best anchor of either level. The button (14 x 14) is
# smaller than the smallest anchor (32): its best IoU is 0.19, so every anchor around it is
# *background*.
#
# Hence the **low-quality rule** (`allow_low_quality_matches=True`, what the RPN uses): every
# ground-truth box also gets the anchors whose IoU with it is the highest it has with any anchor
# (all of them when several tie), whatever that IoU. A rescued anchor is matched to its own best
# ground truth (normally that same box). Below, the anchors each box gets: positives solid,
# rescued anchors dashed, and the centres of the neutral anchors (dots, in the colour of their
# best box).

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10.5, 6.4))
for ax, matches, title in zip(axes, (strict, rpn), ("allow_low_quality_matches=False",
                                                   "allow_low_quality_matches=True (the RPN)"), strict=True):
    ax.imshow(image)
    for g, colour in enumerate(GT_COLOURS):
        draw_box(ax, gt_boxes[g], colour, lw=3.5)
        neutral = anchors[(matches == Matcher.BETWEEN_THRESHOLDS) & (best_gt == g)]
        ax.plot(*((neutral[:, :2] + neutral[:, 2:]) / 2).T, "o", color=colour, ms=3.5, mec="white", mew=0.5)
        for box in anchors[(matches == g) & (strict == g)]:
            draw_box(ax, box, colour, lw=1)
        for box in anchors[(matches == g) & (strict != g)]:
            draw_box(ax, box, colour, lw=1, ls="--")
    counts_text = ", ".join(f"{name} {(matches == g).sum()}" for g, name in enumerate(gt_names))
    ax.set_title(f"{title}\npositives: {counts_text}", fontsize=10)
    ax.set_xlim(-10, W + 10)
    ax.set_ylim(H + 10, -45)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Close up, the anchors the rule rescues, with their IoU. Ties are the rule rather than the
# exception: along an axis where one box's extent contains the other's, moving the anchor by a
# stride leaves the overlap unchanged. The name tag (32 px tall) fits inside the height of P3's
# wide anchor (90 x 46) at 2 rows of the grid; the ribbon bar (132 px wide) contains that
# anchor's width at 5 columns. The button's best IoU, `196 / 1012`, is shared by every wide or
# tall P2 anchor (46 x 22 or 22 x 46) that contains it: 32 positives, each as good (or as bad)
# as the others.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4), width_ratios=[1.3, 1.6, 1.1])
windows = {1: (50, 200, 450, 550), 2: (290, 480, 450, 560), 3: (200, 300, 470, 550)}  # x0, x1, y0, y1
for ax, (g, (x0, x1, y0, y1)) in zip(axes, windows.items(), strict=True):
    ax.imshow(image)
    rescued = np.nonzero((rpn == g) & (strict != g))[0]
    for n in rescued:
        draw_box(ax, anchors[n], "white", lw=1.2, ls="--")
    draw_box(ax, gt_boxes[g], GT_COLOURS[g], lw=2.5)
    values = np.unique(iou[g, rescued])
    ax.set_title(f"{gt_names[g]}: {len(rescued)} rescued {LEVELS[level_of[rescued[0]]]} anchors,\n"
                 f"{'all with IoU' if len(values) == 1 else 'IoU'} {', '.join(f'{v:.3f}' for v in values)}", fontsize=10)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.tick_params(labelsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The RPN turns matches into labels (1 positive, 0 negative, -1 ignored), and trains on a sample
# of 256 anchors per image, at most half of them positive: here all 43 positives, and negatives,
# drawn at random, fill the rest. The `BalancedPositiveNegativeSampler` draws with an explicit
# `np.random.Generator`.

# %%
labels = (rpn >= 0).astype(np.float32)  # as RegionProposalNetwork.assign_targets_to_anchors
labels[rpn == Matcher.BETWEEN_THRESHOLDS] = -1  # ignored; BELOW_LOW_THRESHOLD stays 0
sampler = BalancedPositiveNegativeSampler(batch_size_per_image=256, positive_fraction=0.5)
(pos_mask,), (neg_mask,) = sampler([labels], rng=np.random.default_rng(0))
print(f"labels: {(labels == 1).sum()} positive, {(labels == 0).sum():,} negative, {(labels == -1).sum()} ignored")
print(f"sampled: {pos_mask.sum()} positive + {neg_mask.sum()} negative = {pos_mask.sum() + neg_mask.sum()}")

# %% [markdown]
# ## 2.5 Boxes as deltas from an anchor
#
# The RPN does not predict corners; for each anchor P it predicts how to move and stretch it onto
# the ground truth G. With centres `(x, y)` and sizes `(w, h)`:
#
# ```
# dx = wx * (Gx - Px) / Pw        dw = ww * log(Gw / Pw)
# dy = wy * (Gy - Py) / Ph        dh = wh * log(Gh / Ph)
# ```
#
# The offsets are relative to the anchor's size and the sizes are log-ratios, so the same deltas
# mean the same relative move at every scale. `encode(G, P)` computes them (torchvision's
# argument order: the target first), `decode(deltas, P)` inverts them. The RPN uses the weights
# `(1, 1, 1, 1)`; the box head (a later chapter) uses `(10, 10, 5, 5)`: it refines proposals
# that are already close to their object, whose deltas are small, and the weights scale them up
# to about unit size for the loss. The head and its best-matching anchor, a P5 anchor of ratio 2:

# %%
anchor = anchors[np.nonzero(rpn == 0)[0][iou[0, rpn == 0].argmax()]][None]  # (1, 4) the head's best anchor
print("anchor", anchor[0], " head", head[0], f" IoU {box_iou(head, anchor)[0, 0]:.3f}")
for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    coder = BoxCoder(weights)
    deltas = coder.encode(head, anchor)  # (1, 4) dx, dy, dw, dh
    decoded = coder.decode(deltas, anchor)  # (1, 1, 4): one box per class; one class here
    error = np.abs(decoded[0, 0] - head[0]).max()
    print(f"weights {weights}: deltas {np.round(deltas[0], 4)}, decoded {decoded[0, 0]}, max error {error:.1e}")

# %% [markdown]
# Decoding gives the head back (exact here; in general up to float32 rounding). When decoding,
# `dw` and `dh` (after dividing by their weights) are clamped from above at `log(1000 / 16)`,
# about 4.14: a predicted box is at most 62.5 times as wide and as tall as its anchor. An
# untrained or diverging network can output large deltas, and `exp` of them overflows (float32
# reaches inf above 88.7); an infinite box then turns IoU, NMS and the loss into NaN. The
# constant is inherited from Detectron (the original Faster R-CNN resized images to at most
# 1000 px and had a feature stride of 16); what matters is that it bounds `exp`. Encoding is not
# clamped, and neither are negative deltas (a box may shrink to nothing).

# %%
print(f"BBOX_XFORM_CLIP = log(1000/16) = {BBOX_XFORM_CLIP:.4f}, exp of it = {math.exp(BBOX_XFORM_CLIP):.1f}")
dws = np.array([0, 2, BBOX_XFORM_CLIP, 6, 20], dtype=np.float32)
rel = np.stack([np.zeros_like(dws), np.zeros_like(dws), dws, np.zeros_like(dws)], axis=1)  # (5, 4): only dw
square = np.array([[0, 0, 32, 32]], dtype=np.float32).repeat(len(dws), axis=0)  # a 32 x 32 anchor each
clamped = BoxCoder().decode(rel, square)[:, 0]  # (5, 4)
unclamped = BoxCoder(bbox_xform_clip=math.inf).decode(rel, square)[:, 0]
for dw, c, u in zip(dws, clamped, unclamped, strict=True):
    print(f"dw {dw:6.3f}: width {c[2] - c[0]:>7.1f} clamped, {u[2] - u[0]:>12.4g} without the clamp")

# %% tags=["hide-input"]
fig, (ax_box, ax_clip) = plt.subplots(1, 2, figsize=(10.5, 5), width_ratios=[1, 1.15])
deltas = BoxCoder().encode(head, anchor)[0]
ax_box.imshow(image)
draw_box(ax_box, anchor[0], "white", lw=2, ls="--")
draw_box(ax_box, head[0], "tab:red", lw=2.5)
p_ctr, g_ctr = (anchor[0, :2] + anchor[0, 2:]) / 2, (head[0, :2] + head[0, 2:]) / 2
ax_box.plot(*p_ctr, "wo", ms=5)
ax_box.plot(*g_ctr, "o", color="tab:red", ms=5)
ax_box.annotate("", xy=g_ctr, xytext=p_ctr, arrowprops={"arrowstyle": "->", "color": "yellow", "lw": 2})
ax_box.text(8, H - 12, f"anchor P (white, dashed) {anchor[0, 2] - anchor[0, 0]:.0f} x {anchor[0, 3] - anchor[0, 1]:.0f}\n"
            f"head G (red) {head[0, 2] - head[0, 0]:.0f} x {head[0, 3] - head[0, 1]:.0f}\n"
            f"dx = {deltas[0]:+.3f}  dy = {deltas[1]:+.3f}\ndw = {deltas[2]:+.3f}  dh = {deltas[3]:+.3f}\n"
            f"(weights 10, 10, 5, 5: 10x, 10x, 5x, 5x these)",
            fontsize=10, va="bottom", bbox={"facecolor": "white", "alpha": 0.85})
ax_box.set_xlim(0, W)
ax_box.set_ylim(H, -30)
ax_box.set_title("encode(head, anchor), weights (1, 1, 1, 1)")
curve_dw = np.linspace(-2, 8, 201, dtype=np.float32)
rel = np.zeros((len(curve_dw), 4), dtype=np.float32)
rel[:, 2] = curve_dw  # (201, 4): only dw varies
one = np.array([[0, 0, 1, 1]], dtype=np.float32).repeat(len(curve_dw), axis=0)  # a 1 x 1 anchor
for clip, colour, label in [(math.inf, "lightgray", "without the clamp"), (BBOX_XFORM_CLIP, "tab:blue", "BoxCoder")]:
    boxes = BoxCoder(bbox_xform_clip=clip).decode(rel, one)[:, 0]
    ax_clip.semilogy(curve_dw, boxes[:, 2] - boxes[:, 0], color=colour, lw=2.5, label=label)
ax_clip.axvline(BBOX_XFORM_CLIP, color="gray", ls=":")
ax_clip.axhline(1000 / 16, color="gray", ls=":")
ax_clip.text(BBOX_XFORM_CLIP + 0.1, 0.2, "dw = log(1000/16)", color="gray")
ax_clip.text(-1.9, 1000 / 16 * 1.3, "62.5", color="gray")
ax_clip.set_xlabel("predicted dw")
ax_clip.set_ylabel("decoded width / anchor width")
ax_clip.legend(loc="upper left")
ax_clip.set_title("decode clamps dw (and dh) at log(1000/16)")
fig.tight_layout()
plt.show()

# %% [markdown]
# After decoding, the RPN clips its boxes to the image (`clip_boxes_to_image`, size given as
# `(height, width)`) and drops those with a side shorter than `min_size` (`remove_small_boxes`
# returns the indices it keeps; torchvision's RPN uses `min_size = 1e-3`). A box pushed entirely
# off the image is clipped to zero width and dropped:

# %%
rel = np.array([[0.0, 0.0, 0.0, 0.0],  # (3, 4) dx, dy, dw, dh: the anchor unchanged,
                [0.4, 0.0, 0.5, 0.0],  # moved right by 0.4 widths and widened by exp(0.5),
                [3.0, 0.0, 0.0, 0.0]], dtype=np.float32)  # moved right by 3 widths
boxes = BoxCoder().decode(rel, anchor.repeat(3, axis=0))[:, 0]  # (3, 1, 4) -> (3, 4)
clipped = clip_boxes_to_image(boxes, (H, W))
print("decoded:\n", boxes.round(1))
print("clipped:\n", clipped)
print("kept by remove_small_boxes(clipped, 1e-3):", remove_small_boxes(clipped, 1e-3))

# %% [markdown]
# ## 2.6 Non-maximum suppression
#
# A detector fires many times on one object: neighbouring anchors all become similar boxes with
# high scores. Greedy NMS keeps the best of each group: visit the boxes by decreasing score, keep a
# box unless a box kept before it overlaps it with IoU **greater than** the threshold. The library's
# reference implementation (the Numba and CUDA kernels give the same indices):

# %%
print(inspect.getsource(nms_numpy))

# %% [markdown]
# A cluster of eleven scored boxes on the photograph (drawn by hand, as a detector might output
# them), and NMS with threshold 0.5 (the box head's; the RPN uses 0.7):

# %%
cluster = np.array([[165, 25, 368, 345], [150, 40, 360, 352], [180, 10, 385, 330],  # 0-2 head
                    [180, 140, 352, 348],  # 3 face
                    [158, 15, 375, 180], [170, 30, 380, 190],  # 4-5 cap
                    [82, 484, 170, 516], [76, 478, 162, 520], [92, 488, 180, 514],  # 6-8 name tag
                    [320, 490, 452, 528], [330, 484, 444, 532]],  # 9-10 ribbons
                   dtype=np.float32)  # (11, 4)
scores = np.array([0.92, 0.88, 0.80, 0.74, 0.70, 0.45, 0.85, 0.60, 0.50, 0.66, 0.40],
                  dtype=np.float32)  # (11,)
keep = nms(cluster, scores, iou_threshold=0.5)  # int64 indices, by decreasing score
print("by score:", np.argsort(-scores, kind="stable"))
print("kept:    ", keep, "scores", scores[keep])
print("IoU of box 0 with 3 and 4:", box_iou(cluster[[0]], cluster[[3, 4]])[0].round(3))

# %% [markdown]
# The face box overlaps the head box with IoU 0.54 and is suppressed; the cap box, with IoU 0.45,
# survives although it overlaps the head box too: NMS knows only IoU, not objects. One panel per
# kept box below: for the figure, each suppressed box is attributed to the first kept box that
# overlaps it by more than the threshold (`box_iou`), which is the box that suppressed it.

# %% tags=["hide-input"]
pair_iou = box_iou(cluster, cluster)  # (11, 11)
suppressor = {}  # suppressed index -> the kept index that removed it
for i in np.argsort(-scores, kind="stable"):
    if i not in keep:
        suppressor[int(i)] = int(next(k for k in keep if scores[k] >= scores[i] and pair_iou[k, i] > 0.5))
where = ["bl", "below-r", "tr", "tl", "tl", "br", "left", "above-l", "below-r", "below-l", "above-r"]  # label spots
grey = image.mean(axis=2)
fig, axes = plt.subplots(2, 3, figsize=(10.5, 9), layout="constrained")
panels = axes.flat
ax = next(panels)
ax.imshow(grey, cmap="gray", alpha=0.5)
for i, (box, s) in enumerate(zip(cluster, scores, strict=True)):
    draw_box(ax, box, "tab:blue", lw=1.2)
    label_box(ax, box, f"{i}: {s:.2f}", "tab:blue", where[i])
ax.set_title("input: 11 boxes (index: score)", fontsize=11)
kept_before, removed_before = [], []
for step, k in enumerate(keep, start=1):
    ax = next(panels)
    ax.imshow(grey, cmap="gray", alpha=0.5)
    removed = [i for i, s in suppressor.items() if s == k]
    for i in range(len(cluster)):
        if i == k:
            draw_box(ax, cluster[i], "tab:green", lw=3)
            label_box(ax, cluster[i], f"{i}: {scores[i]:.2f}", "tab:green", where[i])
        elif i in removed:
            draw_box(ax, cluster[i], "tab:red", lw=1.5, ls="--")
            label_box(ax, cluster[i], f"{i}: IoU {pair_iou[k, i]:.2f}", "tab:red", where[i])
        elif i in kept_before:
            draw_box(ax, cluster[i], "tab:green", lw=1, alpha=0.6)
        elif i in removed_before:
            draw_box(ax, cluster[i], "darkgray", lw=1)
        else:
            draw_box(ax, cluster[i], "tab:blue", lw=1)
    kept_before.append(int(k))
    removed_before += removed
    ax.set_title(f"step {step}: keep {k} ({scores[k]:.2f}), suppress {removed or 'none'}", fontsize=11)
ax = next(panels)
ax.imshow(image)
for k in keep:
    draw_box(ax, cluster[k], "tab:green", lw=2.5)
    label_box(ax, cluster[k], f"{k}: {scores[k]:.2f}", "tab:green", where[k])
ax.set_title(f"result: {len(keep)} boxes kept", fontsize=11)
for ax in axes.flat:
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Greedy NMS, threshold 0.5: kept (green), suppressed by it (red dashed, with its IoU with the kept box),\n"
             "still to visit (blue); from earlier steps: kept (thin green), suppressed (grey)", fontsize=11)
plt.show()

# %% [markdown]
# Two rules decide the edge cases, as in torchvision: a box is suppressed only when the IoU is
# *strictly* greater than the threshold (equal keeps), and equal scores are visited in index
# order (a stable sort), so of two identical boxes with equal scores the first is kept.

# %%
pair = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], dtype=np.float32)  # IoU exactly 100 / 200
pair_scores = np.array([0.9, 0.8], dtype=np.float32)
print("IoU", box_iou(pair[:1], pair[1:])[0, 0])
print("threshold 0.5 keeps", nms(pair, pair_scores, 0.5), "; 0.49 keeps", nms(pair, pair_scores, 0.49))
twins = np.array([[5, 5, 50, 50]] * 3, dtype=np.float32)  # three identical boxes
twin_scores = np.array([0.5, 0.7, 0.7], dtype=np.float32)
print("identical boxes, scores", twin_scores, "-> kept", nms(twins, twin_scores, 0.5))

# %% [markdown]
# **`batched_nms`** suppresses only within a category: a person and the cap on their head may
# overlap without one removing the other. The box head runs it over the classes; the RPN runs it
# over the FPN levels (each level's proposals are thinned separately). Torchvision, and the
# library, do it with one NMS on shifted copies: every box of category `c` is moved by
# `c * (max coordinate + 1)`, so boxes of different categories can never overlap (on the CPU,
# above 1,000 boxes, both run one NMS per category instead, which keeps the same boxes).

# %%
boxes = np.array([[165, 25, 368, 345], [150, 40, 360, 352],  # category 0: head
                  [160, 18, 372, 200], [165, 22, 375, 200]],  # category 1: cap
                 dtype=np.float32)  # (4, 4)
box_scores = np.array([0.90, 0.75, 0.80, 0.60], dtype=np.float32)
categories = np.array([0, 0, 1, 1])
print("IoU with box 0:", box_iou(boxes[:1], boxes)[0].round(3))
print("nms:         ", nms(boxes, box_scores, 0.5))
print("batched_nms: ", batched_nms(boxes, box_scores, categories, 0.5))

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(10.5, 4.2))
results = {"input: category 0 head (red), 1 cap (blue)": np.arange(4), "nms, threshold 0.5": nms(boxes, box_scores, 0.5),
           "batched_nms, threshold 0.5": batched_nms(boxes, box_scores, categories, 0.5)}
for ax, (title, kept) in zip(axes, results.items(), strict=True):
    ax.imshow(image)
    for i in kept:
        colour = ["tab:red", "tab:blue"][categories[i]]
        draw_box(ax, boxes[i], colour, lw=2.5)
        label_box(ax, boxes[i], f"{i}: {box_scores[i]:.2f}", colour, ["bl", "below-r", "tl", "br"][i], fontsize=9)
    ax.set_xlim(100, 430)
    ax.set_ylim(380, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2.7 Check against torchvision
#
# The same inputs through torchvision's `AnchorGenerator`, `box_iou`, `Matcher`, `BoxCoder`,
# `nms` and `batched_nms`. Anchors, matches and kept indices must be identical; IoU and deltas
# agree to float32 rounding.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    import torchvision
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchAnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    theirs_generator = TorchAnchorGenerator(sizes=generator.sizes, aspect_ratios=generator.aspect_ratios)
    for height, width in [(H, W), (544, 512), (800, 1088)]:
        ours_maps = list(feature_maps(height, width).values())
        batch = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
        theirs = theirs_generator(batch, [torch.zeros(m.shape) for m in ours_maps])[0].numpy()
        ours = generator((height, width), ours_maps)[0]
        print(f"anchors {height}x{width}: {ours.shape}, identical: {np.array_equal(ours, theirs)}")
        assert np.array_equal(ours, theirs)

    theirs_iou = torchvision.ops.box_iou(torch.from_numpy(gt_boxes), torch.from_numpy(anchors)).numpy()
    print(f"box_iou (4, {len(anchors)}): max abs difference {np.abs(iou - theirs_iou).max():.1e}")
    assert np.abs(iou - theirs_iou).max() < 1e-6
    theirs_matches = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)(torch.from_numpy(iou)).numpy()
    print("Matcher (0.7, 0.3, low-quality): identical:", np.array_equal(rpn, theirs_matches))
    assert np.array_equal(rpn, theirs_matches)

    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        theirs_coder = det_utils.BoxCoder(weights)
        ours_deltas = BoxCoder(weights).encode(head, anchor)
        theirs_deltas = theirs_coder.encode_single(torch.from_numpy(head), torch.from_numpy(anchor)).numpy()
        big = np.array([[0.5, -0.2, 6.0, -1.0]], dtype=np.float32)  # dw above the clamp
        ours_boxes = BoxCoder(weights).decode(big, anchor)
        theirs_boxes = theirs_coder.decode_single(torch.from_numpy(big), torch.from_numpy(anchor)).numpy()
        print(f"BoxCoder {weights}: encode max abs difference {np.abs(ours_deltas - theirs_deltas).max():.1e}, "
              f"decode {np.abs(ours_boxes[:, 0] - theirs_boxes).max():.1e}")
        assert np.allclose(ours_deltas, theirs_deltas, rtol=1e-6, atol=1e-6)
        assert np.allclose(ours_boxes[:, 0], theirs_boxes, rtol=1e-6, atol=1e-4)

    theirs_keep = torchvision.ops.nms(torch.from_numpy(cluster), torch.from_numpy(scores), 0.5).numpy()
    print("nms:", keep, theirs_keep, "identical:", np.array_equal(keep, theirs_keep))
    theirs_batched = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(box_scores),
                                                 torch.from_numpy(categories), 0.5).numpy()
    ours_batched = batched_nms(boxes, box_scores, categories, 0.5)
    print("batched_nms:", ours_batched, theirs_batched, "identical:", np.array_equal(ours_batched, theirs_batched))
    rng = np.random.default_rng(0)  # and 2,000 random boxes, many of them overlapping
    xy = rng.uniform(0, 400, (2000, 2)).astype(np.float32)
    many = np.concatenate([xy, xy + rng.uniform(10, 120, (2000, 2)).astype(np.float32)], axis=1)  # (2000, 4)
    many_scores = rng.random(2000).astype(np.float32)
    ours_many = nms(many, many_scores, 0.7)
    theirs_many = torchvision.ops.nms(torch.from_numpy(many), torch.from_numpy(many_scores), 0.7).numpy()
    print(f"nms on 2,000 random boxes: {len(ours_many)} kept, identical: {np.array_equal(ours_many, theirs_many)}")
    assert np.array_equal(keep, theirs_keep) and np.array_equal(ours_batched, theirs_batched)
    assert np.array_equal(ours_many, theirs_many)

# %% [markdown]
# `tests/reference/` repeats these checks on many more cases, in float32 and float64. Chapter 3 puts the
# pieces together in the RPN: a small head predicts objectness and deltas for every anchor, the
# deltas are decoded into proposals, and NMS thins them.

# %% [markdown]
# ## Summary
#
# - Each FPN level has one anchor size (32 on P2 up to 512 on P6) and three ratios (0.5, 1, 2),
#   so `A = 3` cell anchors per position: `w = s / sqrt(r)`, `h = s * sqrt(r)`, corners rounded
#   half to even in float32 (46 x 22 for size 32 and ratio 0.5), ratios outer and sizes inner.
# - The cell anchors are copied to every position with the stride `image size // feature size`.
#   The 576x512 photograph gets 73,656 anchors, three quarters of them on P2; 11,308 cross the
#   image border and are kept. Because the image is padded to a multiple of 32, P6's stride is 60
#   for 544 rows and 61 for a COCO-size 800 x 1088 image (217,413 anchors).
# - `box_iou` maps `(R1, 4)` and `(R2, 4)` to `(R1, R2)`, as `inter / (area1 + area2 - inter)`.
#   The anchor size is 8 strides on every level, so no level is assigned to an object in
#   advance: the object is matched to the anchors that fit it.
# - The `Matcher` marks an anchor positive at IoU >= 0.7, negative below 0.3 and neutral in
#   between. On the photograph only the head (P5, IoU 0.80) passes 0.7; the name tag, the
#   ribbons and the 14 x 14 button (best IoU 0.19, shared by 32 anchors) get positives only
#   from the low-quality rule. The result is 43 positive, 391 neutral and 73,222 negative
#   anchors, of which a sample of 256 is drawn (43 + 213).
# - The box coder writes a box as `dx = wx (Gx - Px) / Pw`, `dw = ww log(Gw / Pw)` (and likewise
#   for y and h), with weights `(1, 1, 1, 1)` for the RPN and `(10, 10, 5, 5)` for the box head.
#   Decoding clamps `dw` and `dh` at `log(1000 / 16) = 4.135`, at most 62.5 times the anchor;
#   then boxes are clipped and those below `min_size` removed.
# - Greedy NMS suppresses a box whose IoU with a kept box is strictly greater than the threshold,
#   with equal scores visited in index order. The cluster of 11 boxes keeps `[0 6 4 9]` at 0.5.
#   `batched_nms` suppresses only within a category.
# - Anchors, matches and kept indices are identical to torchvision's (NMS also on 2,000 random
#   boxes: 1,791 kept), and IoU and deltas agree to float32 rounding.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/02_anchors_and_matching/`. `mrcnn-np check 02` grades it against
# `mrcnn_np` and torchvision; `mrcnn-np check 02 --hint` reveals the hints one at a time. The tasks:
#
# 1. `box_iou`: the IoU of every pair of boxes.
# 2. `cell_anchors`: the anchors of one location, in float32, rounded as torchvision rounds them.
# 3. `grid_anchors`: those anchors at every location of every level, in the RPN's order.
# 4. `encode`: boxes to regression deltas relative to reference boxes.
# 5. `decode`: deltas back to boxes, with the clamp; it must invert `encode`.
# 6. `nms`: greedy non-maximum suppression, with torchvision's rules for ties.
#
# Further questions:
#
# - A square of side 181 lies halfway between the sizes of P3 and P4, and its best IoU with an
#   anchor of either level is 0.5. How would two sizes per level change that, and what would it
#   cost in anchors?
# - Decoding clamps `dw` and `dh`, but encoding does not clamp anything. Why is the asymmetry
#   safe?
# - Why does "drop every box that overlaps a better one" keep fewer boxes than greedy NMS? Find
#   a cluster of three boxes where the two differ.
