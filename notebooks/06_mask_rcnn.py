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
# # 6. The whole Mask R-CNN
#
# The previous chapters took the model apart; this one runs it whole, then opens it up again,
# stage by stage, on one photograph, in the spirit of the `inspect_model` notebook of
# Matterport's Mask R-CNN: what `MaskRCNN.predict` does to the image, what each stage
# hands to the next, and how many boxes survive each step. In order:
#
# - the **transform**: the image normalised, resized and padded into a batch;
# - the **backbone** and FPN: five feature levels;
# - the **RPN**: a thousand proposals;
# - the **box head**: class scores for every proposal and a refined box for every class;
# - the **postprocessing**: thresholds and per-class NMS down to the detections;
# - the **mask head**: a 28x28 mask per detection, pasted back into the photograph;
# - a stage-by-stage **check against torchvision**;
# - **training**: the five losses on a small batch of synthetic shapes, and one SGD step;
# - the predictions of a **trained** model on shapes it has never seen;
# - three **architectures** side by side, FPN, C4 and Faster R-CNN: drawn, timed, and their
#   held-out AP after the same training.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/model/mask_rcnn.py` (`MaskRCNN`) | `models/detection/mask_rcnn.py`, `generalized_rcnn.py` |
# | `mrcnn_np/model/transform.py` | `models/detection/transform.py` |
# | `mrcnn_np/model/rpn.py` | `models/detection/rpn.py` |
# | `mrcnn_np/model/roi_heads.py` | `models/detection/roi_heads.py` |
# | `mrcnn_np/config.py` (`MaskRCNNConfig`) | the defaults of `maskrcnn_resnet50_fpn` |
# | `mrcnn_np/verify.py` (`mrcnn-np verify`) | the whole model, compared stage by stage |
#
# **About the weights.** In sections 6.1 to 6.9 every network has *random* weights, so its
# proposals, classes, boxes and masks are **not meaningful**: the detections drawn on the
# photograph are not objects, and their labels are not categories. What those sections show is
# real all the same: the shapes, the counts, the flow of boxes from stage to stage, the
# inspection code, and that every number agrees with torchvision. Section 6.10 ends the chapter
# with a small model **trained** on synthetic shapes, which ships with the package: its
# predictions on held-out images, next to the ground truth. Chapter 7 trains the model and
# evaluates it.

# %%
import inspect
import time
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

import mrcnn_np
from mrcnn_np import nn
from mrcnn_np.config import MaskRCNNConfig
from mrcnn_np.data.shapes import SHAPES, random_image, shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.model.transform import paste_masks_in_image, resize_boxes
from mrcnn_np.nn import functional as F
from mrcnn_np.nn.fused import fusion
from mrcnn_np.nn.optim import SGD
from mrcnn_np.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from mrcnn_np.ops.poolers import level_of_boxes
from mrcnn_np.pretrained import shapes_model
from mrcnn_np.reference import import_torch
from mrcnn_np.reference.twins import sample_image
from mrcnn_np.viz import draw_instances

# %% [markdown]
# ## 6.1 The model
#
# `MaskRCNNConfig()` holds torchvision's defaults for `maskrcnn_resnet50_fpn` (91 classes,
# ResNet-50-FPN, every threshold); only the image size is made smaller here, to keep the chapter
# fast on a CPU: the shorter side is resized to 320 pixels instead of 800. `MaskRCNN(config,
# rng=0)` builds the whole network with torchvision's initialisation, seeded: the backbone from
# the config's backbone settings, the transform, the RPN and the RoI heads with their
# `from_config(config)`, so every setting is read from this one config. Its parameters, by
# component (their names are torchvision's `state_dict` keys):

# %%
config = MaskRCNNConfig(min_size=320, max_size=512)  # everything else: torchvision's defaults
model = MaskRCNN(config, rng=0).eval()
components = ["backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor",
              "roi_heads.mask_head", "roi_heads.mask_predictor"]
for name in components:
    module = model
    for attribute in name.split("."):
        module = getattr(module, attribute)
    print(f"{name:<26} {sum(p.size for p in module.parameters()):>12,}")
print(f"{'total':<26} {sum(p.size for p in model.parameters()):>12,}")

# %% [markdown]
# 44,401,393 parameters, exactly torchvision's `maskrcnn_resnet50_fpn`; nearly a third of them
# are the box head's first fully connected layer (`256 * 7 * 7` inputs, 1024 outputs).
#
# `outputs = model([image, ...])` returns one dict per image with `boxes (D, 4)`, `labels (D,)`,
# `scores (D,)` and `masks (D, 1, H, W)` in the image's own pixels. In evaluation mode, calling
# the model is `MaskRCNN.predict`, five lines that chain the stages. Its `@no_grad()` runs them
# without the autograd tape whatever the caller does, so `model([image])` needs no
# `with no_grad():` around it; the layers called one by one below are ordinary layers, which
# record the tape unless told not to.

# %%
print(inspect.getsource(MaskRCNN.predict))

# %% [markdown]
# The rest of the chapter runs these lines one at a time on one photograph and looks at what
# each returns; section 6.7 checks that the pieces give exactly what `model([image])` returns.
# The photograph is chapter 1's, as `mrcnn_np.reference.twins.sample_image` returns it: `(H, W, 3)`
# floats in [0, 1].

# %% [markdown]
# ## 6.2 The transform
#
# `model.transform` normalises the image with the ImageNet mean and standard deviation, resizes
# it by `scale = min(min_size / shorter side, max_size / longer side)` (bilinear), and pads it
# with zeros at the bottom and right to a multiple of 32, so that every level of the pyramid is
# exactly half the one below. It returns an `ImageList`: the padded batch, every image's size
# before padding (`image_sizes`), which later stages use to clip boxes, and every image's own
# size (`original_sizes`), to which the detections are mapped back at the end (section 6.7).

# %%
image = sample_image().astype(np.float32)  # (600, 512, 3) in [0, 1]
batch, _ = model.transform([image], dtype=np.float32)
original_size = batch.original_sizes[0]  # (600, 512): the photograph's own (H, W)
image_size = batch.image_sizes[0]  # (h, w) before padding
scale = min(config.min_size / min(original_size), config.max_size / max(original_size))
print("original", original_size, f"-> scale {scale:.3f} -> resized", image_size,
      "-> padded batch", batch.tensors.shape)
mean, std = np.array(config.image_mean), np.array(config.image_std)
resized = batch.tensors[0].transpose(1, 2, 0) * std + mean  # (3, H', W') -> (H', W', 3), normalisation undone
resized_rgb = np.clip(resized[: image_size[0], : image_size[1]], 0, 1)  # without the padding
print("per-channel mean of the normalised image:", batch.tensors[0, :, : image_size[0]].mean(axis=(1, 2)).round(2))

# %% tags=["hide-input"]
H_pad, W_pad = batch.tensors.shape[-2:]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 6), width_ratios=[original_size[1], W_pad])
ax1.imshow(image)
ax1.set_title(f"original, {original_size[0]} x {original_size[1]}")
ax2.imshow(np.clip(resized, 0, 1))
ax2.add_patch(patches.Rectangle((-0.5, image_size[0] - 0.5), W_pad, H_pad - image_size[0], fill=False,
                                hatch="///", edgecolor="tab:red", lw=1.5))
ax2.annotate(f"padding: {H_pad - image_size[0]} rows", xy=(W_pad / 2, H_pad), xytext=(W_pad / 2, H_pad + 60),
             ha="center", color="tab:red", arrowprops={"arrowstyle": "->", "color": "tab:red"})
ax2.set_title(f"resized {image_size[0]} x {image_size[1]},\npadded to {H_pad} x {W_pad} (normalisation undone)")
for ax, width in ((ax1, original_size[1]), (ax2, W_pad)):
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(original_size[0] - 0.5, -0.5)  # the same pixel scale in both panels
fig.tight_layout()
plt.show()

# %% [markdown]
# Both panels are drawn at the same pixel scale. The padding is zero *after* normalisation, so
# undone it shows as the ImageNet mean colour, a brownish grey. With the default sizes (800 /
# 1333) the photograph would instead be enlarged 1.5625 times, to 937 x 800, and padded to
# 960 x 800.

# %% [markdown]
# ## 6.3 The backbone, and what random weights do to it
#
# `model.backbone` is chapter 1's ResNet-50-FPN: five levels with 256 channels, P2 at stride 4
# to P6 at stride 64, keyed `"0"` ... `"3"` and `"pool"` as in torchvision.

# %%
start = time.perf_counter()
with mrcnn_np.no_grad():
    features = model.backbone(batch.tensors)  # {"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}
print(f"backbone: {time.perf_counter() - start:.1f} s")
rms_identity = {}
for k, (key, f) in enumerate(features.items()):
    rms_identity[key] = np.sqrt((f.data**2).mean())  # root mean square
    print(f"P{k + 2} ({key!r}): {str(f.shape):<18} stride {H_pad // f.shape[2]:>2}  rms {rms_identity[key]:5.1f}")

# %% [markdown]
# The levels have a root mean square of about 50: chapter 1 showed why. The frozen batch norms
# of a freshly built model have the identity statistics (mean 0, variance 1), so nothing
# rescales the activations, which grow through the residual stages. A trained network's frozen
# statistics keep them near unit scale. The size matters downstream: the RPN's box deltas grow
# with it, and deltas of a few units stretch every anchor `exp(3) = 20` times, into slivers
# across the whole image (section 6.4 shows them).
#
# We therefore do what `mrcnn-np verify` does (with torch, section 6.8): a **data-dependent
# initialisation** of the frozen norms. In one forward pass of this image, each
# `FrozenBatchNorm2d` gets its own input's per-channel mean and variance as its statistics, so
# that its output has zero mean and unit variance per channel. The weights stay random: this
# only sets the scale of the activations, and teaches the network nothing about objects.

# %%
def calibrate_frozen_norms(backbone, x):
    """Set every FrozenBatchNorm2d's running mean and variance to those of its own input,
    per channel, in one forward pass of x (N, 3, H, W). Returns the number of norms set."""
    norms = [m for m in backbone.modules() if isinstance(m, nn.FrozenBatchNorm2d)]

    def measure_then_normalise(norm):
        def forward(features):  # (N, C, H, W); replaces norm.forward for one call
            norm.running_mean[:] = features.data.mean(axis=(0, 2, 3))
            norm.running_var[:] = features.data.var(axis=(0, 2, 3))
            del norm.forward  # from now on the class's own forward
            return norm(features)
        return forward

    for norm in norms:
        norm.forward = measure_then_normalise(norm)
    with mrcnn_np.no_grad(), fusion(False):  # the norms as layers: inference otherwise folds them into the convs
        backbone(x)
    return len(norms)


print("frozen norms calibrated:", calibrate_frozen_norms(model.backbone, batch.tensors))
features_identity = features  # the levels with identity statistics, for comparison
with mrcnn_np.no_grad():
    features = model.backbone(batch.tensors)
for k, (key, f) in enumerate(features.items()):
    print(f"P{k + 2}: rms {rms_identity[key]:5.1f} -> {np.sqrt((f.data**2).mean()):4.1f}")

# %% [markdown]
# Each map below is the root mean square over the 256 channels at every position, drawn over
# the padded image's extent (the dashed line is where the padding starts): top, with the
# identity statistics; bottom, calibrated. The colour scale is each panel's own.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 5, figsize=(13, 6))
for row, (maps, label) in enumerate(((features_identity, "identity stats"), (features, "calibrated"))):
    for k, (ax, f) in enumerate(zip(axes[row], maps.values(), strict=True)):
        energy = np.sqrt((f.data[0] ** 2).mean(axis=0))  # (C, h, w) -> (h, w)
        ax.imshow(energy, cmap="magma", extent=(0, W_pad, H_pad, 0))
        ax.axhline(image_size[0], color="cyan", lw=1, ls="--")
        ax.set_title(f"P{k + 2} {f.shape[2]}x{f.shape[3]}, {label}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Calibrated, the fine levels trace the photograph's edges and regions again; with the identity
# statistics every level is dominated by the coarse, large activations that the top-down pathway
# spreads downwards (chapter 1, section 1.4). From here on, the model is the calibrated one.

# %% [markdown]
# ## 6.4 RPN proposals
#
# `model.rpn.predict` runs chapter 3's pipeline on every level: objectness and deltas for every
# anchor, the 1000 best per level, clipping, small boxes dropped, NMS at 0.7 per level, and the
# 1000 best overall. It needs the padded batch's size (for the anchors) and each image's own
# size (for clipping).

# %%
start = time.perf_counter()
(proposals,), (objectness,) = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
(proposals_identity,), _ = model.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features_identity)
print(f"rpn: {time.perf_counter() - start:.1f} s for both")
n_anchors = sum(3 * f.shape[2] * f.shape[3] for f in features.values())  # 3 anchors per position
print(f"anchors: {n_anchors:,} -> proposals: {proposals.shape}, objectness {objectness.min():.3f} to "
      f"{objectness.max():.3f}")
sizes = np.sqrt((proposals[:, 2] - proposals[:, 0]) * (proposals[:, 3] - proposals[:, 1]))  # sqrt(w h)
print("proposal size sqrt(wh), 10/50/90th percentile:", np.percentile(sizes, [10, 50, 90]).round(1))
levels, counts = np.unique(level_of_boxes([proposals]), return_counts=True)
print("RoIAlign will read them from:", {f"P{k}": int(n) for k, n in zip(levels, counts, strict=True)})


# %% tags=["hide-input"]
def draw_box(ax, box, **style):
    x1, y1, x2, y2 = box
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))


top = 20
cmap = plt.get_cmap("viridis")
fig, axes = plt.subplots(1, 2, figsize=(11, 6.4))
for ax, boxes, title in ((axes[0], proposals, "calibrated: the 20 best proposals"),
                         (axes[1], proposals_identity, "identity statistics: the 20 best proposals")):
    ax.imshow(resized_rgb)
    for rank in reversed(range(top)):  # rank 0 is the best; drawn last, on top
        draw_box(ax, boxes[rank], edgecolor=cmap(rank / (top - 1)), lw=1.8)
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, top)), ax=axes, fraction=0.03,
             ticks=[1, 5, 10, 15, 20], label="rank (1 = highest objectness)")
plt.show()

# %% [markdown]
# Left, the calibrated model's best proposals: boxes of reasonable shapes, close to the anchors
# they came from, because the random head's deltas are now small; they crowd where the random
# objectness happens to be high (the bright badge of the cap), not on objects. Nearly all of the
# 1000 are small and will be read from P2: P2 has by far the most anchors (all of size 32), so
# its best 1000 are the most extreme of the random scores, and its activations are the largest
# (the rms printed in section 6.3). Right, the uncalibrated model's: anchors stretched into
# slivers as tall as the image. Neither says anything about where the objects are; a trained
# RPN's proposals cover the face, the cap, the medals (chapter 3, section 3.7, simulates that;
# section 3.10 runs a trained RPN on shapes).

# %% [markdown]
# ## 6.5 The box head refines every proposal
#
# The second stage cuts a 7x7 feature grid for every proposal out of its level with
# `MultiScaleRoIAlign` (chapter 4), flattens it, and runs two fully connected layers of 1024 and
# the predictor (chapter 5): for each of the 1000 proposals, 91 class logits and 91 boxes,
# one per class, encoded as deltas from the proposal.

# %%
rh = model.roi_heads
with mrcnn_np.no_grad():
    box_features = rh.box_roi_pool(features, [proposals], batch.image_sizes)  # (R, 256, 7, 7)
    representation = rh.box_head(box_features)  # (R, 1024)
    class_logits, box_deltas = rh.box_predictor(representation)  # (R, K), (R, 4K)
class_logits, box_deltas = class_logits.data, box_deltas.data
R, K = class_logits.shape
print("RoIAlign", box_features.shape, "-> box head", representation.shape, "-> logits", class_logits.shape,
      "and deltas", box_deltas.shape)
class_scores = F.softmax(class_logits, -1).data  # (R, K), every row sums to 1
refined = rh.box_coder.decode(box_deltas, proposals)  # (R, 4K) -> (R, K, 4), one box per class
print("refined boxes", refined.shape, f"(weights {rh.box_coder.weights})")
print(f"the largest foreground probability of a proposal: median {np.median(class_scores[:, 1:].max(axis=1)):.3f},"
      f" max {class_scores[:, 1:].max():.3f}; uniform would be {1 / K:.3f}")

# %% [markdown]
# The deltas are divided by the weights (10, 10, 5, 5) before they are applied, so even a random
# head moves a box by less than a tenth of its size and rescales it by a few tens of percent. A
# trained head learns to move a proposal onto the object it overlaps. Which refined box counts
# depends on the class: the postprocessing keeps, for every proposal, a candidate for *each*
# class. Below, the six (proposal, class) pairs with
# the highest class probabilities, each cut out of the resized image: the proposal (dashed
# white), its box refined for that class (orange), arrows from corner to corner.

# %%
best = np.argsort(-class_scores[:, 1:], axis=None, kind="stable")[:6]  # flat indices into (R, K-1)
best_pairs = [(int(i) // (K - 1), int(i) % (K - 1) + 1) for i in best]  # (proposal, class)
for p, label in best_pairs:
    dx, dy, dw, dh = box_deltas[p, 4 * label : 4 * label + 4] / np.array(rh.box_coder.weights)
    print(f"proposal {p:>3}, class {label:>2}: p = {class_scores[p, label]:.3f}, moved by ({dx:+.3f} w, "
          f"{dy:+.3f} h), scaled by ({np.exp(dw):.2f}, {np.exp(dh):.2f})")

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
for ax, (p, label) in zip(axes.flat, best_pairs, strict=True):
    before, after = proposals[p], clip_boxes_to_image(refined[p, label][None], image_size)[0]
    x1, y1 = np.minimum(before[:2], after[:2]) - 25
    x2, y2 = np.maximum(before[2:], after[2:]) + 25
    ax.imshow(resized_rgb)
    draw_box(ax, before, edgecolor="white", lw=2, ls="--")
    draw_box(ax, after, edgecolor="tab:orange", lw=2.5)
    for a, b in ((before[:2], after[:2]), (before[2:], after[2:])):  # top-left and bottom-right corners
        ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "yellow", "lw": 1.8})
    ax.set_xlim(max(x1, 0), min(x2, image_size[1]))
    ax.set_ylim(min(y2, image_size[0]), max(y1, 0))
    ax.set_title(f"proposal {p} -> class {label}, p = {class_scores[p, label]:.3f}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Proposals (dashed) and their boxes refined for one class (orange); random weights",
             fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6.6 Postprocessing: thresholds and per-class NMS
#
# `RoIHeads.postprocess_detections` (chapter 5, section 5.4) turns 1000 x 91 scores and boxes
# into at most 100 detections. Written out step by step, counting what survives:

# %%
labels_all = np.broadcast_to(np.arange(K), (R, K))  # (R, K) the class of every candidate
boxes_all = clip_boxes_to_image(refined, image_size)  # (R, K, 4)
# one candidate per (proposal, foreground class): the background column 0 is dropped
cand_boxes = boxes_all[:, 1:].reshape(-1, 4)  # (R, K-1, 4) -> (R*(K-1), 4)
cand_scores = class_scores[:, 1:].reshape(-1)  # (R*(K-1),)
cand_labels = labels_all[:, 1:].reshape(-1)
cand_proposal = np.repeat(np.arange(R), K - 1)  # which proposal each candidate refines
print(f"candidates:                       {len(cand_scores):>6,}")
keep = np.nonzero(cand_scores > rh.score_thresh)[0]  # score above 0.05
print(f"score > {rh.score_thresh}:                    {len(keep):>6,}")
keep = keep[remove_small_boxes(cand_boxes[keep], 1e-2)]  # both sides at least 0.01 px
print(f"not degenerate:                   {len(keep):>6,}")
before_nms = keep
keep = keep[batched_nms(cand_boxes[keep], cand_scores[keep], cand_labels[keep], rh.nms_thresh)]
print(f"after NMS at {rh.nms_thresh} within each class:  {len(keep):>6,}")
keep = keep[: rh.detections_per_img]  # the best 100 (NMS returns them by decreasing score)
print(f"at most {rh.detections_per_img}:                      {len(keep):>6,}")
det_boxes, det_scores, det_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]

library = rh.postprocess_detections(class_logits, box_deltas, [proposals], batch.image_sizes)[0]
same = all(np.array_equal(a, library[k]) for k, a in (("boxes", det_boxes), ("scores", det_scores),
                                                       ("labels", det_labels)))
print("the same as RoIHeads.postprocess_detections:", same)
assert same

# %% [markdown]
# NMS runs within each class (`batched_nms`): a box suppresses another only if both have the same
# label and they overlap with IoU above 0.5. Boxes of different classes may overlap freely.
# Before and after, coloured by class (the legend counts each class's boxes before and after),
# enlarged around the cap, where nearly all of them are:

# %% tags=["hide-input"]
classes = np.unique(cand_labels[before_nms])
colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(classes)}
main_class = classes[np.argmax([np.sum(cand_labels[before_nms] == c) for c in classes])]
region = cand_boxes[before_nms[cand_labels[before_nms] == main_class]]  # the most frequent class's candidates
zoom_x1, zoom_y1 = np.maximum(region[:, :2].min(axis=0) - 15, 0)
zoom_x2, zoom_y2 = np.minimum(region[:, 2:].max(axis=0) + 15, image_size[::-1])
fig, axes = plt.subplots(1, 2, figsize=(11, 6.6))
for ax, chosen, title in ((axes[0], before_nms, f"before NMS: {len(before_nms)} candidates"),
                          (axes[1], keep, f"after per-class NMS: {len(keep)} detections")):
    ax.imshow(resized_rgb)
    for i in chosen[np.argsort(cand_scores[chosen])]:  # the best drawn last
        draw_box(ax, cand_boxes[i], edgecolor=colours[cand_labels[i]], lw=1.3)
    ax.set_xlim(zoom_x1, zoom_x2)
    ax.set_ylim(zoom_y2, zoom_y1)
    ax.set_title(title, fontsize=11)
axes[1].legend(handles=[patches.Patch(color=colours[c], label=f"class {c}: {np.sum(cand_labels[before_nms] == c)}"
                                     f" -> {np.sum(cand_labels[keep] == c)}") for c in classes],
               loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# A random classifier spreads its probability over the 91 classes: few candidates pass 0.05, and
# the ones that do belong to a handful of classes the random weights happen to favour. A trained
# head concentrates a proposal's probability on one class, and NMS then removes the many
# overlapping proposals of each object.

# %% [markdown]
# ## 6.7 Masks
#
# The mask head sees only the detections: a 14x14 grid per detected box from
# `MultiScaleRoIAlign`, four 3x3 convs, a 2x2 transposed conv and a 1x1 conv give 91 mask logits
# of 28x28 per box. Only the channel of the detected class is kept, as probabilities.
# `transform.postprocess` then scales the boxes back to the original photograph and pastes each
# 28x28 mask into its box (bilinear, with torchvision's one-pixel padding; chapter 5, sections
# 5.5 and 5.6).

# %%
D = len(det_boxes)
with mrcnn_np.no_grad():
    mask_features = rh.mask_head(rh.mask_roi_pool(features, [det_boxes], batch.image_sizes))  # (D, 256, 14, 14)
    mask_logits = rh.mask_predictor(mask_features).data  # (D, K, 28, 28)
mask_probs = F.sigmoid(mask_logits[np.arange(D), det_labels]).data  # (D, 28, 28): the detected class
boxes_original = resize_boxes(det_boxes, image_size, original_size)  # (D, 4) in the photograph's pixels
masks = paste_masks_in_image(mask_probs[:, None], boxes_original, original_size)  # (D, 1, 600, 512)
print("mask features", mask_features.shape, "-> logits", mask_logits.shape, "-> pasted", masks.shape)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 6, figsize=(13, 2.6))
for ax, m, label, score in zip(axes, mask_probs, det_labels, det_scores, strict=False):
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"class {label}, {score:.3f}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes, fraction=0.02, label="probability")
fig.suptitle("28x28 mask probabilities of the six best detections", fontsize=11, y=1.02)
plt.show()

# %% [markdown]
# The grid patterns are the random 2x2 transposed convolution: with stride 2, each of the four
# positions in every 2x2 block of the output has its own kernel weights, so a random one stamps
# a 2x2 pattern everywhere. Training smooths that out.
#
# The final output on the photograph: the ten best detections (left), and the region around
# them enlarged (right), where each mask, thresholded at 0.5, is overlaid in its detection's
# colour. With random weights this is a picture of the machinery, not of the objects in the
# image; section 6.10 draws a trained model's predictions.

# %% tags=["hide-input"]
shown = min(10, D)
palette = plt.get_cmap("tab10")
overlay = image.copy()
for d in reversed(range(shown)):  # the best drawn last
    inside = masks[d, 0] > 0.5
    overlay[inside] = 0.45 * overlay[inside] + 0.55 * np.array(palette(d)[:3])
x1, y1 = np.maximum(boxes_original[:shown, :2].min(axis=0) - 20, 0)  # the region of the shown detections
x2, y2 = np.minimum(boxes_original[:shown, 2:].max(axis=0) + 20, original_size[::-1])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6.4), width_ratios=[1, 1.25])
ax1.imshow(image)
ax2.imshow(overlay)
for d in range(shown):
    draw_box(ax1, boxes_original[d], edgecolor=palette(d), lw=1.5)
    draw_box(ax2, boxes_original[d], edgecolor=palette(d), lw=2)
draw_box(ax1, (x1, y1, x2, y2), edgecolor="white", lw=1.5, ls=":")
ax2.set_xlim(x1, x2)
ax2.set_ylim(y2, y1)
ax1.set_title(f"the {shown} best of {D} detections", fontsize=11)
ax2.set_title("enlarged: boxes and masks > 0.5 (random weights: not objects)", fontsize=11)
ax2.legend(handles=[patches.Patch(color=palette(d), label=f"class {det_labels[d]}, {det_scores[d]:.3f}")
                    for d in range(shown)], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
for ax in (ax1, ax2):
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Finally, the chain of sections 6.2 to 6.7, run by hand, against one call of the (calibrated)
# model:

# %%
start = time.perf_counter()
outputs = model([image])[0]  # one dict per image
print(f"model([image]): {time.perf_counter() - start:.1f} s")
for key, value in outputs.items():
    print(f"{key:<7} {str(value.shape):<18} {value.dtype}")
same = {k: np.array_equal(a, outputs[k]) for k, a in (("boxes", boxes_original), ("labels", det_labels),
                                                       ("scores", det_scores), ("masks", masks))}
print("by hand, the same to the bit:", same)
assert all(same.values())

# %% [markdown]
# ## 6.8 Check against torchvision, stage by stage
#
# `mrcnn_np.verify.verify` (the command `mrcnn-np verify`) builds torchvision's
# `maskrcnn_resnet50_fpn` with seeded random weights (with `mrcnn_np.reference.twins`, the
# tooling the reference tests use too), calibrates its frozen norms on the
# photograph as section 6.3 did (and randomises them a little, so that no norm is the identity),
# loads the weights into a `MaskRCNN` and runs both on the photograph. Each library runs its own
# chain end to end; only the box head is compared on the same input (torchvision's proposals),
# so that the logits and deltas are compared row for row. `format_table` prints, for every
# stage, the largest absolute difference and the largest difference relative to the largest
# torchvision value. Here in float64, with the shorter side at 256 pixels to keep it quick.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    from mrcnn_np.verify import format_table, verify

    rows = verify(dtype=np.float64, min_size=256)
    print(format_table(rows, np.float64))
    compared = [r for r in rows if r["stage"] != "wall time (s)"]
    assert all(r["max_rel"] is not None and r["max_rel"] < 1e-9 for r in compared), rows
    assert "labels identical" in next(r["note"] for r in rows if r["stage"] == "detections: boxes")

# %% [markdown]
# Every stage agrees to about 1e-12 relative or better, the rounding of float64, from the
# padded batch to the pasted masks: the same 1000 proposals in the same order, the same
# detections with identical labels, the same masks. `mrcnn-np verify` prints this table from the
# command line (`--dtype float32`, `--min-size 800` for torchvision's full size). In float32 the
# feature maps agree to about 1e-5 relative, but two proposals or detections whose scores agree
# to six digits may come out in swapped order (the ties of chapter 3, section 3.11); the table
# compares row by row, so a swap shows up as a large difference in that row. The tests in
# `tests/reference/` check the whole model in both precisions, training losses and gradients
# included.

# %% [markdown]
# ## 6.9 Training: the five losses and one SGD step
#
# In training mode, `model(images, targets)` returns a dict of five losses instead of
# detections (`MaskRCNN.loss`). A target is a dict per image with `boxes (G, 4)` xyxy, `labels
# (G,)` and `masks (G, H, W)`, in the image's own pixels. The data: the library's synthetic
# shapes (`mrcnn_np.data.shapes.random_image`), which come with exact masks and labels (1
# square, 2 circle, 3 triangle; 0 is the background); the boxes are derived from the masks.
#
# To keep this quick, the model is a much smaller configuration of the same code: one block per
# ResNet stage, narrow layers, fewer proposals and RoIs. Where it differs from the defaults:

# %%
small_config = MaskRCNNConfig(
    num_classes=1 + len(SHAPES), min_size=160, max_size=256, backbone_layers=(1, 1, 1, 1), backbone_width=16,
    fpn_channels=64, representation_size=128, mask_layers=(64, 64, 64, 64), mask_dim_reduced=64,
    rpn_pre_nms_top_n={"training": 300, "testing": 300}, rpn_post_nms_top_n={"training": 200, "testing": 100},
    box_batch_size_per_image=64)
defaults = asdict(MaskRCNNConfig())
print({k: v for k, v in asdict(small_config).items() if v != defaults[k]})
small = MaskRCNN(small_config, rng=0)
print(f"parameters: {sum(p.size for p in small.parameters()):,}")


def boxes_from_masks(masks):
    """(G, H, W) bool -> (G, 4) float32 xyxy: the tightest box around each mask's pixels
    (pixel (y, x) covers [x, x + 1) x [y, y + 1))."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for g, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[g] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return boxes


rng = np.random.default_rng(4)
images, targets = [], []
for _ in range(2):
    shape_image, shape_masks, shape_labels = random_image(rng, 160, 192, max_instances=3)
    images.append(shape_image)  # (H, W, 3) float32 in [0, 1]
    targets.append({"boxes": boxes_from_masks(shape_masks), "labels": shape_labels,
                    "masks": shape_masks.astype(np.uint8)})
for t in targets:
    print([SHAPES[label - 1] for label in t["labels"]], t["boxes"].tolist())

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
for ax, shape_image, t in zip(axes, images, targets, strict=True):
    ax.imshow(shape_image)
    for g, (box, label) in enumerate(zip(t["boxes"], t["labels"], strict=True)):
        colour = plt.get_cmap("tab10")(g)
        ax.contour(t["masks"][g], levels=[0.5], colors=[colour], linewidths=2)
        draw_box(ax, box, edgecolor=colour, lw=1.5, ls="--")
        ax.text(box[0] + 1, box[1] - 2, SHAPES[label - 1], color="white", fontsize=9,
                bbox={"facecolor": colour, "alpha": 0.85, "pad": 1, "edgecolor": "none"})
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("The training batch: mask outlines (solid) and the boxes derived from them (dashed)", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# In training mode the RPN keeps 300 / 200 proposals (the `"training"` entries), anchors and
# proposals are matched to the ground truth and sampled, and the losses are computed. The
# samples are drawn with `rng=`, here seed 0, so the call is reproducible (without it the model
# draws from its own generator, `small.generator`, which moves on at every call).
# `return_sampled=True` also returns the draw, `{"rpn": (pos_masks, neg_masks), "roi_heads":
# (pos_masks, neg_masks)}`; passed back as `sampled=`, it would replay it.

# %%
small.train()
start = time.perf_counter()
losses, sampled = small(images, targets, rng=0, return_sampled=True)  # {name: Tensor}, on the autograd tape
print(f"forward: {time.perf_counter() - start:.1f} s")
for name, loss in losses.items():
    print(f"{name:<17} {loss.item():.4f}")
(rpn_pos, rpn_neg), (roi_pos, roi_neg) = sampled["rpn"], sampled["roi_heads"]
print(f"sampled anchors: {sum(int(m.sum()) for m in rpn_pos)} positive, {sum(int(m.sum()) for m in rpn_neg)} "
      f"negative; sampled RoIs: {sum(int(m.sum()) for m in roi_pos)} positive, "
      f"{sum(int(m.sum()) for m in roi_neg)} negative (both images)")

# %% [markdown]
# - `loss_objectness`: binary cross-entropy of the RPN's objectness on the sampled anchors. The
#   RPN head starts with N(0, 0.01^2) weights, so every logit is near 0 and the loss near
#   ln 2 = 0.693.
# - `loss_rpn_box_reg`: smooth L1 of the RPN's deltas on the positive anchors, divided by the
#   number of sampled anchors (256 per image), hence small.
# - `loss_classifier`: cross-entropy of the box head's 4 classes on the sampled RoIs; ln 4 =
#   1.386 for uniform predictions.
# - `loss_box_reg`: smooth L1 of the deltas of the true class on the positive RoIs, divided by
#   the number of sampled RoIs.
# - `loss_mask`: binary cross-entropy of the true class's 28x28 mask on the positive RoIs, against
#   the ground-truth mask cut out of each RoI with RoIAlign. The mask predictor's Kaiming
#   initialisation gives logits far from 0, so it starts above ln 2.
#
# Their sum is what training minimises. `backward` fills the gradient of every trainable
# parameter (the stem and the first stage are frozen, `trainable_backbone_layers=3`), and one
# step of SGD with torchvision's reference settings (learning rate 0.02, momentum 0.9, weight
# decay 1e-4) updates them. Then the same batch again, with the same seed:

# %%
total = sum(losses.values())
small.zero_grad()
total.backward()
trainable = [p for p in small.parameters() if p.requires_grad]
print(f"trainable parameters with a gradient: {sum(p.grad is not None for p in trainable)} of {len(trainable)}"
      f" ({sum(not p.requires_grad for p in small.parameters())} frozen)")
optimizer = SGD(trainable, lr=0.02, momentum=0.9, weight_decay=1e-4)
optimizer.step()
after = small(images, targets, rng=0)
print(f"{'':<17} {'before':>8} {'after':>8}")
for name in losses:
    print(f"{name:<17} {losses[name].item():8.4f} {after[name].item():8.4f}")
total_after = sum(after.values())
print(f"{'total':<17} {total.item():8.4f} {total_after.item():8.4f}")
assert total_after.item() < total.item()

# %% tags=["hide-input"]
names = list(losses)
x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(9, 3.8))
for shift, values, label, colour in ((-0.2, losses, "before the step", "tab:gray"),
                                     (0.2, after, "after one SGD step", "tab:blue")):
    bars = ax.bar(x + shift, [values[n].item() for n in names], 0.4, label=label, color=colour)
    ax.bar_label(bars, fmt="%.3f", fontsize=8.5, padding=2)
ax.set_xticks(x, names)
ax.set_ylabel("loss")
ax.set_ylim(0, 1.15 * max(v.item() for v in losses.values()))
ax.set_title("The five losses on the same batch, before and after one SGD step", fontsize=11)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# One step lowers every loss on the batch it was computed on, which is all one step can show:
# the gradients of the five losses flow through the heads, the RPN and the backbone, and point
# downhill. The classifier's loss falls most, far below ln 4; the RPN's two losses barely move,
# because its head starts with tiny weights (N(0, 0.01^2)) and so receives small gradients.
#
# One caveat about "the same batch": the RPN's anchors are matched and sampled again with the
# same seed, so its sample is the same before and after; but the RoIs are sampled from the
# *new* proposals, which the step has changed. So `loss_box_reg`, an average over a handful of
# positive RoIs, is measured on a different sample after the step, and on another batch (try
# other seeds) it can rise after one step while the total falls.
#
# Training repeats this step over many batches, with a warm-up and a schedule for the learning
# rate. Chapter 7 does that on the shapes dataset, and then comes back to the inspection of this
# chapter with a trained model, where the proposals, the refined boxes and the masks finally
# land on objects. The package ships the result of such a run; the last section shows what it
# predicts.

# %% [markdown]
# ## 6.10 Predictions of a trained model
#
# `mrcnn_np.pretrained.shapes_model()` loads the small Mask R-CNN that `mrcnn-np demo` trains:
# the configuration `config.tiny()` (much like section 6.9's small one, with 128 x 128 images
# left at their size), trained from scratch on shapes images by repeating the step of section
# 6.9 over many batches. `model.classes` names its labels, and `model.metrics` holds the COCO
# numbers the demo measured on 100 held-out images: AP, the average precision over the IoU
# thresholds 0.5 to 0.95, and AP50, at IoU 0.5, for the boxes (`bbox`) and the masks (`segm`).
#
# The images below are four consecutive images of that held-out set (seed 1; the demo trains on
# seed 0), `held_out[12]` to `held_out[15]`: the first is the image of chapter 3, section 3.10,
# and chapter 5, section 5.9, the others are the next three, not a selection. (Chapter 7 shows
# the first six, evaluates the model on the whole held-out set and looks at its failure cases.)
# `model(images)` is the chain of sections 6.2 to 6.7. For each detection with a score of at
# least 0.5, the printout gives the ground-truth shape its box overlaps most, and the IoU of the
# two boxes and of the two masks (the predicted one thresholded at 0.5). The figure draws them
# with `mrcnn_np.viz.draw_instances`: each mask in its class's colour, the box, the class and
# the score.

# %%
trained = shapes_model()  # MaskRCNN(config.tiny()) with the shipped weights, in eval mode
print("classes:", trained.classes)
for kind in ("bbox", "segm") if trained.metrics else ():
    print(f"held-out {kind}: AP {trained.metrics[kind]['AP']:.3f}, AP50 {trained.metrics[kind]['AP50']:.3f}")
held_out = shapes_dataset(16, seed=1, **DemoSettings().data())  # the demo's held-out images
shown_ids = range(12, 16)
samples = [held_out[i] for i in shown_ids]  # [(image (128, 128, 3) uint8, target)]
start = time.perf_counter()
predictions = trained([shape_image for shape_image, _ in samples])
print(f"model(4 images): {time.perf_counter() - start:.1f} s")
for i, (_, target), out in zip(shown_ids, samples, predictions, strict=True):
    confident = np.flatnonzero(out["scores"] >= 0.5)  # the detections are sorted by decreasing score
    print(f"held_out[{i}]: ground truth {[trained.classes[k] for k in target['labels']]}; {len(out['scores'])} "
          f"detections, {len(confident)} with a score >= 0.5")
    box_overlap = box_iou(out["boxes"][confident], target["boxes"])  # (D, G)
    for d, row in zip(confident, box_overlap, strict=True):
        g = int(np.argmax(row))  # the ground-truth instance that the detection's box overlaps most
        mine, theirs = out["masks"][d, 0] > 0.5, target["masks"][g] > 0
        print(f"  {trained.classes[out['labels'][d]]:<8} {out['scores'][d]:.2f}   closest: the "
              f"{trained.classes[target['labels'][g]]:<8} box IoU {row[g]:.2f}, "
              f"mask IoU {(mine & theirs).sum() / (mine | theirs).sum():.2f}")

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, len(samples), figsize=(3 * len(samples), 6.4))
for col, (i, (shape_image, target), out) in enumerate(zip(shown_ids, samples, predictions, strict=True)):
    draw_instances(axes[0, col], shape_image, target, trained.classes, title=f"held_out[{i}]: ground truth")
    draw_instances(axes[1, col], shape_image, out, trained.classes, score_thresh=0.5,
                   title="prediction (score >= 0.5)")
fig.suptitle("A trained Mask R-CNN on held-out shapes: ground truth (top), predictions (bottom)", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# The threshold of 0.5 is the reader's choice, not the model's: `model(images)` returns every
# detection that passed the box head's threshold of 0.05, up to 50 per image here, best first.
# Below 0.5 the list goes on with weaker boxes and with second opinions on the same shapes, a
# different class on an object already detected (per-class NMS keeps those, chapter 5, section
# 5.4). COCO's AP, the numbers printed above, uses them all: it ranks the detections of the
# whole held-out set by score and measures precision and recall along that ranking.

# %% [markdown]
# ## 6.11 FPN, C4 and Faster R-CNN side by side
#
# The paper builds Mask R-CNN on two backbones (its Fig. 4) and compares it with Faster R-CNN,
# the same detector without the mask branch. All three are configurations of the one
# `MaskRCNN` class here, and `mrcnn-np demo` trains each of them on the shapes data:
#
# - **FPN** (`DemoSettings()`, the demo's model): the ResNet's four stages feed a feature
#   pyramid, P2 to P6; 3 anchors per location on each level; every RoI is pooled (7x7 for boxes,
#   14x14 for masks) from the one level that suits its size; a light box head of two fully
#   connected layers; a mask head of four 3x3 convs and a 2x2 deconvolution to 28x28.
# - **C4** (`DemoSettings(variant="c4")`, `config.tiny_c4`): only res2 to res4, so one map at
#   stride 16; 15 anchors per location (5 sizes x 3 ratios) on it; every RoI pooled 14x14 from
#   that map; then **res5**, the ResNet's last stage, runs on every RoI as the box head
#   (averaged to one vector per RoI) and, shared, as the start of the mask branch, whose 2x2
#   deconvolution gives 14x14 masks.
# - **Faster R-CNN** (`DemoSettings(task="detection")`, `mask_branch=False`): FPN without the
#   mask branch: boxes only.
#
# The three demo models, with the shapes their stages hand on for one 128x128 image in
# evaluation mode (100 proposals):

# %%
from mrcnn_np.train import TrainRecipe, make_optimizer, train_step

ARCHITECTURES = {"fpn": DemoSettings(), "c4": DemoSettings(variant="c4"),
                 "faster": DemoSettings(task="detection")}
TITLES = {"fpn": "Mask R-CNN, ResNet-FPN", "c4": "Mask R-CNN, ResNet-C4", "faster": "Faster R-CNN, ResNet-FPN"}
models = {name: MaskRCNN(s.config(), rng=0).eval() for name, s in ARCHITECTURES.items()}
fpn_defaults = asdict(ARCHITECTURES["fpn"].config())
for name, m in models.items():
    changed = {k: v for k, v in asdict(m.config).items() if v != fpn_defaults[k]}
    print(f"{name:<7} {sum(p.size for p in m.parameters()):>9,} parameters; settings unlike fpn: {changed}")


def shape(x):
    return "x".join(str(n) for n in x.shape[1:])  # drop the batch or RoI axis


def stage_shapes(m, image):
    """{stage: text} for one image: what each stage of ``m`` returns (shapes without the leading axis)."""
    out = {}
    with mrcnn_np.no_grad():
        batch, _ = m.transform([image], dtype=m.dtype)
        features = m.backbone(batch.tensors)
        names = ["P2", "P3", "P4", "P5", "P6"] if len(features) == 5 else ["C4"]  # keys "0" ... "pool", or "0"
        out["features"] = "\n".join(f"{n}: {shape(f)}" for n, f in zip(names, features.values(), strict=True))
        per_location = m.rpn.anchor_generator.num_anchors_per_location()
        anchors = sum(a * f.shape[-2] * f.shape[-1] for a, f in zip(per_location, features.values(), strict=True))
        (proposals,), _ = m.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
        out["rpn"] = f"{per_location[0]} anchors/location\n{anchors:,} anchors\n-> {len(proposals)} proposals"
        heads = m.roi_heads
        pooled = heads.box_roi_pool(features, [proposals], batch.image_sizes)
        out["box_pool"] = f"RoIAlign\n{len(proposals)} x {shape(pooled)}"
        represented = heads.box_head(pooled)
        out["box_head"] = f"{type(heads.box_head).__name__}\n{shape(represented)}"
        logits, deltas = heads.box_predictor(represented)
        out["box_predictor"] = f"classes {shape(logits)}\nboxes {shape(deltas)}"
        if heads.has_mask():
            pooled = heads.mask_roi_pool(features, [proposals], batch.image_sizes)
            out["mask_pool"] = f"RoIAlign\n{shape(pooled)}"
            hidden = heads.mask_head(pooled)
            shared = heads.mask_head is getattr(heads.box_head, "res5", None)
            out["mask_head"] = ("res5 (shared)" if shared else f"{len(heads.mask_head)} convs") + f"\n{shape(hidden)}"
            out["mask_predictor"] = f"deconv, 1x1 conv\n{shape(heads.mask_predictor(hidden))}"
    return out


demo_image = shapes_dataset(1, seed=1, **DemoSettings().data())[0][0]  # (128, 128, 3) uint8: held_out[0]
shapes = {name: stage_shapes(m, demo_image) for name, m in models.items()}
for name, stages in shapes.items():
    print(f"{name}: " + "; ".join(f"{k} {v}".replace("\n", ", ") for k, v in stages.items()))

# %% tags=["hide-input"]
def draw_architecture(ax, stages, title, backbone):
    """The stages of one architecture as boxes: the box branch on top, the mask branch below it."""
    top = [("image", "3x128x128"), (backbone, stages["features"]), ("RPN", stages["rpn"]),
           ("box RoIs", stages["box_pool"]), ("box head", stages["box_head"]), ("predictor", stages["box_predictor"])]
    colours = ["#dddddd", "#9ecae1", "#fdd0a2", "#c7e9c0", "#c7e9c0", "#c7e9c0"]
    for i, ((name, text), colour) in enumerate(zip(top, colours, strict=True)):
        ax.text(i * 2.1, 1, f"{name}\n{text}", ha="center", va="center", fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "#555555"})
        if i:
            ax.annotate("", (i * 2.1 - 0.8, 1), ((i - 1) * 2.1 + 0.8, 1), arrowprops={"arrowstyle": "->"})
    if "mask_pool" in stages:
        bottom = [("mask RoIs", stages["mask_pool"]), ("mask head", stages["mask_head"]),
                  ("mask predictor", stages["mask_predictor"])]
        for j, (name, text) in enumerate(bottom):
            x = (3 + j) * 2.1
            ax.text(x, -0.3, f"{name}\n{text}", ha="center", va="center", fontsize=7.5,
                    bbox={"boxstyle": "round,pad=0.4", "facecolor": "#fcbba1", "edgecolor": "#555555"})
            if j:
                ax.annotate("", (x - 0.8, -0.3), (x - 2.1 + 0.8, -0.3), arrowprops={"arrowstyle": "->"})
        # the mask RoIs are pooled from the backbone's maps, as the box RoIs are
        below_features = 1 - 0.11 * (stages["features"].count("\n") + 3)  # under the backbone's box
        ax.annotate("", (3 * 2.1 - 0.6, -0.15), (2.1, below_features),
                    arrowprops={"arrowstyle": "->", "color": "#a50f15"})
        if stages["mask_head"].startswith("res5"):  # C4: the mask head is the box head's res5, the same weights
            ax.plot([4 * 2.1, 4 * 2.1], [0.72, 0.05], ls="--", color="#a50f15")
            ax.text(4 * 2.1 + 0.12, 0.38, "same weights", fontsize=7, color="#a50f15", va="center")
    else:
        ax.text(3 * 2.1, -0.3, "no mask branch", ha="center", va="center", fontsize=8, color="#777777")
    ax.set_xlim(-1, 11.6)
    ax.set_ylim(-1, 1.9)
    ax.set_title(title, fontsize=10, loc="left")
    ax.axis("off")


fig, axes = plt.subplots(3, 1, figsize=(12, 7.2))
for ax, name in zip(axes, ARCHITECTURES, strict=True):
    draw_architecture(ax, shapes[name], TITLES[name], "res2-res4 (C4)" if name == "c4" else "ResNet + FPN")
fig.suptitle("Three architectures, each stage with the shape it returns (100 proposals of one 128x128 image)",
             fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# Where the work goes differs. FPN pools from a pyramid and keeps the head per RoI light: two
# fully connected layers on a 7x7 grid. C4 has a single, coarser map, so it gives each location
# five times as many anchors, and it moves a whole ResNet stage behind RoIAlign: res5 runs once
# **per RoI**, on 14x14 inputs, and again on the positive RoIs for their masks. Its masks are
# 14x14, not 28x28. Faster R-CNN is FPN without the lower row.
#
# Time per training iteration, measured now, on this machine: the demo's batch of four 128x128
# images, each model with its demo settings, the mean of two steps after one to warm up:

# %%
train_set = shapes_dataset(4, seed=0, **DemoSettings().data())  # the first batch of the demo's training images
train_batch = [train_set[i] for i in range(4)]  # [(image (128, 128, 3) uint8, target)]
iteration_seconds = {}
for name, s in ARCHITECTURES.items():
    m = MaskRCNN(s.config(), rng=0).train()
    optimizer, _ = make_optimizer(m, TrainRecipe(lr=0.002))
    times = []
    for step in range(3):
        start = time.perf_counter()
        train_step(m, optimizer, [im for im, _ in train_batch], [t for _, t in train_batch], rng=step)
        times.append(time.perf_counter() - start)
    iteration_seconds[name] = float(np.mean(times[1:]))
    print(f"{TITLES[name]:<26} {iteration_seconds[name]:.2f} s per iteration "
          f"({iteration_seconds[name] / iteration_seconds['fpn']:.1f}x FPN's)")

# %% [markdown]
# Training each one takes longer than a chapter should: `benchmarks/compare_architectures.py`
# runs `mrcnn-np demo` once per architecture (the same data, recipe and held-out images, at the
# 2,100 iterations and the widths the demo had when the sweep was run, an FPN of 64 channels and a
# mask head of 32; the two v2 models of
# torchvision's improved recipe as well) and writes every number, with the
# command, the commit and the machine, to `results/architectures.json`, which this section
# reads:

# %%
import json
from pathlib import Path

record = json.loads(Path("results/architectures.json").read_text())
print("produced by:", record["command"])
for name, entry in record["architectures"].items():
    made = entry["provenance"]
    where = (f"commit {made['commit'][:7]}{' (with uncommitted changes)' if made['uncommitted_changes'] else ''}, "
             f"{made['date'][:10]}, {made['cpus']} CPUs, load {made['load_average'][0]} before and "
             f"{entry['load_average_after'][0]} after") if made else "run found in its folder (provenance not recorded)"
    print(f"  {name:<10} {entry['command']:<45} {where}")
print()
print(f"{'architecture':<36} {'box AP50':>8} {'mask AP50':>9} {'box AP':>7} {'mask AP':>7} {'s/iteration':>11}")
for entry in record["architectures"].values():
    box, mask = entry["metrics"]["bbox"], entry["metrics"].get("segm", {})  # no "segm" without the mask branch
    mask_ap50, mask_ap = (f"{mask[k]:.3f}" if mask else "-" for k in ("AP50", "AP"))
    print(f"{entry['title']:<36} {box['AP50']:8.3f} {mask_ap50:>9} {box['AP']:7.3f} {mask_ap:>7} "
          f"{entry['seconds_per_iteration']:11.2f}")

# %% tags=["hide-input"]
names = list(record["architectures"])
entries = [record["architectures"][n] for n in names]
labels = [n.replace("faster", "Faster R-CNN").replace("fpn", "FPN").replace("c4", "C4").replace("_", " ")
          for n in names]
fig, (ax_ap, ax_time) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2, 1]})
x = np.arange(len(names))
for shift, kind, metric, colour in ((-0.3, "bbox", "AP50", "#6baed6"), (-0.1, "bbox", "AP", "#2171b5"),
                                    (0.1, "segm", "AP50", "#fc9272"), (0.3, "segm", "AP", "#cb181d")):
    values = [e["metrics"].get(kind, {}).get(metric, 0.0) for e in entries]
    bars = ax_ap.bar(x + shift, values, 0.2, color=colour, label=f"{'box' if kind == 'bbox' else 'mask'} {metric}")
    ax_ap.bar_label(bars, labels=[f"{v:.2f}" if v else "" for v in values], fontsize=7, padding=1)
ax_ap.set_xticks(x, labels)
ax_ap.set_ylim(0, 1.2)
ax_ap.set_yticks(np.linspace(0, 1, 6))
ax_ap.set_ylabel("COCO AP, 100 held-out images")
ax_ap.legend(fontsize=8, ncol=4, loc="upper center")
recorded = [e["seconds_per_iteration"] for e in entries]
measured = [iteration_seconds.get(n, 0.0) for n in names]
bars = ax_time.barh(x - 0.2, recorded, 0.4, color="#969696", label="the run (median)")
ax_time.bar_label(bars, fmt="%.2f", fontsize=7.5, padding=2)
bars = ax_time.barh(x + 0.2, measured, 0.4, color="#525252", label="measured above")
ax_time.bar_label(bars, labels=[f"{v:.2f}" if v else "" for v in measured], fontsize=7.5, padding=2)
ax_time.set_yticks(x, labels)
ax_time.invert_yaxis()
ax_time.set_xlabel("seconds per training iteration")
ax_time.set_xlim(0, 1.25 * max(recorded + measured))
ax_time.legend(fontsize=8, loc="lower right")
fig.suptitle("Trained with the demo's recipe: held-out AP (left), time per iteration (right)", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# **FPN against C4.** The paper finds C4 worse than FPN on COCO in accuracy (ResNet-50: 30.3
# against 33.6 mask AP, its Table 2a) and in speed (ResNet-101: about 400 ms per image against
# 195 ms: "we do not recommend using the C4 variant in practice"). On the shapes the direction
# is the same and the gap far larger: box AP50 0.38 against 0.93, mask AP50 0.34 against 0.93,
# each iteration several times as long (measured above). Three things make the small C4 weaker
# than the paper's:
#
# - **One coarse map.** At stride 16 a 128x128 image gives C4 an 8x8 map: a shape 30 pixels
#   wide covers two cells, and RoIAlign interpolates a 14x14 grid out of those two. FPN pools
#   the same shape from P2, a 32x32 map. The paper's images are 800 pixels, its C4 map 50x50 or
#   more.
# - **A small head.** The tiny ResNet has one bottleneck block per stage, so here res5, the
#   whole box head, is one block, trained from scratch, and its average pool keeps no layout.
#   The paper's res5 is three blocks of a network pretrained on ImageNet.
# - **The cost is per RoI.** res5 runs on 256 RoIs of 14x14 per batch, and again on the
#   positives for the masks. FPN's head is two small fully connected layers.
#
# The losses at the end of training tell where it fell short: the RPN's came down as far as
# FPN's, those of the RoI head (classifier, boxes, masks) stayed one and a half to two and a half
# times as high.

# %%
print(f"{'loss, mean of the last 100 iterations':<38}" + "".join(f"{n:>10}" for n in names))
for loss in record["architectures"]["fpn"]["final_losses"]:
    values = [record["architectures"][n]["final_losses"].get(loss) for n in names]
    print(f"{loss:<38}" + "".join(f"{v:10.3f}" if v is not None else f"{'-':>10}" for v in values))

# %% [markdown]
# **Faster R-CNN against Mask R-CNN.** The paper's Table 3 credits the mask branch with better
# boxes: 38.2 box AP for Mask R-CNN against 37.3 for Faster R-CNN with RoIAlign (ResNet-101-FPN),
# "due solely to the benefits of multi-task training". Here, one run each, Faster R-CNN has the
# better boxes (AP50 0.98 against 0.93, AP 0.79 against 0.73). That does not contradict the
# paper: one seed is one draw, and earlier runs of the same demo settings, at earlier commits,
# reached box AP50 0.952 and 0.961. An effect of one point needs several seeds to show. What one run does show is the price of the mask
# branch: Faster R-CNN's iterations took a little over half as long as Mask R-CNN's in the runs.
#
# **v1 against v2.** torchvision's v2 recipe (normalised FPN and heads, two RPN convs, a conv
# box head) gave the best Mask R-CNN here (box and mask AP 0.81 and 0.79, against 0.73 and 0.76),
# and a Faster R-CNN with the same box AP as v1's (0.79). Its conv box head doubles Faster
# R-CNN's iteration (0.26 s against 0.13 s, in the same sweep). The v2 Mask R-CNN's time was
# recorded at an earlier commit on a machine busy with other work (its provenance was not kept),
# so it does not compare with the others.

# %% [markdown]
# ## Summary
#
# - `MaskRCNN(MaskRCNNConfig())` has 44,401,393 parameters, exactly torchvision's
#   `maskrcnn_resnet50_fpn`. `predict` chains five lines without the autograd tape: the
#   transform, the backbone, `rpn.predict`, `roi_heads.predict` and `transform.postprocess`.
# - The transform normalises, resizes by `min(min_size / shorter side, max_size / longer side)`
#   and pads to a multiple of 32: with a shorter side of 320, the 600 x 512 photograph becomes
#   375 x 320, batched as `(1, 3, 384, 320)`, and `image_sizes` and `original_sizes` record both
#   sizes.
# - The backbone gives P2 `(1, 256, 96, 80)` to P6 `(1, 256, 6, 5)`. With random weights and
#   identity frozen norms the levels have an rms of about 50, and the RPN stretches its anchors
#   into slivers. Calibrating the frozen norms on the image, as `mrcnn-np verify` does, brings
#   the rms down to between 1.5 and 3.6 without teaching the network anything.
# - The RPN turns 30,690 anchors into 1000 proposals. The box head maps their `(1000, 256, 7, 7)`
#   grids to 91 logits and 91 class-specific boxes each, and the postprocessing cuts the 90,000
#   foreground candidates down to 84 detections (at most 100). The mask head gives
#   `(84, 91, 28, 28)` logits, and the masks pasted back into the photograph are
#   `(84, 1, 600, 512)`.
# - The stages run by hand give exactly, to the bit, what `model([image])` returns.
# - `mrcnn-np verify` compares every stage with torchvision on the same weights: in float64 all
#   of them, from the padded batch to the pasted masks, agree to about 1e-12 relative or better.
# - In training, `model(images, targets)` returns five losses (RPN objectness and box, classifier,
#   box, mask). On the small configuration (1,333,911 parameters), one SGD step (lr 0.02,
#   momentum 0.9, weight decay 1e-4) lowers their total on the same batch from 3.54 to 2.68.
# - The shipped `shapes_model()` stores the AP50 that the demo measured on 100 held-out images:
#   0.977 for boxes and 0.971 for masks. Its detections land on the shapes.
# - FPN, ResNet-C4 and Faster R-CNN are configurations of the one `MaskRCNN` class. Trained with
#   the demo's recipe at 2,100 iterations, with the widths of the time (a 64-channel FPN and
#   a 32-channel mask head; one run each,
#   `results/architectures.json`), FPN reached box
#   and mask AP50 0.93 and 0.93, C4 only 0.38 and 0.34 (one 8x8 map, a one-block res5 on every
#   RoI, several times the time per iteration), Faster R-CNN 0.98 for its boxes with iterations
#   about half as long as Mask R-CNN's.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/06_mask_rcnn/`. `mrcnn-np check 06` grades it against `mrcnn_np` and
# torchvision on a small model with seeded random weights; `mrcnn-np check 06 --hint` reveals the
# hints one at a time. It is about the parts that exist only for the whole model:
#
# 1. `transform`: normalise, resize and pad the images into one batch, as
#    `GeneralizedRCNNTransform`.
# 2. `boxes_to_original`: the detections' boxes mapped back to each original image.
# 3. `predict_from_stages`: inference wired from the model's stages; it must match
#    `MaskRCNN.predict`.
# 4. `first_disagreement`: given two runs of a model, find the first stage where they disagree.
#
# Further questions:
#
# - Section 6.8 compares the box head on torchvision's proposals, not on each library's own.
#   Why? What would a swap of two tied proposals do to a row-by-row comparison?
# - Resizing to a shorter side of 320 instead of 800 makes every object 2.5 times smaller. An
#   object 100 pixels wide in the photograph: which anchors and which RoIAlign level serve it at
#   each size?
# - After one SGD step the RoIs are sampled again from the new proposals. Why can
#   `loss_box_reg` rise after a step that lowers the total?
# - Section 6.11: on a 128x128 image C4's map is 8x8. Which settings of `config.tiny_c4` would
#   you change to give it a fairer chance on the shapes (image size, anchor sizes, res5's
#   blocks), and what would each cost per iteration? Try one with `mrcnn-np train --config
#   tiny_c4`.
