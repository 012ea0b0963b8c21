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
# # 5. The box and mask heads
#
# Chapter 4 cut every proposal out of the feature pyramid as a grid of a fixed size: 7x7 for
# the box branch, 14x14 for the mask branch. This chapter is about what the second stage does
# with those grids.
#
# - The **box head** is a small multilayer perceptron: it flattens the `256 x 7 x 7` grid,
#   applies two fully connected layers of 1024 units and predicts a score for every class and
#   a box correction *for every class*.
# - **`postprocess_detections`** turns scores and corrections into detections: softmax,
#   decode, clip, drop the background, threshold, NMS per class, the best 100.
# - The **mask head** is a small *fully convolutional* network: on the 14x14 grid of each
#   detection it predicts a 28x28 mask for every class. The predicted class's mask is then
#   **pasted** into the image.
# - In training, each positive proposal's **mask target** is its ground-truth mask seen
#   through the proposal, resampled to 28x28, and the **mask loss** looks at the mask of the
#   ground-truth class only.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/model/roi_heads.py` (`TwoMLPHead`, `FastRCNNPredictor`) | `models/detection/faster_rcnn.py` |
# | `mrcnn_np/model/roi_heads.py` (`MaskRCNNHeads`, `MaskRCNNPredictor`) | `models/detection/mask_rcnn.py` |
# | `mrcnn_np/model/roi_heads.py` (`RoIHeads`, losses, `project_masks_on_boxes`) | `models/detection/roi_heads.py` |
# | `mrcnn_np/model/transform.py` (`paste_masks_in_image`) | `models/detection/roi_heads.py` |
# | `mrcnn_np/ops/box_coder.py` | `models/detection/_utils.py` (`BoxCoder`) |
#
# **About the weights.** The model of sections 5.1 to 5.8 has *random* weights, and its class
# scores and masks are meaningless. It is run where the point is the shapes and the flow of the
# data (sections 5.2 and 5.5, and parts of 5.3, 5.4, 5.6 and 5.8). Where the point is what the
# outputs *mean* (class-specific boxes, the selection of detections, pasting a mask, the targets
# and the losses), the chapter works on a synthetic image whose ground truth is known exactly
# and **constructs the predictions by hand** from that ground truth, saying so each time. The
# functions that process them are the library's, unchanged. Section 5.9 then runs the same
# steps with a small model **trained** on such shapes, which ships with the package.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

import mrcnn_np
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.data.shapes import SHAPES, random_image, shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.roi_heads import fastrcnn_loss, maskrcnn_loss, project_masks_on_boxes
from mrcnn_np.model.transform import expand_boxes, paste_mask_in_image, paste_masks_in_image
from mrcnn_np.nn import functional as F
from mrcnn_np.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.pretrained import shapes_model
from mrcnn_np.reference import import_torch

# %% [markdown]
# ## 5.1 A synthetic image, the model and stand-in proposals
#
# `mrcnn_np.data.shapes.random_image` draws shapes with exact masks: here a square partly
# hiding a circle, and a triangle, on a 256 x 320 image. The masks are the *visible* pixels
# of each shape; the ground-truth boxes are the masks' tight boxes. The labels are 1-based
# indices into `SHAPES` (1 square, 2 circle, 3 triangle) and 0 is the background, so the
# model has `K = 4` classes.
#
# The model is the library's `MaskRCNN` with torchvision's defaults except two: 4 classes,
# and images resized to a shorter side of 256 (at most 320 on the longer one), which leaves
# this image as it is and keeps the chapter fast. Its backbone computes the feature pyramid
# once; the heads of this chapter read it through their two `MultiScaleRoIAlign` poolers.

# %%
image, gt_masks, gt_labels = random_image(np.random.default_rng(119), 256, 320, max_instances=3, min_instances=3)
H, W = image.shape[:2]  # (256, 320, 3) float32 in [0, 1]; masks (G, H, W) bool; labels (G,)
CLASSES = ("background", *SHAPES)  # label k is CLASSES[k]
K = len(CLASSES)  # 4


def tight_box(mask):
    """The smallest xyxy box holding every True pixel of a (H, W) mask."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


gt_boxes = np.array([tight_box(m) for m in gt_masks], dtype=np.float32)  # (G, 4) xyxy
for label, box, mask in zip(gt_labels, gt_boxes, gt_masks, strict=True):
    print(f"{CLASSES[label]:>8} (label {label}): box {box.astype(int)}, {mask.sum()} visible pixels")

config = MaskRCNNConfig(num_classes=K, min_size=256, max_size=320)  # torchvision's defaults otherwise
model = MaskRCNN(config, rng=0).eval()  # random weights
heads = model.roi_heads  # RoIHeads: poolers, box head and predictor, mask head and predictor
with mrcnn_np.no_grad():
    batch, _ = model.transform([image])  # normalised, (1, 3, 256, 320): no resize, no padding needed
    features = {k: v.data for k, v in model.backbone(batch.tensors).items()}  # P2 ... P6
image_sizes = batch.image_sizes  # [(256, 320)]
print("features:", {k: v.shape for k, v in features.items()})

# %% [markdown]
# **Stand-in proposals.** The random model's RPN proposes meaningless boxes (chapter 3). A
# trained RPN proposes many overlapping boxes on every object, and a few elsewhere. We
# construct such a set: 20 copies of each ground-truth box with their corners moved at random
# (a standard deviation of 12% of the box's size), and 40 random boxes, 100 proposals in all.

# %%
rng = np.random.default_rng(1)
jittered = [box + rng.normal(0, 0.12, (20, 4)) * np.tile(box[2:] - box[:2], 2) for box in gt_boxes]  # 3 x (20, 4)
corner = rng.uniform((0, 0), (W - 30, H - 30), (40, 2))
random_boxes = np.concatenate([corner, corner + rng.uniform(20, 110, (40, 2))], axis=1)  # (40, 4)
proposals = clip_boxes_to_image(np.concatenate([*jittered, random_boxes]).astype(np.float32), (H, W))  # (100, 4)
iou = box_iou(gt_boxes, proposals)  # (G, R)
best_iou, best_gt = iou.max(axis=0), iou.argmax(axis=0)  # (R,) each
print(f"{len(proposals)} proposals; best IoU with the ground truth >= 0.5: {(best_iou >= 0.5).sum()}, "
      f"< 0.3: {(best_iou < 0.3).sum()}")

# %% tags=["hide-input"]
# drawing helpers: one colour per class, boxes, mask outlines
CLASS_COLOURS = {0: "gray", 1: "tab:blue", 2: "tab:orange", 3: "tab:green"}  # background, square, circle, triangle


def outline(ax, box, **style):
    """An unfilled rectangle for an xyxy box."""
    x1, y1, x2, y2 = box
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))


def mask_outline(ax, mask, colour, lw=2, **style):
    """The outline of a boolean or probability mask (level 0.5), pixel (r, c) centred on (c + 0.5, r + 0.5)."""
    h, w = mask.shape
    ax.contour(np.arange(w) + 0.5, np.arange(h) + 0.5, mask.astype(float), levels=[0.5], colors=[colour],
               linewidths=lw, **style)


def no_ticks(*axes):
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
ax1.imshow(image)
for label, box, mask in zip(gt_labels, gt_boxes, gt_masks, strict=True):
    mask_outline(ax1, mask, "white", lw=1.5)
    outline(ax1, box, edgecolor=CLASS_COLOURS[label], lw=2.5)
    ax1.text(box[0] + 2, box[1] + 2, CLASSES[label], va="top", fontsize=10, color="white",
             bbox={"facecolor": CLASS_COLOURS[label], "pad": 1.5, "edgecolor": "none"})
ax1.set_title("ground truth: masks (white outlines), boxes, labels", fontsize=11)
ax2.imshow(image, alpha=0.6)
for box, u, g in zip(proposals, best_iou, best_gt, strict=True):
    outline(ax2, box, edgecolor=CLASS_COLOURS[gt_labels[g]] if u >= 0.5 else "black", lw=0.8,
            alpha=0.9 if u >= 0.5 else 0.5)
ax2.set_title("100 stand-in proposals (coloured: IoU >= 0.5 with an object)", fontsize=11)
no_ticks(ax1, ax2)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5.2 The box head: two fully connected layers
#
# The box branch has two parts, `TwoMLPHead` (`box_head`) and `FastRCNNPredictor`
# (`box_predictor`):
#
# ```text
# RoIAlign 7x7      (R, 256, 7, 7)
# flatten           (R, 12544)
# fc6 + ReLU        (R, 1024)
# fc7 + ReLU        (R, 1024)
# cls_score         (R, K)        one logit per class, background included
# bbox_pred         (R, 4K)       four box deltas per class, background included
# ```
#
# It is an MLP in the literal sense: `fc6` multiplies all 12544 numbers of the grid by a
# weight matrix, so it needs a grid of a fixed size, which is what RoIAlign provides. The same
# steps, one at a time, with the random model's layers:

# %%
R = len(proposals)
with mrcnn_np.no_grad():
    pooled = heads.box_roi_pool(features, [proposals], image_sizes).data  # (R, 256, 7, 7)
    flat = pooled.reshape(R, -1)  # (R, 256, 7, 7) -> (R, 12544)
    fc6 = F.relu(heads.box_head.fc6(flat)).data  # (R, 1024)
    fc7 = F.relu(heads.box_head.fc7(fc6)).data  # (R, 1024)
    class_logits = heads.box_predictor.cls_score(fc7).data  # (R, K)
    box_regression = heads.box_predictor.bbox_pred(fc7).data  # (R, 4K)
    logits_again, deltas_again = heads.box_predictor(heads.box_head(pooled))
print("the same as box_head + box_predictor:",
      np.array_equal(class_logits, logits_again.data) and np.array_equal(box_regression, deltas_again.data))


def n_parameters(module):
    return sum(p.data.size for p in module.parameters())


rows = [("RoIAlign 7x7", pooled, None), ("flatten", flat, None), ("fc6 + ReLU", fc6, heads.box_head.fc6),
        ("fc7 + ReLU", fc7, heads.box_head.fc7), ("cls_score", class_logits, heads.box_predictor.cls_score),
        ("bbox_pred", box_regression, heads.box_predictor.bbox_pred)]
print(f"{'layer':<14}{'output':>20}{'parameters':>13}")
for name, out, layer in rows:
    print(f"{name:<14}{str(out.shape):>20}{f'{n_parameters(layer):,}' if layer else '':>13}")
print(f"box branch: {n_parameters(heads.box_head) + n_parameters(heads.box_predictor):,} parameters; "
      f"the whole ResNet-50-FPN backbone: {n_parameters(model.backbone):,}")

# %% [markdown]
# `fc6` alone has 12.8 million parameters, half as many as the whole backbone: flattening a
# `256 x 7 x 7` grid into a dense layer is expensive, and is the reason why the grid is as
# small as 7x7.
#
# Below, for the best proposal on each object, the flow through the random head: the pooled
# grid (the root mean square over the 256 channels), the 1024 outputs of `fc7` (as a 32 x 32
# picture) and the class probabilities, the softmax of the 4 logits. The random head is very
# sure of its classes, and picks the same one for all three objects: the random backbone's
# activations are large, so are the logits, and the probabilities saturate. They mean nothing
# (section 5.9 draws the same figure for a trained model).

# %% tags=["hide-input"]
def draw_box_head(picture, boxes, objects, pooled, fc7, class_logits, kind, refined=None):
    """One row per ground-truth object (``objects`` = its boxes (G, 4) and labels (G,)), for its best
    proposal among ``boxes`` (R, 4): the proposal on the picture, its RoIAlign grid (RMS over the
    channels), fc7 as a square picture and the softmax of its class logits (``kind`` of weights).
    ``refined`` (R, K, 4): also draw the proposal's box refined for its most probable shape class."""
    object_boxes, object_labels = objects
    overlap = box_iou(object_boxes, boxes)  # (G, R)
    fig, axes = plt.subplots(len(object_boxes), 4, figsize=(12, 2.8 * len(object_boxes)),
                             width_ratios=[1.4, 1, 1, 1.2], squeeze=False)
    for row, label in enumerate(object_labels):
        r = int(np.argmax(overlap[row]))  # the object's best proposal
        probs = F.softmax(class_logits[r], -1).data  # (K,)
        ax = axes[row, 0]
        ax.imshow(picture)
        outline(ax, boxes[r], edgecolor="yellow", lw=2, ls="--" if refined is not None else "-")
        if refined is not None:
            k = 1 + int(np.argmax(probs[1:]))  # the most probable shape class (not the background)
            outline(ax, refined[r, k], edgecolor=CLASS_COLOURS[k], lw=2)
        ax.set_title(f"proposal {r} (IoU {overlap[row, r]:.2f} with the {CLASSES[label]})", fontsize=10)
        axes[row, 1].imshow(np.sqrt((pooled[r] ** 2).mean(axis=0)), cmap="magma")
        axes[row, 1].set_title(f"RoIAlign 7x7 (RMS of {pooled.shape[1]})", fontsize=10)
        side = int(np.sqrt(fc7.shape[1]))  # 1024 values as 32 x 32
        axes[row, 2].imshow(fc7[r].reshape(side, side), cmap="viridis")
        axes[row, 2].set_title(f"fc7: {fc7.shape[1]} values, {np.mean(fc7[r] > 0):.0%} > 0", fontsize=10)
        ax = axes[row, 3]
        ax.bar(range(K), probs, color=[CLASS_COLOURS[k] for k in range(K)])
        ax.set_xticks(range(K), CLASSES, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"softmax of cls_score ({kind})", fontsize=10)
    no_ticks(*axes[:, :3].ravel())
    return fig


fig = draw_box_head(image, proposals, (gt_boxes, gt_labels), pooled, fc7, class_logits, "random")
fig.suptitle("The box head with RANDOM weights: shapes and flow, not meaning", fontsize=12)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5.3 Class-specific box regression
#
# `bbox_pred` predicts four deltas *per class*: the row of `4K` numbers is read as `(K, 4)`,
# and the deltas in row `k` say where the box would be if the object were of class `k`. The
# decoding is chapter 2's, with the box head's `BoxCoder` weights `(10, 10, 5, 5)`:
#
# ```text
# x' = x + (dx / 10) * w      w' = w * exp(dw / 5)       (x, y: centre; w, h: size of the proposal)
# y' = y + (dy / 10) * h      h' = h * exp(dh / 5)       dw / 5 and dh / 5 clamped at log(1000 / 16)
# ```
#
# Why the weights? A proposal that overlaps an object is already close to it, so the raw
# corrections are small. The weights scale them to about unit size, which balances the box
# loss against the classification loss. Measured on our stand-in proposals that overlap an
# object with IoU >= 0.5 (the ones that get a box target in training):

# %%
positive = np.flatnonzero(best_iou >= 0.5)
for weights in ((1.0, 1.0, 1.0, 1.0), heads.box_coder.weights):
    targets = BoxCoder(weights).encode(gt_boxes[best_gt[positive]], proposals[positive])  # (P, 4)
    print(f"weights {weights}: std of (dx, dy, dw, dh) over {len(positive)} positives:", targets.std(axis=0).round(3))


# %% [markdown]
# Now one proposal, `P`, that straddles the square and the circle (IoU about 0.6 with each).
# The random head's 16 deltas, decoded: four boxes, one per class. The random deltas are
# large (a few units, from the random backbone's large activations), so the boxes jump far
# from `P`, and even with the weights' division by 5 a `dw` of 6.6 makes a box almost four
# times as wide.
#
# What would a trained head predict? We **construct** predictions that behave like one, with
# a function used again in section 5.4 (`simulated_box_predictor`; it ignores the features
# and computes from the ground truth):
#
# - **deltas** of class `c`: if the proposal overlaps an object of class `c` with IoU >= 0.3,
#   the deltas that move it exactly onto that object (`BoxCoder.encode`), plus N(0, 0.3^2)
#   noise; otherwise noise alone, so the box stays about where the proposal is. The
#   background's deltas are noise (they are never used);
# - **class logits**: background 0, and for class `c`, `10 * (s_c - 0.45)` plus N(0, 1) noise,
#   where `s_c` is the proposal's largest IoU with an object of class `c`, or, if larger, its
#   IoU with any object minus 0.45: an object lends a little evidence to the other classes
#   too, as a real classifier is sometimes unsure of the kind of shape.

# %%
def simulated_box_predictor(proposals, seed=0):
    """Constructed (NOT learned) class logits (R, K) and deltas (R, 4K) from the ground truth."""
    rng = np.random.default_rng(seed)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    R = len(proposals)
    iou = box_iou(gt_boxes, proposals)  # (G, R)
    logits = np.zeros((R, K), dtype=np.float32)
    deltas = rng.normal(0, 0.3, (R, K, 4)).astype(np.float32)  # noise for every class
    for c in range(1, K):
        of_c = np.flatnonzero(gt_labels == c)
        iou_c = iou[of_c].max(axis=0) if len(of_c) else np.zeros(R, np.float32)  # (R,)
        s_c = np.maximum(iou_c, iou.max(axis=0) - 0.45)
        logits[:, c] = 10 * (s_c - 0.45) + rng.normal(0, 1, R)
        if len(of_c):
            on_c = np.flatnonzero(iou_c >= 0.3)
            target = gt_boxes[of_c[iou[of_c][:, on_c].argmax(axis=0)]]  # the object of class c under each
            deltas[on_c, c] += coder.encode(target, proposals[on_c])
    return logits, deltas.reshape(R, 4 * K)  # (R, K, 4) -> (R, 4K)


P = np.array([[30, 72, 150, 200]], dtype=np.float32)  # (1, 4) between the circle and the square
print("IoU of P with", {CLASSES[c]: round(float(u), 2) for c, u in zip(gt_labels, box_iou(gt_boxes, P)[:, 0],
                                                                         strict=True)})
with mrcnn_np.no_grad():
    random_logits_P, random_deltas_P = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, [P],
                                                                                             image_sizes)))
sim_logits_P, sim_deltas_P = simulated_box_predictor(P)  # CONSTRUCTED
deltas_P = {"random head": random_deltas_P.data, "constructed": sim_deltas_P}  # (1, 4K) each
probs_P = {"random head": F.softmax(random_logits_P.data[0], -1).data,
           "constructed": F.softmax(sim_logits_P[0], -1).data}  # (K,) each
boxes_P = {name: heads.box_coder.decode(d, P)[0] for name, d in deltas_P.items()}  # (1, 4K) -> (1, K, 4) -> (K, 4)
for name, d in deltas_P.items():
    print(f"{name}: deltas, one row per class (K, 4) =\n{d.reshape(K, 4).round(2)}")
    print("  class probabilities:", {c: round(float(p), 3) for c, p in zip(CLASSES, probs_P[name], strict=True)})

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
for ax, name in zip(axes, boxes_P, strict=True):
    ax.imshow(image, alpha=0.75)
    outline(ax, P[0], edgecolor="black", lw=2, ls="--")
    for k in range(K):
        box = boxes_P[name][k]
        outline(ax, box, edgecolor=CLASS_COLOURS[k], lw=2.5 if k else 1.5, ls=":" if k == 0 else "-",
                label=f"{CLASSES[k]} deltas (p = {probs_P[name][k]:.2f})")
    ax.plot([], [], "k--", label="proposal P")
    shown = np.concatenate([boxes_P[name], P, [[0, 0, W, H]]]) if name == "random head" else boxes_P[name]
    ax.set_xlim(shown[:, 0].min() - 8, shown[:, 2].max() + 8)  # every box in view
    ax.set_ylim(shown[:, 3].max() + 50, shown[:, 1].min() - 8)  # room for the legend below
    ax.legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    no_ticks(ax)
axes[0].set_title("P decoded under every class: RANDOM head", fontsize=11)
axes[1].set_title("P decoded under every class: CONSTRUCTED predictions", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# With the constructed predictions, the same proposal becomes the square under the square's
# deltas and the circle under the circle's; the triangle's and the background's deltas are
# noise and leave it about where it was. Which of these boxes is reported depends on the
# classes' scores, and `postprocess_detections` (next section) keeps *every* (proposal, class)
# pair with a score above 0.05: one proposal can give a square and a circle.
#
# In training only the row of the ground-truth class gets a box loss (`fastrcnn_loss`
# indexes `deltas[positives, labels[positives]]`). Matched to the square (its best IoU), `P`'s
# box loss does not change whatever the circle's row says:

# %%
label_P = np.array([1])  # matched to the square
target_P = heads.box_coder.encode(gt_boxes[gt_labels == 1], P)  # (1, 4)
other_rows = sim_deltas_P.copy()
other_rows[:, 8:12] = 100.0  # the circle's four deltas: nonsense
for name, deltas in (("constructed", sim_deltas_P), ("circle row = 100", other_rows)):
    loss_cls, loss_box = fastrcnn_loss(sim_logits_P, deltas, [label_P], [target_P])
    print(f"{name:<17} loss_classifier {loss_cls.item():.4f}  loss_box_reg {loss_box.item():.4f}")


# %% [markdown]
# ## 5.4 From scores and deltas to detections
#
# `RoIHeads.postprocess_detections` takes the logits `(R, K)` and deltas `(R, 4K)` of an
# image's proposals and returns its detections. Torchvision's defaults:
#
# 1. **softmax** over the K logits: one probability per (proposal, class);
# 2. **decode** every proposal under every class's deltas: `(R, K, 4)` boxes;
# 3. **clip** them to the image;
# 4. **drop the background** column: `R (K - 1)` candidate (box, score, label) triples;
# 5. **score > 0.05** (`box_score_thresh`);
# 6. **drop small boxes**, narrower or lower than 0.01 pixel;
# 7. **NMS 0.5 per class** (`batched_nms` with the label as category): boxes of different
#    classes never suppress each other;
# 8. **top 100** (`box_detections_per_img`), by decreasing score.
#
# Below each step is written out with the library's functions, on the constructed
# predictions for all 100 stand-in proposals, counting the candidates of each class.

# %%
def postprocess_step_by_step(logits, deltas, boxes, image_size, heads=heads):
    """postprocess_detections of ``heads`` (by default the random model's) for one image, counting the survivors
    of each class after every step. Returns the counts and the candidates before NMS and after the
    last step: (boxes, scores, labels)."""
    counts = {}

    def count(step, labels):
        counts[step] = np.bincount(labels, minlength=K)

    R = len(boxes)
    scores = F.softmax(logits, -1).data  # 1. (R, K)
    count("proposals x classes", np.tile(np.arange(K), R))
    decoded = heads.box_coder.decode(deltas, boxes)  # 2. (R, 4K) -> (R, K, 4)
    decoded = clip_boxes_to_image(decoded, image_size)  # 3.
    labels = np.broadcast_to(np.arange(K), (R, K))  # (R, K)
    decoded, scores, labels = decoded[:, 1:].reshape(-1, 4), scores[:, 1:].ravel(), labels[:, 1:].ravel()  # 4.
    count("drop background", labels)
    keep = np.flatnonzero(scores > heads.score_thresh)  # 5.
    decoded, scores, labels = decoded[keep], scores[keep], labels[keep]
    count(f"score > {heads.score_thresh}", labels)
    keep = remove_small_boxes(decoded, 1e-2)  # 6.
    decoded, scores, labels = decoded[keep], scores[keep], labels[keep]
    count("width, height >= 0.01", labels)
    before_nms = decoded, scores, labels
    keep = batched_nms(decoded, scores, labels, heads.nms_thresh)  # 7. by decreasing score
    count(f"NMS {heads.nms_thresh} per class", labels[keep])
    keep = keep[: heads.detections_per_img]  # 8.
    count(f"top {heads.detections_per_img}", labels[keep])
    return counts, before_nms, (decoded[keep], scores[keep], labels[keep])


def print_counts(counts):
    print(f"{'step':<24}" + "".join(f"{c:>10}" for c in CLASSES) + f"{'all':>8}")
    for step, c in counts.items():
        print(f"{step:<24}" + "".join(f"{v:>10}" for v in c) + f"{c.sum():>8}")


sim_logits, sim_deltas = simulated_box_predictor(proposals)  # CONSTRUCTED, see section 5.3
counts, before_nms, detections = postprocess_step_by_step(sim_logits, sim_deltas, proposals, (H, W))
det_boxes, det_scores, det_labels = detections
print_counts(counts)
(library,) = heads.postprocess_detections(sim_logits, sim_deltas, [proposals], [(H, W)])
print("the same detections as RoIHeads.postprocess_detections:",
      all(np.array_equal(library[k], v) for k, v in zip(("boxes", "scores", "labels"), detections, strict=True)))

# %% [markdown]
# Dropping the background leaves 3 candidates per proposal. The score threshold removes
# most of them: on an object, the wrong classes' probabilities are small, and on the
# background all three are. Small boxes would be ones that clipping flattened to nothing, and
# there are none here. NMS does the rest, and the top-100 cut removes nothing with so few
# candidates left.
#
# The figure shows the candidates that enter NMS (left) and what NMS keeps of them (right),
# class by class. Of the many near-copies on each object of the class, NMS keeps the best,
# plus the few boxes that overlap it by less than 0.5; low-score boxes elsewhere survive too.
# Because NMS runs per class, a box of one class never suppresses a box of another: where
# the classifier hesitates between two classes on one object, both detections survive,
# however much they overlap (listed below). A trained model's output has such low-score
# duplicates too; a user who wants one label per object applies a higher score threshold, or
# NMS across classes, afterwards.

# %% tags=["hide-input"]
cand_boxes, cand_scores, cand_labels = before_nms
fig, axes = plt.subplots(K - 1, 2, figsize=(10.5, 12.6))
for c in range(1, K):
    mine = cand_labels == c
    kept = det_labels == c
    ax = axes[c - 1, 0]
    ax.imshow(image, alpha=0.5)
    for box, score in sorted(zip(cand_boxes[mine], cand_scores[mine], strict=True), key=lambda t: t[1]):
        outline(ax, box, edgecolor=CLASS_COLOURS[c], lw=0.5 + 2 * score, alpha=0.4 + 0.6 * score)
    ax.set_title(f"{CLASSES[c]}: {mine.sum()} candidates with score > 0.05", fontsize=11)
    ax = axes[c - 1, 1]
    ax.imshow(image, alpha=0.5)
    for box in cand_boxes[mine]:  # everything NMS removed, or kept, faint
        outline(ax, box, edgecolor="black", lw=0.6, ls=":", alpha=0.5)
    for box, score in sorted(zip(det_boxes[kept], det_scores[kept], strict=True), key=lambda t: t[1]):  # best on top
        outline(ax, box, edgecolor=CLASS_COLOURS[c], lw=0.8 + 2.2 * score)
        ax.text(box[0] + 1, box[1] + 1, f"{score:.2f}", fontsize=9, va="top", color="white",
                bbox={"facecolor": CLASS_COLOURS[c], "alpha": 0.85, "pad": 0.8, "edgecolor": "none"})
    ax.set_title(f"{CLASSES[c]}: {kept.sum()} kept by NMS 0.5 (dotted: all candidates)", fontsize=11)
no_ticks(*axes.ravel())
fig.suptitle("NMS runs once per class: each row on its own (line width: score)", fontsize=12)
fig.tight_layout()
plt.show()

# %%
pair_iou = box_iou(det_boxes, det_boxes)  # (D, D); the detections are sorted by decreasing score
pairs = list(zip(*np.nonzero(np.triu(pair_iou > 0.5, 1)), strict=True))  # (i, j) with i < j
same_class = sum(det_labels[i] == det_labels[j] for i, j in pairs)
print(f"{len(pairs)} pairs of detections overlap with IoU > 0.5, {same_class} of them of the same class; "
      f"the first ones:")
for i, j in pairs[:4]:
    print(f"  {CLASSES[det_labels[i]]} {det_scores[i]:.2f} and {CLASSES[det_labels[j]]} {det_scores[j]:.2f}, "
          f"IoU {pair_iou[i, j]:.2f}")

# %% [markdown]
# The same steps on the random model, for the flow: its RPN's 1000 proposals (chapter 3)
# through the random box head. Its saturated probabilities pass the score threshold for
# about one class per proposal, NMS leaves many of them, and the top-100 cut is what limits
# the output. The boxes are meaningless.

# %%
rpn_proposals, _ = model.rpn.predict(batch.tensors.shape[-2:], image_sizes, features)  # [(P, 4)]
with mrcnn_np.no_grad():  # predict never records the tape; the layers called one by one do
    rnd_logits, rnd_deltas = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, rpn_proposals,
                                                                                    image_sizes)))
rnd_counts, _, _ = postprocess_step_by_step(rnd_logits.data, rnd_deltas.data, rpn_proposals[0], (H, W))
print_counts(rnd_counts)

# %% [markdown]
# ## 5.5 The mask head: a small fully convolutional network
#
# The mask branch reads a 14x14 grid per box (chapter 4's second pooler) and never flattens
# it. `MaskRCNNHeads` (`mask_head`) is four 3x3 convolutions with 256 channels, each followed by
# a ReLU, at 14x14; `MaskRCNNPredictor` (`mask_predictor`) is a 2x2 transposed convolution with
# stride 2 and a ReLU, which doubles the resolution to 28x28, and a 1x1 convolution to `K`
# channels: one 28x28 mask logit map per class (He et al. 2017, fig. 4, right).
#
# At inference the mask branch runs on the **detections** (at most 100), not on the
# proposals: their boxes are the refined ones of section 5.4. Below, the detections of the
# constructed predictions, through the random mask branch, layer by layer:

# %%
with mrcnn_np.no_grad():
    x14 = heads.mask_roi_pool(features, [det_boxes], image_sizes).data  # (D, 256, 14, 14)
    layers = [("RoIAlign 14x14", x14, None)]
    x = x14
    for i, block in enumerate(heads.mask_head):  # four Sequential(Conv2d 3x3, ReLU)
        x = block(x).data
        layers.append((f"mask_fcn{i + 1} 3x3 + ReLU", x, block))
    up = F.relu(heads.mask_predictor.conv5_mask(x)).data  # (D, 256, 28, 28)
    layers.append(("conv5_mask 2x2/2 + ReLU", up, heads.mask_predictor.conv5_mask))
    mask_logits = heads.mask_predictor.mask_fcn_logits(up).data  # (D, K, 28, 28)
    layers.append(("mask_fcn_logits 1x1", mask_logits, heads.mask_predictor.mask_fcn_logits))
    print("the same as mask_head + mask_predictor:",
          np.array_equal(mask_logits, heads.mask_predictor(heads.mask_head(x14)).data))
print(f"{'layer':<26}{'output':>20}{'parameters':>12}")
for name, out, layer in layers:
    print(f"{name:<26}{str(out.shape):>20}{f'{n_parameters(layer):,}' if layer else '':>12}")
mask_params = n_parameters(heads.mask_head) + n_parameters(heads.mask_predictor)
dense = 256 * 14 * 14 * K * 28 * 28  # weights of ONE dense layer from the 14x14 grid to K masks
print(f"mask branch: {mask_params:,} parameters; a single dense layer from (256, 14, 14) to (K, 28, 28) "
      f"would have {dense:,} weights ({256 * 14 * 14 * 91 * 28 * 28:,} with COCO's 91 classes)")

# %% [markdown]
# **Not an MLP.** A tutorial on Mask R-CNN states that "Mask R-CNN uses a fully connected
# network to predict the mask", and in its next paragraph that the branch "is fully
# convolution network": it cannot be both. Torchvision and the paper agree on the second:
# there is no dense layer in the mask branch. That keeps the spatial layout: every output
# pixel is computed from a small window of the grid around it, with weights shared across
# positions. It is also cheap: 2.6 million parameters, against the 157 million of a single
# dense layer with the same input and output (and 3.6 billion for COCO's 91 classes). The box
# head (section 5.2) *is* an MLP: its outputs are not laid out in space. Tutorials also say
# that the branch returns "a mask of size 28 X 28 for each region"; precisely, it predicts K
# of them, one per class, and the class chosen by the box branch picks the one that is kept
# (section 5.6).
#
# Fully convolutional means local. Perturb the 14x14 grid of one detection at a single cell
# (all 256 channels) and look at what changes. Each 3x3 convolution spreads a change by one
# cell in every direction, so after four a 9x9 block of the 14x14 grid can change; the 2x2 transposed convolution with
# stride 2 turns each cell into its own 2x2 block of pixels, so an 18x18 block of the 28x28
# masks can change, and nothing else. (This holds for any weights; a few positions inside the
# block may happen not to change, behind a ReLU.) In the box head the same perturbation of one
# cell of its 7x7 grid reaches every one of `fc6`'s 1024 outputs (before its ReLU).

# %%
d, (cy, cx) = 0, (5, 8)  # the first detection, one cell of its 14x14 grid
poked = x14[d : d + 1].copy()
poked[0, :, cy, cx] += 3.0 * x14[d].std()  # (1, 256, 14, 14)
with mrcnn_np.no_grad():
    change = np.abs(heads.mask_predictor(heads.mask_head(poked)).data - mask_logits[d : d + 1])[0]  # (K, 28, 28)
    box_in = heads.box_roi_pool(features, [det_boxes[d : d + 1]], image_sizes).data  # (1, 256, 7, 7)
    box_poked = box_in.copy()
    box_poked[0, :, cy // 2, cx // 2] += 3.0 * box_in.std()
    fc6_change = np.abs(heads.box_head.fc6(box_poked.reshape(1, -1)).data
                        - heads.box_head.fc6(box_in.reshape(1, -1)).data)[0]  # (1024,), before the ReLU
rows_changed, cols_changed = np.nonzero(change.max(axis=0) > 0)
print(f"mask logits: changed pixels in rows {rows_changed.min()}-{rows_changed.max()}, columns "
      f"{cols_changed.min()}-{cols_changed.max()} of 28 (expected {2 * (cy - 4)}-{2 * (cy + 4) + 1}, "
      f"{2 * (cx - 4)}-{2 * (cx + 4) + 1})")
print(f"box head: {np.count_nonzero(fc6_change)} of fc6's 1024 outputs changed")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), width_ratios=[1, 1, 1.1])
grid = np.zeros((14, 14))
grid[cy, cx] = 1
grid[max(cy - 4, 0) : cy + 5, max(cx - 4, 0) : cx + 5] += 0.35
axes[0].imshow(grid, cmap="Greys", vmin=0, vmax=1.2, extent=(0, 14, 14, 0))
axes[0].set_title("14x14 input: the perturbed cell,\nand the 9x9 block it reaches", fontsize=10)
axes[0].set_xticks(range(0, 15, 2))
axes[0].set_yticks(range(0, 15, 2))
im = axes[1].imshow(change.max(axis=0), cmap="magma", extent=(0, 28, 28, 0))
outline(axes[1], (2 * (cx - 4), 2 * (cy - 4), 2 * (cx + 5), 2 * (cy + 5)), edgecolor="cyan", lw=1.5, ls="--")
axes[1].set_title("28x28 mask logits: |change| (max over K),\nthe 18x18 block dashed", fontsize=10)
axes[1].set_xticks(range(0, 29, 4))
axes[1].set_yticks(range(0, 29, 4))
fig.colorbar(im, ax=axes[1], fraction=0.046)
axes[2].bar(range(1024), fc6_change, width=1.0, color="tab:purple")
axes[2].set_xlabel("fc6 output (before the ReLU)")
axes[2].set_title("box head (fc6): |change| after the same poke\nat one cell of its 7x7 grid", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5.6 From a 28x28 mask to the image
#
# The mask branch predicts K masks of 28x28 per detection; `RoIHeads.predict` keeps the
# predicted class's one, as probabilities (the sigmoid of the logits). They live in the
# detection box's own frame, whatever its size. `paste_masks_in_image` (called by the
# transform's `postprocess`, after the boxes are scaled back to the original image's size)
# puts each into a full-size image, torchvision's way:
#
# 1. **pad** the 28x28 map with one pixel of zeros on each side: 30x30;
# 2. **expand the box** by the same factor, 30/28, about its centre, so that the 28x28 still
#    covers the box and the padding lies just outside it;
# 3. **round the box to integers** (truncation towards zero, torch's conversion), and make its
#    width `x2 - x1 + 1` and height `y2 - y1 + 1` pixels;
# 4. **resize** the 30x30 map bilinearly to that size and write it into the image.
#
# Bilinear resizing repeats the border values of its input outward, so without the padding a
# mask that reaches the edge of its 28x28 would end in a hard step exactly at the box's edge.
# With the padding it falls off to 0 over the cell just outside the box (Detectron's comment
# calls the unpadded result "top hat" artifacts). `padding` is a parameter of
# `paste_masks_in_image`: the section compares 1 (torchvision's) with 0.
#
# To see a meaningful mask, we again **construct** the 28x28 prediction: for the best circle
# detection of section 5.4, the ground-truth circle's mask as seen through the detection box
# (`project_masks_on_boxes`, section 5.7 explains it), sharpened into probabilities with
# `sigmoid(12 (t - 0.5))`. That is what an excellent mask head would output for this box.

# %%
d = int(np.flatnonzero(det_labels == 2)[0])  # the best circle detection
det_box = det_boxes[d]  # (4,) xyxy, refined by the (constructed) deltas
g = int(np.flatnonzero(gt_labels == 2)[0])  # the circle's ground truth
target28 = project_masks_on_boxes(gt_masks, det_box[None], np.array([g]), 28)[0]  # (28, 28) in [0, 1]
prob28 = F.sigmoid(12 * (target28 - 0.5)).data  # CONSTRUCTED prediction: probabilities (28, 28)

M, pad = 28, 1
padded = np.pad(prob28, pad)  # (30, 30)
expanded = expand_boxes(det_box[None], (M + 2 * pad) / M)[0]  # (4,)
x1, y1, x2, y2 = (int(v) for v in np.trunc(expanded))  # torch's .to(int64) truncates
print("detection box:", det_box.round(2), f"({det_box[2] - det_box[0]:.1f} x {det_box[3] - det_box[1]:.1f} px)")
print("expanded by 30/28:", expanded.round(2))
print("integer box:", (x1, y1, x2, y2), f"-> the 30x30 map resized to {y2 - y1 + 1} x {x2 - x1 + 1} px")
by_hand = paste_mask_in_image(padded, (x1, y1, x2, y2), H, W)  # (H, W)
pasted = paste_masks_in_image(prob28[None, None], det_box[None], (H, W))[0, 0]  # (H, W)
print("by hand = paste_masks_in_image:", np.array_equal(by_hand, pasted))
unpadded = paste_masks_in_image(prob28[None, None], det_box[None], (H, W), padding=0)[0, 0]  # (H, W)


def mask_iou(a, b):
    return (a & b).sum() / (a | b).sum()


binary = pasted > 0.5
print(f"thresholded at 0.5: {binary.sum()} pixels, IoU with the ground-truth mask {mask_iou(binary, gt_masks[g]):.3f}"
      f" (without the padding: {mask_iou(unpadded > 0.5, gt_masks[g]):.3f})")
first_column = np.where(gt_masks[g].any(axis=1), gt_masks[g].argmax(axis=1), W)  # (H,) leftmost pixel per row
y0 = int(np.flatnonzero(first_column == first_column.min()).mean())  # a row through the leftmost point

# %% [markdown]
# Top: the constructed 28x28 probabilities (each cell is about 4 x 4 image pixels here) and
# the padded 30x30. Middle: the pasted probabilities pixel by pixel around the left edge of
# the box, where the circle reaches beyond the detection box, with the three boxes; and one
# row of pixels across that edge (the red line), pasted with and without the padding.
# Bottom: the pasted probabilities on the image, and the mask thresholded at 0.5 against the
# ground truth. The model returns the probabilities; the threshold 0.5 is the
# user's (COCO evaluation and torchvision's examples use it). The circle is only partly
# visible: the ground-truth mask, and so the constructed prediction, lack the part hidden by
# the square.

# %% tags=["hide-input"]
fig, axes = plt.subplots(3, 2, figsize=(10.5, 13.5))
ax = axes[0, 0]
ax.imshow(prob28, cmap="viridis", vmin=0, vmax=1, extent=(0, 28, 28, 0))
ax.set_title("28x28 probabilities (constructed)", fontsize=10.5)
ax = axes[0, 1]
ax.imshow(padded, cmap="viridis", vmin=0, vmax=1, extent=(-1, 29, 29, -1))
outline(ax, (0, 0, 28, 28), edgecolor="white", lw=1.2, ls="--")
ax.set_title("padded by 1 (zeros): 30x30; the 28x28 dashed", fontsize=10.5)
ax = axes[1, 0]  # the left edge of the box, pixel by pixel: pixel (r, c) covers [c, c + 1) x [r, r + 1)
ax.imshow(pasted, cmap="gray", vmin=0, vmax=1, extent=(0, W, H, 0))
for v in range(0, 26):
    ax.axvline(v, color="gray", lw=0.4, alpha=0.7)
for v in range(y0 - 12, y0 + 13):
    ax.axhline(v, color="gray", lw=0.4, alpha=0.7)
mask_outline(ax, gt_masks[g], "tab:orange", lw=2.5)
outline(ax, det_box, edgecolor="magenta", lw=2.5)
outline(ax, expanded, edgecolor="cyan", lw=2.5, ls="--")
outline(ax, (x1, y1, x2 + 1, y2 + 1), edgecolor="lime", lw=2.5, ls=":")
ax.axhline(y0 + 0.5, color="tab:red", lw=1.2, ls="-.")
ax.plot([], [], color="magenta", lw=2.5, label=f"detection box (x1 = {det_box[0]:.2f})")
ax.plot([], [], "c--", lw=2.5, label=f"expanded by 30/28 (x1 = {expanded[0]:.2f})")
ax.plot([], [], ":", color="lime", lw=2.5, label=f"integer box (x1 = {x1})")
ax.plot([], [], color="tab:orange", lw=2.5, label="ground-truth mask")
ax.plot([], [], "-.", color="tab:red", lw=1.2, label=f"row y = {y0}")
ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
ax.set_xlim(0, 25)
ax.set_ylim(y0 + 12, y0 - 12)
ax.set_title("pasted probabilities (gray) at the box's left edge,\nimage pixels", fontsize=10.5)
ax = axes[2, 0]
ax.imshow(image)
shown = ax.imshow(np.ma.masked_less(pasted, 0.005), cmap="viridis", vmin=0, vmax=1, alpha=0.8)
outline(ax, det_box, edgecolor="white", lw=2)
ax.set_title("pasted probabilities on the image", fontsize=10.5)
fig.colorbar(shown, ax=ax, fraction=0.046)
ax = axes[2, 1]
colours = np.ones((H, W, 3))
colours[binary & gt_masks[g]] = (0.2, 0.7, 0.2)  # both
colours[binary & ~gt_masks[g]] = (0.9, 0.2, 0.2)  # predicted only
colours[~binary & gt_masks[g]] = (0.2, 0.4, 0.95)  # ground truth only
ax.imshow(colours)
outline(ax, det_box, edgecolor="black", lw=1)
ax.legend(handles=[patches.Patch(color=(0.2, 0.7, 0.2), label="mask and ground truth"),
                   patches.Patch(color=(0.9, 0.2, 0.2), label="mask only"),
                   patches.Patch(color=(0.2, 0.4, 0.95), label="ground truth only")],
          loc="lower right", fontsize=8, framealpha=0.9)
ax.set_title(f"pasted > 0.5 vs ground truth: IoU {mask_iou(binary, gt_masks[g]):.2f}", fontsize=10.5)
for ax in axes[2]:
    ax.set_xlim(max(x1 - 12, 0), x2 + 13)
    ax.set_ylim(y2 + 13, y1 - 12)
ax = axes[1, 1]
xs = np.arange(0, 30)
ax.step(xs + 0.5, gt_masks[g][y0, xs].astype(float), where="mid", color="black", lw=1.5, label="ground truth")
ax.plot(xs + 0.5, pasted[y0, xs], "o-", color="tab:green", ms=3.5, label="pasted, padding 1 (torchvision)")
ax.plot(xs + 0.5, unpadded[y0, xs], "s-", color="tab:purple", ms=3, label="pasted, padding 0")
ax.axhline(0.5, color="gray", lw=0.8, ls=":")
ax.axvline(det_box[0], color="gray", lw=1.5, label="detection box edge")
ax.axvline(expanded[0], color="tab:cyan", lw=1.5, ls="--", label="expanded box edge")
ax.set_xlabel("x (image pixels; each value at its pixel's centre)")
ax.set_ylabel("probability")
ax.set_title(f"row y = {y0}, across the box's left edge", fontsize=10.5)
ax.legend(loc="lower right", fontsize=8)
no_ticks(*axes[0], axes[1, 0], *axes[2])
fig.tight_layout()
plt.show()

# %% [markdown]
# The detection box is a little off (the constructed deltas' noise): its left edge cuts 5
# pixels off the circle, and the mask, confined to about its box, loses them. Along the row,
# the padded paste ramps from 0 to 1 over about one cell (4 pixels), centred near the box's
# edge; the unpadded one jumps from 0 to 1 at the integer box's edge. Thresholded at 0.5 the
# two agree here (the same IoU); the padding changes the probabilities, not where this one
# crosses 0.5. The pasted mask is smooth, 28 cells stretched over more than 100 pixels: a
# 28x28 map cannot draw detail finer than a cell, a known limit of Mask R-CNN on large objects.
#
# `MaskRCNN.predict` chains all of it: the transform, the backbone, `rpn.predict`,
# `roi_heads.predict` (box branch, postprocessing, mask branch, the predicted class's 28x28
# probabilities) and the transform's `postprocess` (boxes scaled back to the original image,
# masks pasted). The last two steps, with random weights, on the features and RPN proposals
# computed above, for the flow only (section 5.9 runs them with trained weights):

# %%
start = time.perf_counter()
(result,) = heads.predict(features, rpn_proposals, image_sizes)  # no tape: no need for no_grad()
masks28_random, boxes_random = result["masks"].copy(), result["boxes"].copy()  # before pasting
print("roi_heads.predict:", {k: v.shape for k, v in result.items()})
(out,) = model.transform.postprocess([result], image_sizes, [(H, W)])
elapsed = time.perf_counter() - start
print("transform.postprocess:", {k: v.shape for k, v in out.items()}, f"({elapsed:.1f} s for both)")
print("scores", out["scores"][:3].round(4), "...; pasted masks: probabilities in",
      (round(float(out["masks"].min()), 3), round(float(out["masks"].max()), 3)), "(random weights: meaningless)")

# %% [markdown]
# ## 5.7 Mask targets: the ground truth seen through each proposal
#
# In training, the mask branch runs on the positive proposals (IoU >= 0.5 with a ground-truth
# box; `select_training_samples` adds the ground-truth boxes to the proposals, matches and
# samples them, as for the box head). The target of a positive is its matched ground-truth
# mask, cut out by the *proposal* and resampled to 28x28: `project_masks_on_boxes` runs
# `roi_align` on the full-size mask (as a one-channel image, `spatial_scale=1`,
# `aligned=False`, adaptive sampling) with the proposal as the box. The values are averages
# of 0s and 1s, so a target is soft along the object's edge.
#
# The target depends on the proposal: the square's mask seen through four of our stand-in
# proposals matched to it, and through its own ground-truth box:

# %%
g = int(np.flatnonzero(gt_labels == 1)[0])  # the square
on_square = np.flatnonzero((best_gt == g) & (best_iou >= 0.5))
by_iou = on_square[np.argsort(best_iou[on_square])]
chosen = by_iou[np.linspace(0, len(by_iou) - 1, 4).round().astype(int)]  # from the worst to the best positive
shown_boxes = np.concatenate([gt_boxes[g : g + 1], proposals[chosen]])  # (5, 4)
shown_iou = box_iou(gt_boxes[g : g + 1], shown_boxes)[0]
targets28 = project_masks_on_boxes(gt_masks, shown_boxes, np.full(5, g), 28)  # (5, 28, 28)
for b, u, t in zip(shown_boxes, shown_iou, targets28, strict=True):
    print(f"box {b.round(1)}  IoU {u:.2f}  target: {np.mean(t > 0.5):.0%} of the 28x28 > 0.5, "
          f"{np.mean((t > 0) & (t < 1)):.0%} strictly between 0 and 1")

# %% tags=["hide-input"]
box_colours = ["black", "blue", "darkorange", "yellow", "cyan"]
fig = plt.figure(figsize=(11, 7.2))
top = fig.add_gridspec(2, 5, height_ratios=[1.9, 1])
ax = fig.add_subplot(top[0, 1:4])
ax.imshow(image)
mask_outline(ax, gt_masks[g], "white", lw=2)
for b, colour in zip(shown_boxes, box_colours, strict=True):
    outline(ax, b, edgecolor=colour, lw=2.5 if colour == "black" else 2)
ax.set_xlim(30, 190)
ax.set_ylim(210, 70)
ax.set_title("the square's mask (white outline), its box (black) and four positive proposals", fontsize=10)
no_ticks(ax)
for i, (t, u, colour) in enumerate(zip(targets28, shown_iou, box_colours, strict=True)):
    ax = fig.add_subplot(top[1, i])
    ax.imshow(t, cmap="gray", vmin=0, vmax=1)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_title(("ground-truth box" if i == 0 else "proposal") + f", IoU {u:.2f}", fontsize=9.5)
    no_ticks(ax)
fig.suptitle("Mask targets (28x28): the same ground-truth mask, seen through each box", fontsize=12)
fig.tight_layout()
plt.show()

# %% [markdown]
# Each target shows the square where it lies *within its proposal*: shifted when the proposal
# is shifted, cut where the proposal cuts the object, smaller when the proposal is larger. The
# mask head sees exactly that proposal's features, so it learns to draw the object where it is
# in its box, not a canonical square. (With `aligned=False` the targets are sampled half a
# pixel down and to the right of the pixel model; chapter 4, section 4.7. Torchvision does the
# same, and at 28 cells for a 110-pixel box it is a sliver of a cell.)

# %% [markdown]
# ## 5.8 The mask loss: only the ground-truth class's channel
#
# The mask head predicts K maps per RoI; `maskrcnn_loss` takes, for each positive, the map
# of **its ground-truth class** only, and the binary cross-entropy of its sigmoid with the
# target, averaged over all positives' 28 x 28 pixels. The other K - 1 maps get no loss and no
# gradient. The classes do not compete for a pixel (there is no softmax across classes): the
# class is the box branch's job, and the mask branch only has to draw a shape given the
# class. The paper's ablation (table 2b) finds these per-class sigmoid masks far better than
# a softmax over the classes at every pixel: 30.3 against 24.8 mask AP on COCO.
#
# First the training samples of the random model's heads on our stand-in proposals:

# %%
sampled_props, matched, sample_labels, _, _ = heads.select_training_samples(  # _, _: regression targets, the draw
    [proposals], [{"boxes": gt_boxes, "labels": gt_labels}], rng=0)
pos = np.flatnonzero(sample_labels[0] > 0)
print(f"{len(proposals)} proposals + {len(gt_boxes)} ground-truth boxes: {len(sampled_props[0])} sampled "
      f"(at most 512), {len(pos)} positive, labels of the positives:",
      {CLASSES[c]: int(n) for c, n in zip(*np.unique(sample_labels[0][pos], return_counts=True), strict=True)})
pos_boxes, pos_gt = sampled_props[0][pos], matched[0][pos]  # (P, 4), (P,) index of the matched object
mask_targets = project_masks_on_boxes(gt_masks, pos_boxes, pos_gt, 28)  # (P, 28, 28)

# %% [markdown]
# Then **constructed** mask logits `(P, K, 28, 28)`: in the ground-truth class's channel a
# good prediction, `8 (t - 0.5)` plus N(0, 1) noise; in every other channel pure noise,
# N(0, 3^2). `maskrcnn_loss` is then small; replacing the other channels by anything leaves it
# unchanged to the last bit; spoiling the ground-truth channel makes it large. The loss by
# hand, `mean(log(1 + exp(x)) - t x)` over the selected channel, agrees.

# %%
rng = np.random.default_rng(2)
P_ = len(pos)
true_class = gt_labels[pos_gt]  # (P,)
logits28 = rng.normal(0, 3, (P_, K, 28, 28)).astype(np.float32)  # noise in every channel
logits28[np.arange(P_), true_class] = 8 * (mask_targets - 0.5) + rng.normal(0, 1, (P_, 28, 28))  # a good prediction


def mask_loss(logits):
    return maskrcnn_loss(logits, [pos_boxes], [gt_masks], [gt_labels], [pos_gt]).item()


other = logits28.copy()
wrong = np.ones((P_, K), dtype=bool)
wrong[np.arange(P_), true_class] = False
other[wrong] = -50.0  # every other channel: 'certainly not', everywhere
spoiled = logits28.copy()
spoiled[np.arange(P_), true_class] *= -1  # the ground-truth channel inverted
x = logits28[np.arange(P_), true_class]  # (P, 28, 28) the channel in the loss
by_hand = np.mean(np.logaddexp(0, x) - mask_targets * x)
print(f"constructed logits:             loss_mask {mask_loss(logits28):.6f}  (by hand {by_hand:.6f})")
print(f"other channels set to -50:      loss_mask {mask_loss(other):.6f}")
print(f"ground-truth channel inverted:  loss_mask {mask_loss(spoiled):.6f}")

# %% [markdown]
# One positive, its target and its four channels (sigmoid): only the framed channel, the
# ground-truth class's, enters the loss. The last panel is its per-pixel cross-entropy. It is
# largest along the object's edge, where the target is soft: the cross-entropy with a target
# of 0.5 is at least `log 2 = 0.69`, even for a perfect prediction.

# %% tags=["hide-input"]
def draw_mask_channels(axes, logits, framed, why=("in the loss", "ignored")):
    """The K channels of one RoI's (K, 28, 28) mask logits as probabilities, one per axes; the
    channel ``framed`` in red, titled with why[0], the others with why[1]."""
    for k, ax in enumerate(axes):
        ax.imshow(F.sigmoid(logits[k]).data, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"channel {k}: {CLASSES[k]}\n({why[0] if k == framed else why[1]})", fontsize=10)
        for spine in ax.spines.values():
            spine.set_edgecolor("red" if k == framed else "lightgray")
            spine.set_linewidth(3 if k == framed else 1)


i = int(np.argmax(mask_targets.mean(axis=(1, 2)) * (true_class == 3)))  # a positive on the triangle
fig, axes = plt.subplots(2, 3, figsize=(10.5, 8))
axes = axes.ravel()  # target, the K channels, the cross-entropy
axes[0].imshow(mask_targets[i], cmap="gray", vmin=0, vmax=1)
axes[0].set_title(f"target ({CLASSES[true_class[i]]})", fontsize=10)
draw_mask_channels(axes[1 : K + 1], logits28[i], true_class[i])
x_i = logits28[i, true_class[i]]
im = axes[-1].imshow(np.logaddexp(0, x_i) - mask_targets[i] * x_i, cmap="magma")
axes[-1].set_title("per-pixel BCE of\nthe framed channel", fontsize=10)
fig.colorbar(im, ax=axes[-1], fraction=0.046)
no_ticks(*axes)
fig.tight_layout()
plt.show()

# %% [markdown]
# Finally the training loss of the random heads, for the flow: `RoIHeads.loss` samples (with
# `rng=`, or replays a draw given as `sampled=`), pools, runs both branches and returns the
# three losses of the second stage and the RoIs it sampled. With
# random weights every loss is large: the random backbone's activations are large, so the
# logits and deltas are too, and the heads are confidently wrong (a mask head whose logits
# were all near 0 would give `log 2 = 0.69`). Training brings them down.

# %%
with mrcnn_np.no_grad():  # the values only: no tape for backward
    start = time.perf_counter()
    losses, (roi_pos, roi_neg) = heads.loss(
        features, [proposals], image_sizes,
        [{"boxes": gt_boxes, "labels": gt_labels, "masks": gt_masks.astype(np.uint8)}], rng=0)
    elapsed = time.perf_counter() - start
print(f"loss in {elapsed:.1f} s, on {int(roi_pos[0].sum())} positive and {int(roi_neg[0].sum())} negative RoIs:",
      {k: round(v.item(), 4) for k, v in losses.items()})

# %% [markdown]
# ## 5.9 The heads of a trained model
#
# The package ships a small Mask R-CNN trained on images like ours: `mrcnn_np.pretrained.shapes_model()`,
# trained from scratch by `mrcnn-np demo` on 128 x 128 images of squares, circles and triangles,
# with the same four classes in the same order (`model.classes`). It is the small configuration
# `config.tiny()`, narrowed by the demo: 32 feature channels instead of 256 (`tiny`'s are 64),
# `fc6` and `fc7` of 256 units instead of 1024, mask convolutions of 16 channels (`tiny`'s 64), at
# most 50 detections per image; the heads are the classes of this chapter. On a held-out image
# (the demo trains on the shapes of seed 0, this one is drawn with seed 1), the trained RPN
# proposes the boxes, and the box head runs as in section 5.2. The figure is section 5.2's
# (`draw_box_head`), for each object's best proposal, with one addition: the proposal's box refined for its most probable shape class (section 5.3;
# the background is left out), in that class's colour; the proposal is dashed. Compare the class probabilities with the random
# head's. In training, a proposal that overlaps an object with IoU >= 0.5 is an example of the
# object's class, with a box target; one below 0.5 is an example of the background. So a trained
# head puts its probability on the object's class where the overlap is large, and on the
# background where it is small, and its deltas move a proposal of an object towards the
# object's box.

# %%
trained = shapes_model()  # MaskRCNN(config.tiny()) with the shipped weights, in eval mode
trained_heads = trained.roi_heads
assert tuple(trained.classes) == CLASSES
shapes_image, shapes_target = shapes_dataset(13, seed=1, **DemoSettings().data())[12]  # held out; (128, 128, 3) uint8
shapes_objects = shapes_target["boxes"], shapes_target["labels"]  # (G, 4) xyxy, (G,): a square, a circle, a triangle
with mrcnn_np.no_grad():
    shapes_batch, _ = trained.transform([shapes_image])  # (1, 3, 128, 128): no resize, no padding
    shapes_size = shapes_batch.image_sizes[0]  # (128, 128)
    shapes_features = {k: v.data for k, v in trained.backbone(shapes_batch.tensors).items()}  # P2 ... P6
    (shapes_proposals,), _ = trained.rpn.predict(shapes_batch.tensors.shape[-2:], [shapes_size], shapes_features)
    shapes_pooled = trained_heads.box_roi_pool(shapes_features, [shapes_proposals], [shapes_size]).data
    shapes_fc7 = trained_heads.box_head(shapes_pooled).data  # fc6, fc7 and their ReLUs
    shapes_logits, shapes_deltas = (v.data for v in trained_heads.box_predictor(shapes_fc7))
shapes_refined = clip_boxes_to_image(trained_heads.box_coder.decode(shapes_deltas, shapes_proposals), shapes_size)
print(f"{len(shapes_proposals)} proposals: RoIAlign {shapes_pooled.shape} -> fc7 {shapes_fc7.shape} -> "
      f"cls_score {shapes_logits.shape}, bbox_pred {shapes_deltas.shape} -> refined {shapes_refined.shape}")
fig = draw_box_head(shapes_image, shapes_proposals, shapes_objects, shapes_pooled, shapes_fc7, shapes_logits,
                    "trained", shapes_refined)
fig.suptitle("The box head with TRAINED weights, on a held-out image: each object's best proposal\n"
             "(dashed) and its box refined for the most probable shape (solid)", fontsize=12)
fig.tight_layout()
plt.show()

# %% [markdown]
# Then section 5.4's `postprocess_step_by_step`, with the trained model's thresholds, turns the
# scores and deltas of all the proposals into detections, and the mask branch runs on those, as
# in section 5.5. Below, for each object, the detection that stands for it (the best-scoring one
# whose box overlaps the object's with IoU >= 0.5, or the most overlapping one if none does):
# its box, its mask pasted into the image and thresholded at 0.5 (solid outline; the ground
# truth dashed, white), and its K channels of 28x28 probabilities, drawn as in section 5.8.
# The framed channel, the detected class's, is the one `RoIHeads.predict` keeps. Trained, it
# draws the visible part of the object in its box. The channels of the other classes get no
# loss on this object in training (section 5.8), so they are free to draw something else, and
# channel 0, the background's, never gets a loss at all: no object is of class background.

# %%
shapes_counts, _, (shapes_det_boxes, shapes_det_scores, shapes_det_labels) = postprocess_step_by_step(
    shapes_logits, shapes_deltas, shapes_proposals, shapes_size, trained_heads)
print_counts(shapes_counts)
with mrcnn_np.no_grad():
    shapes_mask_logits = trained_heads.mask_predictor(trained_heads.mask_head(trained_heads.mask_roi_pool(
        shapes_features, [shapes_det_boxes], [shapes_size]))).data  # (D, K, 28, 28)
kept = F.sigmoid(shapes_mask_logits[np.arange(len(shapes_det_boxes)), shapes_det_labels]).data  # (D, 28, 28)
shapes_pasted = paste_masks_in_image(kept[:, None], shapes_det_boxes, shapes_size)[:, 0] > 0.5  # (D, 128, 128)
overlap = box_iou(shapes_target["boxes"], shapes_det_boxes)  # (G, D)
shown = np.argmax(np.where(overlap >= 0.5, shapes_det_scores, overlap - 1), axis=1)  # (G,) a detection per object
fig, axes = plt.subplots(len(shown), 1 + K, figsize=(13, 3 * len(shown)), width_ratios=[1.3] + [1] * K,
                         squeeze=False, layout="constrained")
for row, (d, gt_mask) in enumerate(zip(shown, shapes_target["masks"].astype(bool), strict=True)):
    label = shapes_det_labels[d]
    ax = axes[row, 0]
    ax.imshow(shapes_image, extent=(0, shapes_size[1], shapes_size[0], 0))  # pixel (r, c) covers [c, c + 1) x [r, r + 1)
    mask_outline(ax, gt_mask, "white", lw=1.5, linestyles="--")
    if shapes_pasted[d].any() and not shapes_pasted[d].all():  # a contour needs both sides
        mask_outline(ax, shapes_pasted[d], CLASS_COLOURS[label], lw=2)
    outline(ax, shapes_det_boxes[d], edgecolor=CLASS_COLOURS[label], lw=1.5)
    ax.set_title(f"{CLASSES[label]} {shapes_det_scores[d]:.2f}, mask IoU {mask_iou(shapes_pasted[d], gt_mask):.2f}",
                 fontsize=10)
    draw_mask_channels(axes[row, 1:], shapes_mask_logits[d], label, ("detected class: kept", "not kept"))
no_ticks(*axes.ravel())
fig.suptitle("The mask head with TRAINED weights: one detection per object", fontsize=12)
plt.show()

# %% [markdown]
# ## 5.10 Check against torchvision
#
# Torchvision's `RoIHeads.postprocess_detections`, `paste_masks_in_image` and `maskrcnn_loss`
# on the same inputs as above: the constructed predictions of section 5.4 and the random
# model's predictions on its RPN's proposals; the 28x28 mask of section 5.6 and the random
# model's 100 masks; the constructed mask logits of section 5.8. Torchvision's `RoIHeads` is
# built with its defaults (the postprocessing needs none of its layers). Where two detections
# have exactly the same score, torchvision's order among them is an artefact of its unstable
# sort (chapter 2), so both lists of detections are compared sorted by score, then label, then
# box.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    from torchvision.models.detection import roi_heads as tv_roi_heads

    def canonical(boxes, scores, labels):
        """Detections sorted by decreasing score, then label, then box: an order without ties."""
        order = np.lexsort((*boxes.T[::-1], labels, -scores))
        return boxes[order], scores[order], labels[order]

    reference = tv_roi_heads.RoIHeads(
        None, None, None, fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=512, positive_fraction=0.25,
        bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)  # None: (10, 10, 5, 5)
    t = torch.from_numpy
    errors = {}
    for name, (lg, dl, props) in {"constructed": (sim_logits, sim_deltas, proposals),
                                  "random model": (rnd_logits.data, rnd_deltas.data, rpn_proposals[0])}.items():
        theirs = reference.postprocess_detections(t(lg), t(dl), [t(props)], [(H, W)])  # boxes, scores, labels
        theirs = canonical(*(v[0].numpy() for v in theirs))
        (ours,) = heads.postprocess_detections(lg, dl, [props], [(H, W)])
        ours = canonical(ours["boxes"], ours["scores"], ours["labels"])
        assert len(ours[0]) == len(theirs[0]) and np.array_equal(ours[2], theirs[2]), name
        ties = len(ours[1]) - len(np.unique(ours[1]))
        print(f"postprocess_detections, {name}: {len(ours[0])} detections, labels identical, {ties} repeated scores")
        errors[f"postprocess_detections, {name}: boxes (px)"] = np.abs(ours[0] - theirs[0]).max()
        errors[f"postprocess_detections, {name}: scores"] = np.abs(ours[1] - theirs[1]).max()
    for name, (masks, boxes) in {"section 5.6": (prob28[None, None], det_box[None]),
                                 "random model": (masks28_random, boxes_random)}.items():
        theirs = tv_roi_heads.paste_masks_in_image(t(masks), t(boxes), (H, W)).numpy()
        errors[f"paste_masks_in_image, {name}"] = np.abs(paste_masks_in_image(masks, boxes, (H, W)) - theirs).max()
    theirs = tv_roi_heads.maskrcnn_loss(t(logits28), [t(pos_boxes)], [t(gt_masks.astype(np.uint8))],
                                        [t(gt_labels)], [t(pos_gt)])
    errors["maskrcnn_loss"] = abs(mask_loss(logits28) - theirs.item())
    for name, error in errors.items():
        print(f"{name:<50} max |ours - torchvision| = {error:.1e}")
    assert max(errors.values()) < 1e-4, errors

# %% [markdown]
# The labels agree exactly; the boxes to float32 rounding (about 1e-5 pixels on coordinates
# of a few hundred), the scores, the pasted probabilities and the loss to 1e-6 or better:
# `postprocess_detections`, `paste_masks_in_image` and `maskrcnn_loss` follow torchvision
# operation for operation. `tests/reference/test_mask_rcnn.py` compares the whole model with
# torchvision's on the same weights, inference in float64 (boxes, scores, labels and pasted
# masks) and training (the five losses and every parameter's gradient, with the same sampled
# anchors and RoIs).

# %% [markdown]
# ## Summary
#
# - The box head flattens the `(R, 256, 7, 7)` grid to `(R, 12544)` and runs `fc6` and `fc7` (1024
#   each, ReLU), then `cls_score` `(R, K)` and `bbox_pred` `(R, 4K)`. `fc6` alone has 12,846,080
#   parameters, about half as many as the whole ResNet-50-FPN backbone.
# - Box regression is class-specific: row `k` of the `(K, 4)` deltas is the box for class `k`.
#   The weights `(10, 10, 5, 5)` bring the positives' deltas from a std of 0.07 to 0.16 up to
#   0.68 to 0.86, and only the ground-truth class's row gets a box loss.
# - `postprocess_detections` applies softmax, decodes under every class, clips, drops the
#   background, keeps scores > 0.05 and boxes at least 0.01 px wide, runs NMS 0.5 per class and
#   keeps the top 100. The constructed predictions go from 400 (proposal, class) pairs to 99 to
#   23 detections. Boxes of different classes never suppress each other.
# - The mask head has no dense layer: four 3x3 convs (256, ReLU) at 14x14, a 2x2 transposed conv
#   with stride 2 to 28x28, and a 1x1 conv to `K` masks, 2,623,748 parameters (a dense layer
#   would have 157 million). A change in one cell of the 14x14 grid reaches only an 18x18 block
#   of the 28x28 output.
# - `paste_masks_in_image` pads the 28x28 map to 30x30, expands the box by 30/28, truncates it to
#   whole pixels and resizes bilinearly into it. The constructed circle mask, pasted and
#   thresholded at 0.5, has IoU 0.914 with the ground truth.
# - A mask target is the matched ground-truth mask seen through the *proposal*: `roi_align` of
#   the full-size mask to 28x28, soft along the object's edge, and different for every
#   proposal.
# - The mask loss is the BCE of the ground-truth class's channel only. Setting the other
#   channels to -50 leaves it at 0.084448, and inverting the ground-truth channel raises it to
#   3.82.
# - Against torchvision, the labels are identical, the boxes agree to about 1e-5 px, and the
#   scores, pasted masks and mask loss to 1e-6 or better.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/05_heads/`. `mrcnn-np check 05` grades it against `mrcnn_np` and
# torchvision; `mrcnn-np check 05 --hint` reveals the hints one at a time. The tasks:
#
# 1. `postprocess_detections`: softmax, decode, clip, filter, NMS per class, top-k.
# 2. `paste_masks_in_image`: 28x28 masks resized into their boxes in the image.
# 3. `mask_targets`: RoIAlign of the matched ground-truth masks into the positive proposals.
# 4. `mask_loss`: the BCE on the ground-truth class's mask.
# 5. `box_loss_backward`: the gradient of the box loss (smooth L1) with respect to the deltas.
# 6. `mask_loss_backward`: the gradient of the mask loss (BCE) with respect to the mask logits.
#
# The two backward tasks are checked against mrcnn_np's autograd, torch autograd and central
# differences in float64.
#
# Further questions:
#
# - The mask loss is a sigmoid per class, not a softmax across classes at each pixel. What
#   would a softmax ask of the mask head that the box head already does? (The paper's table 2b
#   measures the difference: 30.3 against 24.8 mask AP.)
# - A 28x28 mask pasted into a box of 300 pixels has cells of about 11 pixels. What detail of an
#   object can it not draw, and where would you add resolution?
# - Per-class NMS keeps a triangle at 0.99 and a square at 0.12 on the same object (IoU 0.83).
#   When would NMS across classes be better, and what could it cost in COCO AP?
