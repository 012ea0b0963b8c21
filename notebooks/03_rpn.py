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
# # 3. The Region Proposal Network
#
# The first stage of Mask R-CNN. A small convolutional head slides over every level of the
# feature pyramid and, for every anchor (chapter 2), predicts two things: an **objectness**
# logit ("is there an object here?") and four **box deltas** that move the anchor onto the
# object. The deltas are applied to the anchors, the best boxes of each level are kept,
# clipped to the image and de-duplicated by non-maximum suppression: the survivors are the
# **proposals** that the second stage classifies and refines. In training, the anchors are
# matched to the ground-truth boxes to get the targets of both predictions.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/model/rpn.py` | `torchvision/models/detection/rpn.py` |
# | `mrcnn_np/model/anchors.py` | `models/detection/anchor_utils.py` |
# | `mrcnn_np/ops/box_coder.py`, `matcher.py`, `sampler.py` | `models/detection/_utils.py` |
# | `mrcnn_np/ops/boxes.py`, `nms.py` | `torchvision/ops/boxes.py` |
#
# **About the weights.** Where this chapter shows shapes and the flow of data (sections 3.1 to
# 3.6, and the check against torchvision), a photograph goes through a ResNet-50-FPN and an RPN
# head with *random* weights: the numbers are real, their meaning is not. Where it discusses
# what good proposals look like on that photograph (sections 3.7 to 3.9), it replaces the head
# by a **simulated trained head** whose outputs are computed from the ground truth plus noise,
# and says so. Section 3.10 then runs a **trained** RPN: the one of the small Mask R-CNN that
# ships with the package, trained on synthetic shapes, on an image it has never seen.

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cbook, patches

import mrcnn_np
from mrcnn_np import Tensor, nn
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.data.shapes import shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.model.anchors import AnchorGenerator
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.model.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
    permute_and_flatten,
    top_n_per_level,
)
from mrcnn_np.nn import functional as F
from mrcnn_np.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.pretrained import shapes_model
from mrcnn_np.reference import import_torch

# %% [markdown]
# ## 3.1 A photograph, its feature pyramid and three objects
#
# The photograph of chapter 1, cut to 512x512 (a multiple of 32, so that every pyramid level is
# exactly half the one below), normalised with the ImageNet statistics. Three ground-truth boxes
# are placed by hand, in `xyxy` pixels: the face, the name tag and the ribbons. They have very
# different sizes, which will matter: the face is about 180 pixels wide, the name tag 88.

# %%
path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
image = plt.imread(path)[40:552]  # (600, 512, 3) uint8 -> (512, 512, 3)
H, W = image.shape[:2]
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
x = ((image.astype(np.float32) / 255 - mean) / std)  # (H, W, 3)
x = x.transpose(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W)
gt_boxes = np.array([[170, 100, 345, 296],  # face
                     [78, 436, 166, 482],  # name tag
                     [324, 446, 456, 490]], dtype=np.float32)  # ribbons; (G, 4) xyxy
gt_names = ["face", "name tag", "ribbons"]
gt_colours = ["tab:orange", "tab:cyan", "tab:pink"]

backbone = resnet_fpn_backbone("resnet50", rng=0)  # random weights, as in chapter 1
with mrcnn_np.no_grad():
    features = backbone(x)  # {"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}
maps = list(features.values())  # [(1, 256, h_l, w_l)], finest first
level_names = ["P2", "P3", "P4", "P5", "P6"]
for name, f in zip(level_names, maps, strict=True):
    print(f"{name}: {f.shape}")

# %% [markdown]
# ## 3.2 The head: one set of weights for every level
#
# `RPNHead` is three convolutions:
#
# - `conv`: a 3x3 conv from 256 to 256 channels, then a ReLU; every output position sees a 3x3
#   window of the level (and, through the backbone, a much larger part of the image);
# - `cls_logits`: a 1x1 conv to `A = 3` channels, one objectness logit per anchor of the
#   location (the probability is its sigmoid);
# - `bbox_pred`: a 1x1 conv to `4A = 12` channels, the deltas `(dx, dy, dw, dh)` of each anchor.
#
# `A = 3` because every level has one anchor size and three aspect ratios (chapter 2). The
# weights are drawn from N(0, 0.01^2) and the biases are zero, as torchvision does; the
# parameter names are torchvision's state-dict keys.
#
# The settings of every stage come from one `MaskRCNNConfig`, whose defaults are torchvision's
# `maskrcnn_resnet50_fpn`: each stage's `from_config(config, **overrides)` builds it with them,
# and a keyword replaces a setting or a part. Here the anchors are the config's, and section 3.4
# builds the RPN with the config's settings around these anchors and this head
# (`RegionProposalNetwork.from_config(config, anchor_generator=..., head=...)`).

# %%
config = MaskRCNNConfig()  # torchvision's maskrcnn_resnet50_fpn settings
anchor_generator = AnchorGenerator.from_config(config)  # sizes 32, 64, 128, 256, 512 on P2 ... P6; ratios 0.5, 1, 2
A = anchor_generator.num_anchors_per_location()[0]  # 3
head = RPNHead(backbone.out_channels, A, rng=0)
print(head)
for name, p in head.named_parameters():
    print(f"head.{name:<20} {p.shape}")

# %% [markdown]
# The head is applied to each level in turn, with the same weights. Its outputs keep the
# level's spatial size: `A` logits and `4A` deltas per position.

# %%
with mrcnn_np.no_grad():
    logits, deltas = head(maps)  # [(1, A, h, w)], [(1, 4A, h, w)] per level
num_per_level = [lg.shape[1] * lg.shape[2] * lg.shape[3] for lg in logits]  # A * h * w
total = sum(num_per_level)
print("level feature         logits        deltas          stride  size  anchors  share")
sizes = [s[0] for s in anchor_generator.sizes]  # anchor size per level
for name, f, lg, dl, n, size in zip(level_names, maps, logits, deltas, num_per_level, sizes,
                                    strict=True):
    stride = H // f.shape[2]
    print(f"{name:<5} {str(f.shape[1:]):<15} {str(lg.shape[1:]):<13} {str(dl.shape[1:]):<15} "
          f"{stride:>6} {size:>5}  {n:>7}  {n / total:5.1%}")
print(f"total anchors: {total}")

# %% [markdown]
# **The RPN sees every level.** Some tutorials say that "only the lowest-level (same size as image) feature map" of the FPN is fed to
# the RPN, that it uses "9 anchors: 3 different scales at 3 different aspect ratios" with
# "2 x 9 objectness scores", and that "two fully connected heads" follow the conv. None of this
# is what torchvision's `maskrcnn_resnet50_fpn` (or the FPN paper, sec. 4.1) does:
#
# - the same head runs on all five levels P2 ... P6. Three quarters of the anchors sit on P2,
#   but they are 32 pixels wide: a face of 180 pixels is found on P5 (section 3.5 counts it);
# - each level has 3 anchors per location of *one* size (the scale is given by the level), and
#   one logit per anchor with a sigmoid. The 9 anchors and the 2-way softmax per anchor are the
#   original Faster R-CNN head on a single feature map, without FPN;
# - the "fully connected" layers are 1x1 convolutions: a fully connected layer applied at every
#   location, which is why the head works at any image size.
#
# The objectness of the random head on each level, the largest of the 3 logits at each
# location, drawn over the image's extent (so a cell of P2 is 4 pixels wide, one of P6 64):

# %% tags=["hide-input"]
def outline(box, **style):
    """A box (4,) xyxy as an unfilled matplotlib rectangle."""
    return patches.Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, **style)


def draw_objectness(level_logits, title, picture=image, boxes=gt_boxes, colours=gt_colours, shared=False):
    """An image (the photograph by default) with its ground truth, then the max-over-anchors
    logit map of each level, drawn over the image's extent; one colour scale for all the levels
    if ``shared``, else one per level."""
    best_maps = [np.asarray(lg)[0].max(axis=0) for lg in level_logits]  # (A, h, w) -> (h, w) per level
    limits = (min(m.min() for m in best_maps), max(m.max() for m in best_maps)) if shared else (None, None)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.4))
    axes = axes.ravel()
    axes[0].imshow(picture)
    for box, colour in zip(boxes, colours, strict=True):
        axes[0].add_patch(outline(box, edgecolor=colour, lw=2))
    axes[0].set_title("image and ground truth", fontsize=11)
    for ax, name, best, size in zip(axes[1:], level_names, best_maps, sizes, strict=True):
        shown = ax.imshow(best, cmap="viridis", extent=(0, picture.shape[1], picture.shape[0], 0),
                          vmin=limits[0], vmax=limits[1])
        ax.set_title(f"{name}: {best.shape[0]}x{best.shape[1]} locations, anchors {size} px",
                     fontsize=11)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    plt.show()


draw_objectness(logits, "Objectness logits of the RANDOM head\n"
                        "(the largest of the 3 anchors' logits at each location)")

# %% [markdown]
# With random weights the maps show at most the image's coarse layout (a frame along the border,
# where the convolutions' zero padding shows; dark bands where the uniform is), nothing that
# marks an object. Section 3.7 draws the same maps for a simulated trained head, and section
# 3.10 for a trained one.

# %% [markdown]
# ## 3.3 From maps to rows: the anchor order
#
# The anchors are listed level by level, then location by location (row-major), then anchor by
# anchor (chapter 2). The head's outputs must be brought into the same order, one row per
# anchor. `permute_and_flatten` does it for one level:
#
# ```text
# (N, A*C, h, w) -> (N, A, C, h, w) -> (N, h, w, A, C) -> (N, h*w*A, C)
# ```
#
# with `C = 1` for the logits and `C = 4` for the deltas: the channel `a*C + c` of the head is
# component `c` of anchor `a`. A tiny example with `A = 3` anchors on a 2x3 map: the logit of
# anchor `a` at location `(y, x)` is set to `100a + 10y + x`, so every value names its origin.

# %%
A_, h_, w_ = 3, 2, 3
a, y, x_ = np.meshgrid(np.arange(A_), np.arange(h_), np.arange(w_), indexing="ij")  # (A, h, w)
tiny_logits = (100 * a + 10 * y + x_).astype(np.float32)[None]  # (1, A, h, w)
rows = permute_and_flatten(Tensor(tiny_logits), 1, A_, 1, h_, w_)  # (1, A, h, w) -> (1, h*w*A, 1)
print("rows:", rows.data[0, :, 0].astype(int))

# %% [markdown]
# Row `k` holds anchor `a = k % A` at location `x = (k // A) % w`, `y = k // (A*w)`: the three
# anchors of a location are neighbours, and locations follow each other row by row. The
# figure writes into each cell of the head's maps the row it goes to:

# %% tags=["hide-input"]
k_of = np.empty((A_, h_, w_), dtype=int)  # the row that (a, y, x) goes to
for k, value in enumerate(rows.data[0, :, 0].astype(int)):
    k_of[value // 100, (value // 10) % 10, value % 10] = k
fig = plt.figure(figsize=(12, 5))
grid = fig.add_gridspec(2, 3, height_ratios=[2, 1.1])
axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
anchor_colours = ["#cfe2f3", "#f9cb9c", "#d9ead3"]
for a_i, ax in enumerate(axes):
    ax.imshow(np.zeros((h_, w_)), cmap="Greys", vmin=0, vmax=1)
    for (yy, xx), k in np.ndenumerate(k_of[a_i]):
        ax.add_patch(patches.Rectangle((xx - 0.5, yy - 0.5), 1, 1, facecolor=anchor_colours[a_i],
                                       edgecolor="black"))
        ax.text(xx, yy, f"row {k}", ha="center", va="center", fontsize=11)
    ax.set_title(f"logits channel {a_i} (anchor a = {a_i}), h x w = 2 x 3", fontsize=10)
    ax.set_xticks(range(w_), [f"x={i}" for i in range(w_)])
    ax.set_yticks(range(h_), [f"y={i}" for i in range(h_)])
ax = fig.add_subplot(grid[1, :])
for k, value in enumerate(rows.data[0, :, 0].astype(int)):
    a_k, y_k, x_k = value // 100, (value // 10) % 10, value % 10
    ax.add_patch(patches.Rectangle((k - 0.5, -0.5), 1, 1, facecolor=anchor_colours[a_k], edgecolor="black"))
    ax.text(k, 0, f"a={a_k}\ny={y_k}\nx={x_k}", ha="center", va="center", fontsize=9)
ax.set_xlim(-0.6, len(k_of.flat) - 0.4)
ax.set_ylim(-0.6, 0.6)
ax.set_yticks([])
ax.set_xticks(range(len(k_of.flat)))
ax.set_xlabel("row k")
ax.set_aspect("equal")
ax.set_title("after permute_and_flatten: (1, h*w*A, 1), the anchor order", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# For the deltas (`C = 4`) the channel `4a + c` holds component `c` of anchor `a`. The same
# trick, with value `1000a + 100c + 10y + x`: each row gets the four components of one anchor.

# %%
a, c, y, x_ = np.meshgrid(np.arange(A_), np.arange(4), np.arange(h_), np.arange(w_), indexing="ij")
tiny_deltas = (1000 * a + 100 * c + 10 * y + x_).astype(np.float32)  # (A, 4, h, w)
tiny_deltas = tiny_deltas.reshape(1, A_ * 4, h_, w_)  # (A, 4, h, w) -> (1, 4A, h, w)
delta_rows = permute_and_flatten(Tensor(tiny_deltas), 1, A_, 4, h_, w_)  # (1, h*w*A, 4)
print(delta_rows.data[0, :5].astype(int))

# %% [markdown]
# `concat_box_prediction_layers` flattens every level this way and concatenates them: one
# objectness column and four delta columns, one row per anchor of the whole pyramid. The
# anchors of `AnchorGenerator` come in exactly this order, so row `k` of each is about the
# same box. A check at one anchor per level: the row of anchor `a` at location `(y, x)` is the
# level's first row plus `(y * w + x) * A + a`; the logit there must be the map's, and the anchor
# must be centred on `(x * stride, y * stride)`:

# %%
objectness, box_deltas = concat_box_prediction_layers(logits, deltas)  # (total, 1), (total, 4)
anchors = anchor_generator((H, W), maps)[0]  # (total, 4), one list entry per image
print("objectness", objectness.shape, "box_deltas", box_deltas.shape, "anchors", anchors.shape)
starts = np.cumsum([0, *num_per_level[:-1]])  # first row of each level
for level, (name, lg) in enumerate(zip(level_names, logits, strict=True)):
    stride = H // lg.shape[2]
    w = lg.shape[3]
    y_, x_, a_ = 200 // stride, 300 // stride, level % A  # a location near the face, some anchor
    k = starts[level] + (y_ * w + x_) * A + a_  # its row
    cx, cy = (anchors[k, :2] + anchors[k, 2:]) / 2
    print(f"{name} a={a_} y={y_:>2} x={x_:>2} -> row {k:>5}: logit {lg.data[0, a_, y_, x_]:+.4f} (map) "
          f"{objectness.data[k, 0]:+.4f} (row); anchor centre ({cx:.0f}, {cy:.0f}) = "
          f"({x_ * stride}, {y_ * stride})")

# %% [markdown]
# ## 3.4 Decoding: the deltas move the anchors
#
# An anchor with centre `(x_a, y_a)` and size `(w_a, h_a)` and deltas `(dx, dy, dw, dh)` give the
# box with centre `(x_a + dx * w_a, y_a + dy * h_a)` and size `(w_a * exp(dw), h_a * exp(dh))`:
# shifts in units of the anchor's size, scale changes on a log scale. The RPN's `BoxCoder` has
# weights `(1, 1, 1, 1)` (the box head's uses `(10, 10, 5, 5)`), and `dw`, `dh` are clamped at
# `log(1000/16)`, so no box grows by more than 62.5 times. An example: a 128x128 anchor moved
# right by a tenth of its width, made 1.5 times as wide and half as high.

# %%
rpn = RegionProposalNetwork.from_config(config, anchor_generator=anchor_generator, head=head)  # torchvision's settings
coder = rpn.box_coder
anchor = np.array([[100, 100, 228, 228]], dtype=np.float32)  # (1, 4), centre (164, 164)
delta = np.array([[0.1, 0.0, np.log(1.5), np.log(0.5)]], dtype=np.float32)  # (1, 4)
decoded = coder.decode(delta, anchor)[:, 0]  # (1, 4) -> (1, 1, 4) -> (1, 4)
print("decoded:", decoded)
print("encode(decoded, anchor) gives the deltas back:", coder.encode(decoded, anchor))
print(f"clamp of dw, dh: {coder.bbox_xform_clip:.4f} = log(1000 / 16)")

# %% [markdown]
# Every anchor of the pyramid is decoded at once. The random head's deltas are large (their
# standard deviation is a few units, because the random backbone's activations are large), so
# its boxes are wild: some deltas even exceed the clamp, and many boxes reach outside the image:

# %%
proposals = coder.decode(box_deltas.data, anchors)[:, 0]  # (total, 4) + (total, 4) -> (total, 4)
d = box_deltas.data
clamped = (d[:, 2:] > coder.bbox_xform_clip).any(axis=1)  # (total,)
print(f"deltas: std {d.std():.2f}; dw or dh above the clamp: {clamped.mean():.1%} of the anchors")
outside = (proposals[:, :2] < 0).any(axis=1) | (proposals[:, 2] > W) | (proposals[:, 3] > H)
print(f"boxes reaching outside the image: {outside.mean():.1%}")

# %% [markdown]
# What `predict` makes of them after the selection of section 3.8 (best first). `predict` is
# inference: it never records the autograd tape, so it needs no `mrcnn_np.no_grad()` around it
# (the backbone and the head called on their own above do).

# %%
random_boxes, random_scores = rpn.predict((H, W), [(H, W)], features)  # per image (P, 4), (P,)
print(f"{len(random_boxes[0])} proposals, probabilities from {random_scores[0][0]:.3f} "
      f"down to {random_scores[0][-1]:.3f}")

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(image)
for box in random_boxes[0][:30]:
    ax.add_patch(outline(box, edgecolor="yellow", lw=1.2))
ax.set_title("the random head's 30 best proposals: meaningless\n(section 3.10: a trained head's)", fontsize=11)
ax.set_xlim(0, W)
ax.set_ylim(H, 0)
ax.axis("off")
plt.show()

# %% [markdown]
# ## 3.5 Training targets: which anchors should fire
#
# In training, every anchor is matched to the ground truth (chapter 2's `Matcher`, thresholds
# 0.7 and 0.3): an anchor whose best IoU with a ground-truth box is at least 0.7 is
# **positive** (label 1), below 0.3 **negative** (label 0), in between **ignored** (-1). Every
# box also makes its best anchors positive, whatever their IoU (the *low-quality matches*),
# so that no object is left without a positive anchor. `assign_targets_to_anchors` returns the
# labels and the matched box of every anchor; `box_coder.encode` turns them into the
# regression targets, the deltas that `bbox_pred` should output.

# %%
labels, matched = rpn.assign_targets_to_anchors([anchors], [gt_boxes])
labels, matched = labels[0], matched[0]  # (total,) in {1, 0, -1}; (total, 4) its ground truth
targets = coder.encode(matched, anchors)  # (total, 4): the deltas that move each anchor onto it
iou = box_iou(gt_boxes, anchors)  # (G, total)
level_of = np.repeat(np.arange(5), num_per_level)  # (total,) level of every anchor
positive = np.flatnonzero(labels == 1)
print(f"positive {len(positive)}, negative {np.sum(labels == 0)}, ignored {np.sum(labels == -1)}")
print()
print("                   positives         positives on       best IoU on")
print("box        size    IoU>=0.7 others   P2 P3 P4 P5 P6     P2   P3   P4   P5   P6")
owner = iou.argmax(axis=0)  # (total,) the ground truth each anchor is matched to
for g, name in enumerate(gt_names):
    mine = positive[owner[positive] == g]
    strong = np.sum(iou[g, mine] >= 0.7)
    per_level = np.bincount(level_of[mine], minlength=5)
    best_per_level = [iou[g, level_of == level].max() for level in range(5)]
    w_g, h_g = gt_boxes[g, 2:] - gt_boxes[g, :2]
    print(f"{name:<9} {w_g:>4.0f}x{h_g:<4.0f} {strong:>8} {len(mine) - strong:>6}   "
          + " ".join(f"{n:>2}" for n in per_level) + "   " + " ".join(f"{v:4.2f}" for v in best_per_level))

# %% [markdown]
# Each object is served by the level whose anchor size fits it: the face (about 180 pixels) by
# the 256-pixel anchors of P5, the name tag and the ribbons by the 64-pixel anchors of P3. If the
# RPN saw only P2, as those tutorials claim, the face's best anchor would overlap it by an IoU
# of 0.03.
#
# Only the name tag has anchors with an IoU of at least 0.7. The face lies between two anchor
# sizes (128 and 256: IoU 0.48 and 0.52), and the ribbons are flatter (ratio 1:3) than the
# flattest anchor (1:2): their positives come from the **low-quality rule** alone (the anchors
# tied for the best IoU with them). Without it, the RPN would be trained to call both objects
# background.
#
# The regression targets decode the positive anchors exactly onto their boxes; the
# *refined anchors* are the picture made famous by the matterport Mask R-CNN notebooks:

# %%
refined = coder.decode(targets[positive], anchors[positive])[:, 0]  # (P, 4)
error = np.abs(refined - matched[positive]).max()
print(f"refined positive anchors vs their ground truth: largest difference {error:.1e} px")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
panels = ((anchors[positive], "--", "positive anchors (dashed), coloured by their box"),
          (refined, "-", "refined: anchors + regression targets"))
for ax, (boxes, style, title) in zip(axes, panels, strict=True):
    ax.imshow(image, alpha=0.75)
    for box, g in zip(boxes, owner[positive], strict=True):
        ax.add_patch(outline(box, edgecolor=gt_colours[g], lw=1.2, ls=style))
    ax.set_title(title, fontsize=11)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")
for g in range(len(gt_boxes)):  # ground truth, and the move of every anchor centre
    box = gt_boxes[g]
    axes[0].add_patch(outline(box, edgecolor="white", lw=2.5))
    axes[0].text(box[0], box[1] - 4, gt_names[g], color="white", fontsize=9, fontweight="bold")
start_c = (anchors[positive, :2] + anchors[positive, 2:]) / 2
end_c = (refined[:, :2] + refined[:, 2:]) / 2
for (x0, y0), (x1, y1), g in zip(start_c, end_c, owner[positive], strict=True):
    axes[1].plot([x0, x1], [y0, y1], color=gt_colours[g], lw=0.8)
    axes[1].plot(x0, y0, ".", color=gt_colours[g], ms=5)
fig.tight_layout()
plt.show()

# %% [markdown]
# On the right every refined anchor lies exactly on its ground-truth box (a single outline per
# object); the thin lines join each anchor's centre to the box's. A trained head does not reach
# its targets exactly: its proposals scatter around the objects, which is why the second stage
# refines the boxes again.

# %% [markdown]
# ## 3.6 The balanced sample and the two losses
#
# An image has tens of thousands of negative anchors and a few dozen positives. The loss is
# computed on a sample of 256 anchors per image, at most half of them positive (all positives
# when there are fewer), negatives filling the rest; ignored anchors are never drawn.
# `fg_bg_sampler` draws it with an explicit generator:

# %%
pos_masks, neg_masks = rpn.fg_bg_sampler([labels], np.random.default_rng(0))  # per image (total,)
sampled_pos, sampled_neg = np.flatnonzero(pos_masks[0]), np.flatnonzero(neg_masks[0])
sampled = np.concatenate([sampled_pos, sampled_neg])
print(f"sampled: {len(sampled_pos)} positive + {len(sampled_neg)} negative = {len(sampled)}")
print("sampled negatives per level P2..P6:", np.bincount(level_of[sampled_neg], minlength=5))
print("all anchors per level P2..P6:      ", np.array(num_per_level))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(image, alpha=0.6)
level_colours = ["tab:blue", "tab:green", "tab:red", "tab:purple", "black"]
centres = (anchors[sampled_neg, :2] + anchors[sampled_neg, 2:]) / 2
for level in range(5):
    here = level_of[sampled_neg] == level
    if here.any():
        ax.plot(*centres[here].T, "o", ms=3 + level, color=level_colours[level],
                label=f"negative on {level_names[level]}")
for box, g in zip(anchors[sampled_pos], owner[sampled_pos], strict=True):
    ax.add_patch(outline(box, edgecolor=gt_colours[g], lw=1.5))
ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
ax.set_title("the 256 anchors of one training step:\n"
             "positive anchors (boxes) and the centres of the negatives", fontsize=10)
ax.set_xlim(0, W)
ax.set_ylim(H, 0)
ax.axis("off")
plt.show()

# %% [markdown]
# The negatives are drawn uniformly from all negative anchors, so three quarters of them come
# from P2, like the anchors themselves. The two losses, as `loss` computes them:
#
# - **objectness**: binary cross-entropy with logits, averaged over the 256 sampled anchors
#   (target 1 for the positives, 0 for the negatives);
# - **box regression**: smooth L1 with `beta = 1/9` between the predicted deltas and the
#   targets, over the sampled *positives* only, summed over the anchors and the 4 components
#   and divided by the number *sampled* (256), not by the number of positives.
#
# `loss(..., sampled=(pos_masks, neg_masks))` reproduces this draw (pass `rng=` instead to let
# it draw; one of the two is required). It returns the training-mode proposals and their
# scores, the losses, and the draw it used, here the one given. Only the losses are used here;
# `no_grad()` keeps the tape of a loss nobody differentiates from being recorded.

# %%
with mrcnn_np.no_grad():
    _, _, losses, _ = rpn.loss((H, W), [(H, W)], features, [gt_boxes], sampled=(pos_masks, neg_masks))
print({k: round(v.item(), 5) for k, v in losses.items()})

z, t = objectness.data[sampled, 0], labels[sampled]  # logits and 0/1 targets of the sample
bce = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))  # never overflows
diff = np.abs(box_deltas.data[sampled_pos] - targets[sampled_pos])  # (P, 4)
beta = 1 / 9
smooth_l1 = np.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta).sum() / len(sampled)
print(f"by hand: objectness {bce:.5f}, box {smooth_l1:.5f}")

# %% [markdown]
# The random head's objectness loss is above log 2 = 0.69, the loss of a head that answers 0.5
# everywhere: its logits are a few units large and unrelated to the labels. Smooth L1 is
# quadratic for errors below `beta = 1/9` and linear above, so a few wild deltas do not dominate
# the gradient.

# %% [markdown]
# ## 3.7 A stand-in for a trained head
#
# The package's trained model (section 3.10) knows shapes, not photographs. To see what the rest of
# the RPN does with *good* predictions on the photograph, this section **simulates a trained
# head**. `SimulatedHead` has no weights and ignores the feature
# values; it computes what a well-trained head approximately outputs, with the library's own
# functions, and adds noise:
#
# - objectness logit `= 12 * (IoU - 0.4) + noise`, `IoU` the anchor's best overlap with the
#   ground truth, noise N(0, 1.5^2): high on anchors over an object, low elsewhere, and
#   imperfect;
# - deltas: the regression targets of section 3.5 plus N(0, 0.1^2) noise for anchors whose best
#   IoU is at least 0.3, and noise alone for the others (a head is never trained to regress
#   those).
#
# It returns its outputs in the head's layout, `(N, A, h, w)` and `(N, 4A, h, w)` per level: the
# inverse of `permute_and_flatten`. So it plugs into `RegionProposalNetwork` in place of
# `RPNHead`, and `predict` runs unchanged. The proposals that follow are as good as this
# simulation makes them, no better: they show the mechanics of selection, not the quality of a
# real network.

# %%
class SimulatedHead(nn.Module):
    """Stands in for a trained RPNHead: objectness and deltas from the ground truth + noise."""

    def __init__(self, anchor_generator, image_size, gt_boxes, seed=0, regress=True):
        super().__init__()
        self.anchor_generator, self.image_size, self.gt_boxes = anchor_generator, image_size, gt_boxes
        self.seed, self.regress = seed, regress
        self.coder = BoxCoder((1.0, 1.0, 1.0, 1.0))  # the RPN's
        self.A = anchor_generator.num_anchors_per_location()[0]

    def forward(self, features):
        """[(1, C, h_l, w_l)] -> logits [(1, A, h_l, w_l)], deltas [(1, 4A, h_l, w_l)]."""
        rng = np.random.default_rng(self.seed)
        anchors = self.anchor_generator(self.image_size, features)[0]  # (total, 4), anchor order
        iou = box_iou(self.gt_boxes, anchors)  # (G, total)
        best = iou.max(axis=0)  # (total,)
        logits = 12 * (best - 0.4) + rng.normal(0, 1.5, best.shape)  # (total,)
        targets = self.coder.encode(self.gt_boxes[iou.argmax(axis=0)], anchors)  # (total, 4)
        regress = best[:, None] >= 0.3 if self.regress else False
        deltas = np.where(regress, targets, 0) + rng.normal(0, 0.1, targets.shape)  # (total, 4)
        out_logits, out_deltas, first = [], [], 0
        for f in features:
            h, w = f.shape[2:]
            A, n = self.A, h * w * self.A
            lg = logits[first:first + n].reshape(1, h, w, A, 1)  # rows -> (1, h, w, A, 1)
            dl = deltas[first:first + n].reshape(1, h, w, A, 4)  # rows -> (1, h, w, A, 4)
            lg = lg.transpose(0, 3, 4, 1, 2).reshape(1, A, h, w)  # -> (1, A, 1, h, w) -> (1, A, h, w)
            dl = dl.transpose(0, 3, 4, 1, 2).reshape(1, 4 * A, h, w)  # -> (1, A, 4, h, w) -> (1, 4A, h, w)
            out_logits.append(Tensor(lg.astype(np.float32)))
            out_deltas.append(Tensor(dl.astype(np.float32)))
            first += n
        return out_logits, out_deltas


simulated = RegionProposalNetwork.from_config(config, anchor_generator=anchor_generator,
                                              head=SimulatedHead(anchor_generator, (H, W), gt_boxes))
sim_logits, sim_deltas = simulated.head(maps)
sim_objectness, sim_box_deltas = concat_box_prediction_layers(sim_logits, sim_deltas)  # rows again
with mrcnn_np.no_grad():
    _, _, sim_losses, _ = simulated.loss((H, W), [(H, W)], features, [gt_boxes], sampled=(pos_masks, neg_masks))
print("losses of the simulated head on the same sample:")
print({k: round(v.item(), 5) for k, v in sim_losses.items()})

# %% tags=["hide-input"]
draw_objectness(sim_logits, "Objectness logits of the SIMULATED trained head\n"
                            "(the largest of the 3 anchors' logits at each location)")

# %% [markdown]
# The simulated objectness lights up each object on the levels whose anchors fit it (the name tag
# and the ribbons on P3, a little on P2; the face on P4 and P5), and is noise elsewhere. Its losses are far below the random head's, and its box loss is small but
# not zero: the noise of the deltas.

# %% [markdown]
# ## 3.8 Selecting the proposals, step by step
#
# `RegionProposalNetwork.predict` decodes every anchor, then `filter_proposals` keeps the best
# boxes. With torchvision's inference defaults:
#
# 1. **top-n per level**: the 1000 highest logits of each level (`pre_nms_top_n`); per level, so
#    that the coarse levels, with few anchors, are not crowded out by P2;
# 2. **clip** the boxes to the image;
# 3. **remove small** boxes, narrower or lower than `min_size = 1e-3` pixels;
# 4. **score threshold**: keep probabilities (sigmoid of the logit) `>= score_thresh = 0.0`;
# 5. **NMS 0.7 per level**: `batched_nms` with the level as category, so boxes of different
#    levels never suppress each other;
# 6. **post-NMS top-n**: the 1000 best of all levels together (`post_nms_top_n`).
#
# Each step, by hand with the library's functions, counting the survivors of each level:

# %%
def select_step_by_step(objectness, box_deltas):
    """filter_proposals written out for one image, counting the survivors of each level.
    objectness (total, 1) logits and box_deltas (total, 4), rows in the anchor order."""
    pre_n, post_n = rpn.pre_nms_top_n["testing"], rpn.post_nms_top_n["testing"]  # 1000, 1000
    boxes = coder.decode(box_deltas, anchors)[:, 0]  # (total, 4)
    logit, lvl = objectness[:, 0], level_of  # (total,), (total,)
    counts = {"anchors": np.bincount(lvl, minlength=5)}
    keep = top_n_per_level(logit[None], num_per_level, pre_n)[0]  # (1, total) -> (K,) by level
    boxes, logit, lvl = boxes[keep], logit[keep], lvl[keep]
    counts[f"top {pre_n} per level"] = np.bincount(lvl, minlength=5)
    boxes = clip_boxes_to_image(boxes, (H, W))
    counts["clip (count unchanged)"] = np.bincount(lvl, minlength=5)
    keep = remove_small_boxes(boxes, rpn.min_size)
    boxes, logit, lvl = boxes[keep], logit[keep], lvl[keep]
    counts[f"min size {rpn.min_size}"] = np.bincount(lvl, minlength=5)
    prob = F.sigmoid(logit).data  # probabilities
    keep = np.flatnonzero(prob >= rpn.score_thresh)
    boxes, prob, lvl = boxes[keep], prob[keep], lvl[keep]
    counts[f"score >= {rpn.score_thresh}"] = np.bincount(lvl, minlength=5)
    before_nms = boxes, prob, lvl
    keep = batched_nms(boxes, prob, lvl, rpn.nms_thresh)  # (K,) by decreasing score
    counts[f"NMS {rpn.nms_thresh} per level"] = np.bincount(lvl[keep], minlength=5)
    keep = keep[:post_n]
    counts[f"post-NMS top {post_n}"] = np.bincount(lvl[keep], minlength=5)
    return counts, before_nms, (boxes[keep], prob[keep], lvl[keep])


def print_counts(counts):
    print(f"{'step':<24}" + "".join(f"{n:>7}" for n in level_names) + "    all")
    for step, c in counts.items():
        print(f"{step:<24}" + "".join(f"{v:>7}" for v in c) + f"{c.sum():>7}")


counts, before_nms, final = select_step_by_step(sim_objectness.data, sim_box_deltas.data)
final_boxes, final_scores, final_levels = final
print_counts(counts)
pred_boxes, pred_scores = simulated.predict((H, W), [(H, W)], features)
print("the same boxes and scores as predict():",
      np.array_equal(pred_boxes[0], final_boxes) and np.array_equal(pred_scores[0], final_scores))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(11, 3.8))
steps = list(counts)
bar_w = 0.16
for level in range(5):
    ax.bar(np.arange(len(steps)) + (level - 2) * bar_w, [counts[s][level] for s in steps], bar_w,
           color=level_colours[level], label=level_names[level])
ax.set_yscale("log")
ax.set_xticks(range(len(steps)), [s.replace(" (count unchanged)", "") for s in steps], fontsize=10)
ax.set_ylabel("boxes (log scale)")
ax.legend(ncol=5, fontsize=9)
ax.set_title("Survivors of each selection step, per level (simulated trained head)", fontsize=11)
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# The top-n step does most of the cutting on the fine levels (P2 keeps 1000 of its 49152
# anchors), while P5 and P6 keep all theirs: without a per-level top-n, the 49152 anchors of P2
# would crowd out everything else. Here, removing small boxes and the score threshold remove
# nothing: `score_thresh = 0.0` never does (a probability is at least 0; other configurations
# raise it), and `min_size = 1e-3` only removes boxes that clipping has flattened to nothing,
# which this head does not propose. NMS removes the near-duplicates, most of them on the
# objects, where neighbouring anchors moved by similar deltas overlap by more than 0.7; the
# background boxes of the simulation's noise are scattered and mostly survive. The post-NMS
# cut keeps the 1000 best of all levels together.
#
# The random head's wild boxes go through the same steps differently: the ones that lie
# entirely outside the image are clipped to zero width or height, and `min_size` removes them.
# The selection is also what `predict` returned in section 3.4:

# %%
random_counts, _, (random_final, _, _) = select_step_by_step(objectness.data, box_deltas.data)
print_counts(random_counts)
print("the same boxes as predict():", np.array_equal(random_final, random_boxes[0]))

# %% [markdown]
# Before NMS the best boxes of the simulated head pile up on the objects. After NMS the 50 best
# are still mostly there, but no longer near-copies of each other: shifted, resized, and from
# several levels. Because NMS runs *per level*, a P4 box and a P5 box on the face both survive
# even when they overlap by more than 0.7; a few boxes come from the noise of the simulation.

# %% tags=["hide-input"]
boxes, prob, lvl = before_nms
order = np.argsort(-prob, kind="stable")[:50]  # the 50 best before NMS
fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
panels = ((boxes[order], lvl[order], "50 best boxes before NMS"),
          (final_boxes[:50], final_levels[:50], "50 best proposals after NMS"))
for ax, (bx, lv, title) in zip(axes, panels, strict=True):
    ax.imshow(image, alpha=0.7)
    for box, level in zip(bx, lv, strict=True):
        ax.add_patch(outline(box, edgecolor=level_colours[level], lw=1.2))
    ax.set_title(title + " (colour: level)", fontsize=11)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")
for level in range(5):
    axes[1].plot([], [], color=level_colours[level], label=level_names[level])
axes[1].legend(loc="upper right", fontsize=9, framealpha=0.9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3.9 Recall against the number of proposals
#
# The second stage can only find an object that some proposal covers. The RPN's **recall** at
# `n` proposals is the fraction of ground-truth boxes that one of the `n` best proposals
# overlaps with IoU at least 0.5 (or 0.7). Three RPNs on the same image:
#
# - the simulated trained head;
# - the same objectness with the regression switched off (`regress=False`: the deltas are
#   noise only), so the proposals are essentially the anchors themselves;
# - the random head of sections 3.2 to 3.6.
#
# Three boxes make a coarse curve, so the simulated heads are run with 8 noise seeds and the
# recall averaged over them.

# %%
def recall_curve(boxes, n_max=1000, threshold=0.5):
    """(n_max,): the fraction of the ground-truth boxes that one of the n best boxes overlaps
    with IoU >= threshold, for n = 1 ... n_max. ``boxes`` (P, 4) by decreasing score."""
    hit = box_iou(gt_boxes, boxes[:n_max].astype(np.float32)) >= threshold  # (G, P)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), n_max)  # (G,) the first box that hits
    return (first[:, None] < np.arange(1, n_max + 1)[None]).mean(axis=0)  # (G, n_max) -> (n_max,)


curves = {}
for label, regress in (("simulated head", True), ("simulated, no regression", False)):
    runs = []
    for seed in range(8):
        head_s = SimulatedHead(anchor_generator, (H, W), gt_boxes, seed=seed, regress=regress)
        rpn_s = RegionProposalNetwork.from_config(config, anchor_generator=anchor_generator, head=head_s)
        boxes_s, _ = rpn_s.predict((H, W), [(H, W)], features)
        runs.append(boxes_s[0])
    curves[label] = {t: np.mean([recall_curve(b, threshold=t) for b in runs], axis=0)
                     for t in (0.5, 0.7)}
curves["random head"] = {t: recall_curve(random_boxes[0], threshold=t) for t in (0.5, 0.7)}
print("                          recall at IoU 0.5      recall at IoU 0.7")
print("proposals                    10   100  1000        10   100  1000")
for label, c in curves.items():
    print(f"{label:<25} {c[0.5][9]:5.2f} {c[0.5][99]:5.2f} {c[0.5][999]:5.2f}     "
          f"{c[0.7][9]:5.2f} {c[0.7][99]:5.2f} {c[0.7][999]:5.2f}")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
styles = {"simulated head": "-", "simulated, no regression": "--", "random head": ":"}
n = np.arange(1, 1001)
for ax, t in zip(axes, (0.5, 0.7), strict=True):
    for label, c in curves.items():
        ax.plot(n, c[t], styles[label], lw=2, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("number of proposals kept (best first)")
    ax.set_title(f"recall at IoU >= {t}", fontsize=11)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("fraction of ground-truth boxes found")
axes[0].set_ylim(-0.03, 1.03)
axes[1].legend(fontsize=9, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# What the curves show:
#
# - at IoU 0.5 the simulated head finds all three objects within its first ten proposals; its
#   objectness ranks the boxes on the objects first, which is what the top-n steps rely on;
# - at IoU 0.7 the regression matters. Without it the proposals are the anchors, and only the
#   name tag has an anchor with an IoU of 0.7 or more (section 3.5): the recall stops at one in
#   three. With it, the best anchors are moved onto the face and the ribbons;
# - the random head finds none of the three objects, even among 1000 proposals.
#
# Real detectors report the same curves (average recall at 100 or 1000 proposals) over a whole
# dataset. A trained RPN comes next.

# %% [markdown]
# ## 3.10 A trained RPN on shapes
#
# The package ships a small Mask R-CNN with *trained* weights: `mrcnn_np.pretrained.shapes_model()`,
# trained from scratch by `mrcnn-np demo` on 128 x 128 images of squares, circles and triangles
# (`mrcnn_np.data.shapes`). It is the small configuration `config.tiny()`, narrowed by the demo: a
# ResNet with one block per stage and an FPN of 32 channels. Its RPN is this chapter's
# `RegionProposalNetwork` with the same anchors (32 to 512 pixels on P2 to P6, three ratios), a
# head of 32 channels, and fewer boxes kept (printed below). The image is held out: the demo trains on the shapes of seed
# 0, this one is drawn with seed 1. `model.transform` normalises it (128 x 128 needs no resizing
# or padding), `model.backbone` computes the pyramid, and from there it is sections 3.2 and 3.4
# again, with `draw_objectness` of section 3.2.
#
# What the training targets ask of this head follows from section 3.5. The shapes are drawn 32 to
# 77 pixels across; their boxes are at most about 110 pixels wide (a rotated square), smaller
# where a shape is partly hidden. So their positive anchors are the 32-, 64- and 128-pixel ones
# of P2, P3 and P4, each shape on the level whose anchors fit its size. The 256- and 512-pixel anchors of P5
# and P6 are larger than the whole image: no shape reaches an IoU of 0.3 with them, so in
# training every one of them is a negative, and the head learns to keep P5 and P6 low
# everywhere. The maps below, on one colour scale for all the levels, show what it has learned;
# the boxes on the first panel are the ground truth, coloured by class (square blue, circle
# orange, triangle green).

# %%
trained = shapes_model()  # MaskRCNN(config.tiny()) with the shipped weights, in eval mode
shapes_image, shapes_target = shapes_dataset(13, seed=1, **DemoSettings().data())[12]  # held out; (128, 128, 3) uint8
shapes_boxes, shapes_labels = shapes_target["boxes"], shapes_target["labels"]  # (G, 4) xyxy, (G,) in 1..3
class_colours = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}  # square, circle, triangle
print("ground truth:", [trained.classes[k] for k in shapes_labels])
with mrcnn_np.no_grad():
    shapes_batch, _ = trained.transform([shapes_image])  # ImageList: (1, 3, 128, 128), [(128, 128)]
    shapes_features = trained.backbone(shapes_batch.tensors)  # P2 (1, 64, 32, 32) ... P6 (1, 64, 2, 2)
    trained_logits, _ = trained.rpn.head(list(shapes_features.values()))  # [(1, A, h, w)] per level
draw_objectness(trained_logits, "Objectness logits of the TRAINED head on a held-out shapes image\n"
                                "(the largest of the 3 anchors' logits at each location; one colour scale)",
                shapes_image, shapes_boxes, [class_colours[k] for k in shapes_labels], shared=True)

# %% [markdown]
# `predict` selects the proposals as in section 3.8, with the small configuration's numbers.
# The printout measures how well the best of them cover the three shapes (IoU with each
# ground-truth box); the figure shows the 10 best, and all of them.

# %%
(trained_boxes,), (trained_scores,) = trained.rpn.predict(shapes_batch.tensors.shape[-2:],
                                                          shapes_batch.image_sizes, shapes_features)
print(f"top {trained.rpn.pre_nms_top_n['testing']} per level, NMS {trained.rpn.nms_thresh}, "
      f"top {trained.rpn.post_nms_top_n['testing']}: {len(trained_boxes)} proposals, "
      f"probabilities {trained_scores[0]:.3f} down to {trained_scores[-1]:.3f}")
overlap = box_iou(shapes_boxes, trained_boxes)  # (G, P), the proposals best first
for label, row in zip(shapes_labels, overlap, strict=True):
    first = np.flatnonzero(row >= 0.7)
    print(f"{trained.classes[label]:<9} best IoU: {row[:10].max():.2f} among the 10 best proposals, "
          f"{row.max():.2f} among all; the first with IoU >= 0.7 is "
          + (f"number {first[0] + 1}" if len(first) else "none"))

fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
rank_colour = plt.get_cmap("viridis")
for ax in axes:
    ax.imshow(shapes_image, alpha=0.75)
for rank in reversed(range(10)):  # the best drawn last, on top
    axes[0].add_patch(outline(trained_boxes[rank], edgecolor=rank_colour(rank / 9), lw=2))
for box in trained_boxes:
    axes[1].add_patch(outline(box, edgecolor="black", lw=0.6, alpha=0.5))
for ax, title in zip(axes, ("the 10 best proposals (the best dark)", f"all {len(trained_boxes)} proposals"),
                     strict=True):
    for box, label in zip(shapes_boxes, shapes_labels, strict=True):
        ax.add_patch(outline(box, edgecolor=class_colours[label], lw=1.5, ls="--"))
    ax.set_title(title, fontsize=11)
    ax.set_xlim(0, shapes_image.shape[1])
    ax.set_ylim(shapes_image.shape[0], 0)
    ax.axis("off")
fig.suptitle("Proposals of the TRAINED RPN; the ground truth dashed", fontsize=12)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3.11 Check against torchvision
#
# Torchvision's `RegionProposalNetwork` with its `RPNHead`, initialised by torchvision
# (N(0, 0.01^2) weights), is loaded into ours with `load_torchvision_state_dict` (the keys are
# the same: `head.conv.0.0.weight`, `head.cls_logits.weight` ...). Both run on the random
# ResNet-50-FPN features of the photograph, in float32. Torchvision keeps 1000 proposals too;
# the table compares them box for box.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.rpn import RegionProposalNetwork as TVRegionProposalNetwork
    from torchvision.models.detection.rpn import RPNHead as TVRPNHead

    from mrcnn_np.convert import load_torchvision_state_dict

    torch.manual_seed(0)
    top_n = {"training": 2000, "testing": 1000}
    reference = TVRegionProposalNetwork(
        TVAnchorGenerator(anchor_generator.sizes, anchor_generator.aspect_ratios),
        TVRPNHead(256, A),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n=top_n, post_nms_top_n=top_n, nms_thresh=0.7,
    ).eval()
    ours = RegionProposalNetwork.from_config(config, head=RPNHead(256, A))
    print(load_torchvision_state_dict(ours, reference))
    images = ImageList(torch.zeros(1, 3, H, W), [(H, W)])  # only the sizes are read
    torch_features = {k: torch.from_numpy(np.asarray(v)) for k, v in features.items()}
    with torch.no_grad():
        (theirs,), _ = reference(images, torch_features)
    (boxes_ours,), (scores_ours,) = ours.predict((H, W), [(H, W)], features)
    theirs = theirs.numpy()
    print(f"proposals: ours {len(boxes_ours)}, torchvision {len(theirs)}")
    distance = np.abs(boxes_ours[:, None] - theirs[None]).max(axis=2)  # (P, P) largest coordinate gap
    ours_to_theirs, theirs_to_ours = distance.min(axis=1).max(), distance.min(axis=0).max()
    print(f"nearest torchvision box to each of ours: at most {ours_to_theirs:.1e} px away")
    print(f"nearest box of ours to each of torchvision's: at most {theirs_to_ours:.1e} px away")
    moved = np.flatnonzero(np.abs(boxes_ours - theirs).max(axis=1) > 0.01)  # where the order differs
    print(f"positions where the order differs: {moved.tolist()}, scores {scores_ours[moved]}")
    assert len(boxes_ours) == len(theirs) and max(ours_to_theirs, theirs_to_ours) < 0.01
    # how far apart the two libraries put one anchor's probability: two proposals whose probabilities
    # are closer than twice that may come out in either order
    with mrcnn_np.no_grad():
        our_logits, _ = ours.head(list(features.values()))
    with torch.no_grad():
        their_logits, _ = reference.head(list(torch_features.values()))
    gap = max(np.abs(1 / (1 + np.exp(-np.asarray(a.data))) - b.sigmoid().numpy()).max()
              for a, b in zip(our_logits, their_logits, strict=True))
    print(f"largest difference between the libraries' probabilities of one anchor: {gap:.1e}")
    closest = [np.delete(np.abs(scores_ours[moved] - scores_ours[i]), k).min() for k, i in enumerate(moved)]
    assert all(d <= 2 * gap for d in closest), "order differs between probabilities farther apart than rounding"

# %% [markdown]
# The losses too: in training mode torchvision samples the 256 anchors with `torch.randperm`;
# to compare, its sampler is made to return the draw of section 3.6.

# %%
if torch is not None:
    reference.train()
    torch_sample = [torch.from_numpy(m) for m in pos_masks], [torch.from_numpy(m) for m in neg_masks]
    reference.fg_bg_sampler = lambda _labels: torch_sample  # the same 256 anchors as ours
    with torch.no_grad():
        _, their_losses = reference(images, torch_features, [{"boxes": torch.from_numpy(gt_boxes)}])
    with mrcnn_np.no_grad():
        _, _, our_losses, _ = ours.loss((H, W), [(H, W)], features, [gt_boxes], sampled=(pos_masks, neg_masks))
    for name, value in our_losses.items():
        print(f"{name:<17} ours {value.item():.6f}  torchvision {their_losses[name].item():.6f}  "
              f"relative difference {abs(value.item() / their_losses[name].item() - 1):.1e}")
        assert abs(value.item() / their_losses[name].item() - 1) < 1e-4, name

# %% [markdown]
# In float32 the boxes agree to a few thousandths of a pixel: the head's convolutions add in a
# different order, and the decoding's `exp` amplifies the last bits of large deltas. Both keep the
# same 1000 boxes in the same order, except where two probabilities are equal or closer than the
# libraries' rounding (the largest gap between their probabilities of one anchor, printed above):
# such near-ties can come out in either order, and exact ties are ordered differently anyway
# (torchvision's order of equal scores comes from an unstable sort; see the docstring of
# `mrcnn_np/ops/nms.py`). Which near-ties swap depends on the last bits, so on how the machine's
# threads split the convolutions (`mrcnn_np.kernels.threads`). The losses agree to float32 rounding. `tests/reference/test_rpn.py`
# repeats these checks in float64, where the proposals agree to 1e-8 pixels, and compares the
# gradients of both losses.

# %% [markdown]
# ## Summary
#
# - `RPNHead` is a 3x3 conv from 256 to 256 channels with a ReLU, then two 1x1 convs: `cls_logits`
#   to `A = 3` objectness logits and `bbox_pred` to `4A = 12` deltas per position. Its weights
#   are drawn from N(0, 0.01²) and the same weights run on all five levels; on the 512x512
#   photograph that is 65,472 anchors, 75.1% of them on P2.
# - `permute_and_flatten` turns `(N, A*C, h, w)` into `(N, h*w*A, C)`, and
#   `concat_box_prediction_layers` stacks the levels in exactly the order of the anchors, so row
#   `k` of the logits, the deltas and the anchors is the same box.
# - Decoding uses the weights `(1, 1, 1, 1)` and the clamp `log(1000 / 16)`. The random head's
#   deltas (std 2.32) push 41% of the boxes past the image border.
# - In training the matcher (0.7 / 0.3, plus the low-quality matches) labels 21 anchors
#   positive, 64,980 negative and 471 ignored. Each object is served by the level whose anchors
#   fit it: the face by P5, the name tag and the ribbons by P3. The face and the ribbons get
#   positives only from the low-quality rule.
# - The losses use a sample of 256 anchors (here 21 positive + 235 negative): binary
#   cross-entropy of the objectness, and smooth L1 (`beta = 1/9`) of the deltas of the
#   positives, summed and divided by the 256 sampled.
# - Proposals are selected by the top 1000 per level, clipping, `min_size` 1e-3,
#   `score_thresh` 0.0, NMS 0.7 per level and the best 1000 overall. For the simulated head that
#   is 65,472 -> 3,960 -> 2,367 after NMS -> 1,000.
# - The simulated head covers all three objects at IoU 0.5 within its first 10 proposals. Without
#   regression, its recall at IoU 0.7 stops at one in three, and the random head finds none. The
#   trained shapes RPN puts a box of IoU >= 0.7 on each of the three shapes among its first three
#   proposals.
# - Against torchvision in float32, the same 1000 proposals agree to a few thousandths of a pixel
#   (the order differs only where two probabilities are within rounding of each other), and the two
#   losses agree to float32 rounding.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/03_rpn/`. `mrcnn-np check 03` grades it against `mrcnn_np` and
# torchvision; `mrcnn-np check 03 --hint` reveals the hints one at a time. The tasks:
#
# 1. `flatten_head_outputs`: the head's per-level maps to one row per anchor, in the anchors'
#    order.
# 2. `decode_proposals`: deltas and anchors to proposals, with the clamp.
# 3. `select_proposals`: top-n per level, clip, drop small and low-scoring boxes, NMS per level,
#    and the best overall.
# 4. `rpn_loss`: the objectness BCE and the box smooth L1 over the sampled anchors.
#
# Further questions:
#
# - With one global top-1000 instead of a top-n per level, how many of the 1000 boxes could come
#   from P5 and P6? What would that do to large objects?
# - The box loss is divided by the number of sampled anchors, not by the number of positives.
#   How much does one positive anchor weigh in an image with 5 positives and in one with 100?
# - NMS runs per level, so a P4 box and a P5 box on the same face can both survive. Which later
#   stage removes the duplicate, and how?
