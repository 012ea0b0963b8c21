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
# # 4. RoIAlign
#
# The second stage of Mask R-CNN looks at every proposal through a feature grid of a fixed
# size: 7x7 for the box head, whose first layer flattens `256 x 7 x 7` values into a fully
# connected layer, and 14x14 for the mask head. A proposal is a box in image pixels with
# real-valued corners, anywhere in the image and of any size; the feature maps are grids
# with strides 4 to 32. Something has to cut each box out of a map and resample it to the
# fixed size.
#
# Fast R-CNN's **RoIPool** rounds the box to whole feature pixels, cuts it into bins with
# whole-pixel edges and takes the maximum of each bin. Mask R-CNN's **RoIAlign** rounds
# nothing: every bin averages a few sample points placed at exact fractional positions, each
# read by bilinear interpolation. The rounding matters little for a class label, but a mask
# must line up with the object to a pixel, and half a pixel of P5 is 16 image pixels.
#
# This chapter draws RoIPool's rounding on a real feature map and measures it, builds RoIAlign
# up from bilinear interpolation to its form as two small matrix products, shows the
# `aligned` half-pixel shift, which pyramid level each box is read from, and checks
# everything against torchvision.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/ops/roi_align.py` | `torchvision/ops/roi_align.py` (kernel: `csrc/ops/cpu/roi_align_kernel.cpp`) |
# | `mrcnn_np/ops/roi_pool.py` | `torchvision/ops/roi_pool.py` |
# | `mrcnn_np/ops/poolers.py` | `torchvision/ops/poolers.py` (`MultiScaleRoIAlign`, `LevelMapper`) |
# | `mrcnn_np/kernels/roi_align.py` | the same kernel, channels-last, in Numba |
#
# **About the weights.** The backbone below has *random* weights (the small trained model that
# ships with the package, used in chapters 3, 5 and 6, knows only synthetic shapes). Its feature
# maps respond to edges, contrast and colour, not to faces or medals, so the pooled values show
# *where* RoIPool and RoIAlign read, not what a trained detector sees. The geometry, which is
# what this chapter is about, does not depend on the weights.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cbook, patches

import mrcnn_np
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.ops.poolers import MultiScaleRoIAlign, infer_scale, level_of_boxes
from mrcnn_np.ops.roi_align import axis_matrix, roi_align, sampling_plan
from mrcnn_np.ops.roi_pool import roi_pool
from mrcnn_np.reference import import_torch

rng = np.random.default_rng(0)

# %% [markdown]
# ## 4.1 The feature maps of a photograph
#
# As in chapter 1: the photograph, normalised with the ImageNet statistics and cropped to
# 576 x 512 (multiples of 32), through `resnet_fpn_backbone("resnet50")` with random weights.
# We keep both the ResNet outputs C2 ... C5 and the FPN levels P2 ... P5.

# %%
path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
image = plt.imread(path)[:576]  # (600, 512, 3) -> (576, 512, 3) uint8
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
x = ((image.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W)
image_size = image.shape[:2]  # (H, W) = (576, 512)

backbone = resnet_fpn_backbone("resnet50", rng=0)
start = time.perf_counter()
with mrcnn_np.no_grad():
    c_maps = backbone.body(x)  # [C2, C3, C4, C5]
    p_maps = backbone.fpn(c_maps)  # {"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}
print(f"backbone forward: {time.perf_counter() - start:.1f} s")
c_maps = [f.data for f in c_maps]
p_maps = {k: f.data for k, f in p_maps.items()}
for k, (key, f) in enumerate(p_maps.items()):
    print(f"P{k + 2} ({key!r}): {f.shape}, stride {image_size[1] // f.shape[-1]}")

# %% [markdown]
# Our first box is the face. Section 4.8 shows that a box of this size (about 190 pixels)
# is read from level 3, stride 8. The FPN level P3 with random weights is mostly a blurred
# copy of the coarse levels (chapter 1, section 1.4), so the pictures use the ResNet output
# C3, which has the same stride 8 and still shows the photograph; RoIAlign treats every map
# alike. We show the single channel of C3 that varies most around the face.

# %%
face = np.array([[155, 147, 333, 347]], dtype=np.float32)  # (R, 4) xyxy, image pixels
print("level of the face box:", level_of_boxes([face]))
c3 = c_maps[1]  # (1, 512, 72, 64)
stride = image_size[0] // c3.shape[2]  # 8
scale = 1 / stride  # spatial_scale: feature pixels per image pixel
rows, cols = slice(12, 50), slice(14, 48)  # a window of C3 around the face
channel = int(np.argmax(c3[0, :, rows, cols].std(axis=(1, 2))))
feature = c3[:, channel : channel + 1]  # (1, 1, 72, 64): the channel we draw
fmap = feature[0, 0]  # (72, 64)
exact = face[0] * scale  # the face box in C3 coordinates
print(f"C3 {c3.shape}, channel {channel}; the face box on C3:", exact)


# %% tags=["hide-input"]
# drawing helpers: a window of a feature map in feature-pixel coordinates (pixel j is centred
# on j and covers [j - 0.5, j + 0.5]), box outlines, bin lines
def show_window(ax, fmap, rows, cols, cmap="gray", title=None, alpha=1.0):
    """Draw fmap[rows, cols] with every pixel at its own (column, row) index."""
    ax.imshow(fmap[rows, cols], cmap=cmap, alpha=alpha,
              extent=(cols.start - 0.5, cols.stop - 0.5, rows.stop - 0.5, rows.start - 0.5))
    ax.set_xlim(cols.start - 0.5, cols.stop - 0.5)
    ax.set_ylim(rows.stop - 0.5, rows.start - 0.5)
    if title:
        ax.set_title(title, fontsize=10)


def outline(ax, x1, y1, x2, y2, **style):
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))


def pixel_grid(ax, rows, cols, color="white", alpha=0.25):
    for r in range(rows.start, rows.stop + 1):
        ax.axhline(r - 0.5, color=color, lw=0.5, alpha=alpha)
    for c in range(cols.start, cols.stop + 1):
        ax.axvline(c - 0.5, color=color, lw=0.5, alpha=alpha)


def align_bins(ax, box, n=7, **style):
    """The n x n bins of an exact box (feature coordinates): equal, fractional edges."""
    x1, y1, x2, y2 = box
    for t in np.linspace(0, 1, n + 1):
        ax.plot([x1 + t * (x2 - x1)] * 2, [y1, y2], **style)
        ax.plot([x1, x2], [y1 + t * (y2 - y1)] * 2, **style)


# %% [markdown]
# ## 4.2 RoIPool rounds, RoIAlign does not
#
# Both ops take a map `(N, C, H, W)`, boxes in image pixels and `spatial_scale`, the map's
# size over the image's (1/8 here), and return `(R, C, 7, 7)`. The face box scaled to C3 has
# corners at fractions of a pixel. (In the figures, as in torchvision's default, feature pixel
# `j` sits at coordinate `j` and a box corner is simply multiplied by the scale; section 4.7
# comes back to this choice.) RoIPool (torchvision's arithmetic) rounds each corner to
# the nearest pixel, takes the pixels from the first to the last one *inclusive*, splits
# that range into 7 bins per axis with `floor` for a bin's first pixel and `ceil` for its
# end (so neighbouring bins may share a pixel), and keeps each bin's maximum.
#
# Which pixels each RoIPool bin reads can be measured with `roi_pool` itself: pool a "map"
# whose value is each pixel's own column index. The maximum of a bin is its last column,
# and the maximum of the negated map is minus its first column (likewise for rows).

# %%
def roi_pool_bins(boxes, spatial_scale, height, width, output_size=7):
    """First and last column and row of every RoIPool bin: four arrays (R, output_size),
    measured by pooling maps of the pixels' own coordinates."""
    r, c = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) row and column indices
    coords = np.stack([c, -c, r, -r])[None]  # (1, 4, H, W)
    out = roi_pool(coords, boxes, output_size, spatial_scale).data  # (R, 4, ph, pw)
    # columns vary along the bins of a row, rows along the bins of a column
    return -out[:, 1, 0, :], out[:, 0, 0, :], -out[:, 3, :, 0], out[:, 2, :, 0]


x_first, x_last, y_first, y_last = roi_pool_bins([face], scale, *c3.shape[2:])
pooled = roi_pool(feature, [face], 7, spatial_scale=scale).data  # (1, 1, 7, 7)
aligned = roi_align(feature, [face], 7, spatial_scale=scale, sampling_ratio=2).data  # (1, 1, 7, 7)
print("exact box on C3 (x1, y1, x2, y2):", exact)
print("RoIPool reads columns", int(x_first[0, 0]), "to", int(x_last[0, -1]), "and rows", int(y_first[0, 0]), "to",
      int(y_last[0, -1]))
print("columns of the 7 bins:", [f"{a:.0f}-{b:.0f}" for a, b in zip(x_first[0], x_last[0], strict=True)])
print("rows of the 7 bins:   ", [f"{a:.0f}-{b:.0f}" for a, b in zip(y_first[0], y_last[0], strict=True)])
print("outputs:", pooled.shape, aligned.shape)

# %% [markdown]
# Top left: the exact box (dashed) and RoIAlign's seven equal bins per axis, with fractional
# edges. Top right: the pixels RoIPool reads (orange): the rounded corners and the inclusive
# last pixel make it up to a pixel larger on each side, and its bins have whole-pixel edges
# and unequal sizes. The bins of the first row and of the first column are shaded in
# alternating colours: where the colours mix, two neighbouring bins share a pixel. Bottom:
# the two 7x7 outputs, on one colour scale. They differ for two reasons, where they read and
# maximum versus average; section 4.3 isolates the first.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 2, figsize=(11, 11))
ax = axes[0, 0]
show_window(ax, fmap, rows, cols, title="exact box and RoIAlign's 7x7 bins")
pixel_grid(ax, rows, cols)
align_bins(ax, exact, color="tab:cyan", lw=1)
outline(ax, *exact, edgecolor="yellow", lw=2, ls="--")
ax = axes[0, 1]
show_window(ax, fmap, rows, cols, title="RoIPool: rounded box (orange), its 7x7 bins")
pixel_grid(ax, rows, cols)
outline(ax, *exact, edgecolor="yellow", lw=2, ls="--")
outline(ax, x_first[0, 0] - 0.5, y_first[0, 0] - 0.5, x_last[0, -1] + 0.5, y_last[0, -1] + 0.5,
        edgecolor="tab:orange", lw=2.5)
for q in range(7):  # the bins of the first row and of the first column, shaded, alternating colours
    colour = ("tab:orange", "tab:green")[q % 2]
    ax.add_patch(patches.Rectangle((x_first[0, q] - 0.5, y_first[0, 0] - 0.5), x_last[0, q] - x_first[0, q] + 1,
                                   y_last[0, 0] - y_first[0, 0] + 1, color=colour, alpha=0.35))
    ax.add_patch(patches.Rectangle((x_first[0, 0] - 0.5, y_first[0, q] - 0.5), x_last[0, 0] - x_first[0, 0] + 1,
                                   y_last[0, q] - y_first[0, q] + 1, color=colour, alpha=0.35))
    ax.plot([x_first[0, q] - 0.5] * 2, [y_first[0, 0] - 0.5, y_last[0, -1] + 0.5], color="tab:orange", lw=0.8)
    ax.plot([x_first[0, 0] - 0.5, x_last[0, -1] + 0.5], [y_first[0, q] - 0.5] * 2, color="tab:orange", lw=0.8)
for ax in axes[0]:
    ax.set_xlabel("C3 column")
    ax.set_ylabel("C3 row")
low, high = min(aligned.min(), pooled.min()), max(aligned.max(), pooled.max())  # one colour scale for both
for ax, out, name in ((axes[1, 0], aligned, "RoIAlign (sampling_ratio=2): averages"),
                      (axes[1, 1], pooled, "RoIPool: maxima")):
    im = ax.imshow(out[0, 0], cmap="gray", vmin=low, vmax=high)
    for (r, c), v in np.ndenumerate(out[0, 0]):
        dark = v < (low + high) / 2
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8.5, color="white" if dark else "black")
    ax.set_title(f"{name}, 7x7", fontsize=10)
    ax.set_xticks(range(7))
    ax.set_yticks(range(7))
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.suptitle(f"The face box on C3 (stride {stride}), channel {channel}", fontsize=12)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4.3 How far off, in image pixels
#
# Rounding a corner moves it by up to half a feature pixel, which is `stride / 2` image
# pixels: 2 on P2, 16 on P5. The bins add their own rounding. The same coordinate maps
# measure it for many boxes. RoIAlign, given the map of column indices, returns the mean
# position of each bin's sample points (bilinear interpolation reproduces a linear function
# exactly), which should be the bin's exact centre.
#
# For each level, 400 boxes of the sizes that level receives (section 4.8) at random
# sub-pixel positions; errors are in image pixels, comparing a bin's centre with the exact
# one (for RoIPool, the centre of its first and last pixel).

# %%
canvas = 1024  # the coordinate maps need not be the image: a larger canvas keeps every box away from the edges
table = ["                          RoIPool                    RoIAlign",
         "level  stride  box sizes    corner      bin centre     bin centre",
         "                            max  mean   max  mean      max"]
for level, (lo, hi) in zip(range(2, 6), [(32, 112), (112, 224), (224, 448), (448, 600)], strict=True):
    s = 2**level
    n = canvas // s  # the coordinate maps are n x n
    size = rng.uniform(lo, hi, (400, 1))
    x1, y1 = rng.uniform(s, canvas - size - 2 * s), rng.uniform(s, canvas - size - 2 * s)
    random_boxes = np.concatenate([x1, y1, x1 + size, y1 + size], axis=1).astype(np.float32)  # (400, 4)
    bx1, bx2 = random_boxes[:, :1].astype(np.float64), random_boxes[:, 2:3].astype(np.float64)  # (400, 1) each
    exact_centres = bx1 + (np.arange(7) + 0.5) * (bx2 - bx1) / 7  # (400, 7), image pixels
    first, last, _, _ = roi_pool_bins([random_boxes], 1 / s, n, n)  # (400, 7) each
    corner = np.abs(np.concatenate([s * first[:, 0] - bx1[:, 0], s * last[:, -1] - bx2[:, 0]]))
    pool_centre = np.abs(s * (first + last) / 2 - exact_centres)
    columns = np.broadcast_to(np.arange(n, dtype=np.float32), (1, 1, n, n))  # (1, 1, n, n): column index
    align_centre = s * roi_align(columns, [random_boxes], 7, 1 / s, sampling_ratio=2).data[:, 0, 0, :]  # (400, 7)
    align_error = np.abs(align_centre - exact_centres)
    table.append(f"P{level}     {s:>4}    {lo:>3} - {hi:<3}   {corner.max():5.1f} {corner.mean():4.1f}  "
                 f"{pool_centre.max():5.1f} {pool_centre.mean():4.1f}     {align_error.max():.0e}")
print("\n".join(table))  # errors in image pixels

# %% [markdown]
# RoIPool's corners are off by up to `stride / 2` pixels (a quarter stride on average), and
# its bins by up to about a whole stride: on P5 a bin can sit almost 32 image pixels away from
# where it belongs. RoIAlign's bins are where they should be, to float32 precision.
#
# The rounding also makes RoIPool's output a step function of the box: shift the face box to
# the right by a fraction of a pixel at a time, and RoIPool's output stays put, then jumps
# when a rounded edge flips to the next pixel; RoIAlign's output moves continuously. The box
# head must predict corrections of a few pixels, but through RoIPool proposals a few pixels
# apart get identical features, and then features that jump. Below, two feature pixels of shifts (16 image pixels) in steps of 1/4 pixel:
# left one output value (of the channel drawn above, in the bin where RoIPool changes most),
# right the change of the whole output (all 512 channels of C3), relative to the unshifted box.

# %%
shifts = np.arange(0, 16.25, 0.25, dtype=np.float32)  # image pixels
shifted = face + shifts[:, None] * np.array([1, 0, 1, 0], dtype=np.float32)  # (S, 4) xyxy
out_pool = roi_pool(c3, [shifted], 7, spatial_scale=scale).data  # (S, 512, 7, 7)
out_align = roi_align(c3, [shifted], 7, spatial_scale=scale, sampling_ratio=2).data  # (S, 512, 7, 7)


def relative_change(out):
    """|out(shift) - out(0)| / |out(0)| over all channels and bins, for every shift."""
    return np.linalg.norm((out - out[:1]).reshape(len(out), -1), axis=1) / np.linalg.norm(out[0])


print("distinct RoIPool outputs over", len(shifts), "shifts:", len(np.unique(out_pool.reshape(len(shifts), -1),
                                                                              axis=0)))
# for the left plot: the bin of the drawn channel whose RoIPool value changes most with the shift
bin_r, bin_c = np.unravel_index(np.ptp(out_pool[:, channel], axis=0).argmax(), (7, 7))
print(f"plotted: channel {channel}, bin ({bin_r}, {bin_c})")

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
ax1.plot(shifts, out_pool[:, channel, bin_r, bin_c], drawstyle="steps-post", color="tab:orange", label="RoIPool")
ax1.plot(shifts, out_align[:, channel, bin_r, bin_c], color="tab:blue", label="RoIAlign")
ax1.set_ylabel(f"output value, bin ({bin_r}, {bin_c}), channel {channel}")
ax1.set_title("one output value")
ax2.plot(shifts, relative_change(out_pool), drawstyle="steps-post", color="tab:orange", label="RoIPool")
ax2.plot(shifts, relative_change(out_align), color="tab:blue", label="RoIAlign")
ax2.set_ylabel("relative change of the (512, 7, 7) output")
ax2.set_title("the whole output")
for ax in (ax1, ax2):
    ax.set_xlabel("shift of the box to the right (image pixels)")
    for k in range(3):
        ax.axvline(k * stride, color="gray", lw=0.6, ls=":")
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The dotted lines are whole C3 pixels (8 image pixels). RoIPool's output changes at only four
# shifts, where a rounded edge flips (the left edge at 1 and 9 pixels, the right one at 7 and
# 15), and there by a jump; RoIAlign's changes at every shift, continuously.

# %% [markdown]
# ## 4.4 Bilinear interpolation
#
# RoIAlign reads the map at fractional positions. A point `(y, x)` lies between four pixels:
# `y0 = floor(y)`, `y1 = y0 + 1`, `x0 = floor(x)`, `x1 = x0 + 1`. With `ly = y - y0`,
# `hy = 1 - ly` and likewise `lx`, `hx`,
#
# ```text
# f(y, x) = hy*hx f[y0, x0] + hy*lx f[y0, x1] + ly*hx f[y1, x0] + ly*lx f[y1, x1]
#         = [hy, ly] @ f[y0:y1+1, x0:x1+1] @ [hx, lx]
# ```
#
# Each weight is the area of the rectangle between the point and the *opposite* pixel, and
# the weights are the outer product of one pair per axis: the interpolation is **separable**.
# Torchvision's kernel computes the pair of an axis with the same few operations (and
# special cases: a point within one pixel outside the map is clamped to its edge, one
# farther out reads 0). `sampling_plan` does the same for every sample point of every box and
# returns, per axis, the two pixel indices and their weights (`AxisTaps`).
#
# One point read from C3 with the library: a 1x1 output with one sample per bin
# (`sampling_ratio=1`) samples the bin's centre, so a box of width 1 centred on `(y, x)` reads
# exactly `f(y, x)`. (With `spatial_scale=1` the box is given in feature coordinates.)

# %%
py, px = 30.3, 27.65  # a point on C3, feature coordinates
point_box = np.array([[0, px - 0.5, py - 0.5, px + 0.5, py + 0.5]], dtype=np.float32)  # (R, 5): batch, x1, y1, x2, y2
plan = sampling_plan(point_box, 1.0, 1, 1, False, *c3.shape[2:], np.float32)
print("y taps: pixels", plan.y.low[0, 0, 0], plan.y.high[0, 0, 0], "weights", plan.y.w_low[0, 0, 0],
      plan.y.w_high[0, 0, 0])
print("x taps: pixels", plan.x.low[0, 0, 0], plan.x.high[0, 0, 0], "weights", plan.x.w_low[0, 0, 0],
      plan.x.w_high[0, 0, 0])
y0, x0 = int(np.floor(py)), int(np.floor(px))
ly, lx = py - y0, px - x0
weights = np.outer([1 - ly, ly], [1 - lx, lx])  # (2, 2): [hy, ly] x [hx, lx]
neighbours = fmap[y0 : y0 + 2, x0 : x0 + 2]  # (2, 2)
print("weights\n", weights.round(4), "\nsum", weights.sum())
print("by hand:       ", (weights * neighbours).sum())
print("roi_align 1x1: ", roi_align(feature, point_box, 1, 1.0, sampling_ratio=1).data[0, 0, 0, 0])

# %% [markdown]
# Left, the point and its four pixels: each weight is the area of the rectangle of the same
# colour, on the far side from its pixel. Right, what interpolation does to a small window of
# C3: `roi_align` with a 64x64 output and one sample per bin reads 64x64 points spread over the
# window, i.e. resizes it bilinearly.

# %% tags=["hide-input"]
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4.4), width_ratios=[1.1, 1, 1])
corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
colours = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
for (cy, cx), colour in zip(corners, colours, strict=True):
    oy, ox = 2 * y0 + 1 - cy, 2 * x0 + 1 - cx  # the opposite corner
    ax1.add_patch(patches.Rectangle((min(px, ox), min(py, oy)), abs(px - ox), abs(py - oy), color=colour, alpha=0.3))
    w_c = weights[cy - y0, cx - x0]
    ax1.plot(cx, cy, "o", color=colour, ms=12)
    dy = -0.1 if cy == y0 else 0.1
    ax1.text(cx, cy + dy, f"f[{cy},{cx}] = {fmap[cy, cx]:.2f}\nweight {w_c:.3f}", color=colour, fontsize=9,
             ha="center", va="bottom" if cy == y0 else "top")
ax1.plot(px, py, "k*", ms=14)
ax1.text(px + 0.04, py - 0.04, f"(y, x) = ({py}, {px})", fontsize=9)
ax1.set_xlim(x0 - 0.5, x0 + 1.5)
ax1.set_ylim(y0 + 1.45, y0 - 0.45)
ax1.set_xticks([x0, px, x0 + 1], [f"x0 = {x0}", "x", f"x1 = {x0 + 1}"])
ax1.set_yticks([y0, py, y0 + 1], [f"y0 = {y0}", "y", f"y1 = {y0 + 1}"])
ax1.set_aspect("equal")
ax1.set_xlabel("column")
ax1.set_ylabel("row")
ax1.set_title("a point between four pixels", fontsize=10)
win_r, win_c = slice(26, 34), slice(23, 31)  # an 8x8 window around the point
show_window(ax2, fmap, win_r, win_c, title="8x8 window of C3: the pixels")
ax2.plot(px, py, "r*", ms=10)
# the whole window as one box: 64 bins of 1/8 pixel per axis, one sample at each bin's centre
window_box = np.array([[0, win_c.start - 0.5, win_r.start - 0.5, win_c.stop - 0.5, win_r.stop - 0.5]], np.float32)
resized = roi_align(feature, window_box, 64, 1.0, sampling_ratio=1).data[0, 0]  # (64, 64)
ax3.imshow(resized, cmap="gray", extent=(win_c.start - 0.5, win_c.stop - 0.5, win_r.stop - 0.5, win_r.start - 0.5))
ax3.plot(px, py, "r*", ms=10)
ax3.set_title("roi_align to 64x64: bilinear", fontsize=10)
fig.tight_layout()
plt.show()


# %% [markdown]
# ## 4.5 The sampling grid inside each bin
#
# A bin of RoIAlign is not one point but the average of a `g_h x g_w` grid of points, placed
# at the centres of equal sub-cells of the bin: point `i` of bin `p` along y sits at
# `y1 + p * bin_h + (i + 0.5) * bin_h / g_h`. `sampling_ratio` sets `g_h = g_w`; torchvision's
# Mask R-CNN uses 2 (four points per bin). With `sampling_ratio <= 0` (the default of the
# function `roi_align`, not of Mask R-CNN) the grid adapts to the box:
# `g_h = ceil(roi_h / 7)`, about one point per feature pixel, so large boxes cost more.
#
# The sample positions come straight from the plan: for a point inside the map,
# `position = low + w_high` (the fraction past the lower pixel); points that read nothing have
# both weights 0.

# %%
def sample_positions(taps, r=0):
    """(bins, G) positions of the sample points of box r along one axis; NaN for points that read nothing."""
    pos = taps.low[r] + taps.w_high[r]
    return np.where(taps.w_low[r] + taps.w_high[r] > 0, pos, np.nan)


face_roi = np.concatenate([[[0]], face], axis=1).astype(np.float32)  # (1, 5): batch index, x1, y1, x2, y2
plans = {ratio: sampling_plan(face_roi, scale, 7, ratio, False, *c3.shape[2:], np.float32) for ratio in (2, -1)}
for ratio, p in plans.items():
    g_h, g_w = p.y.low.shape[2], p.x.low.shape[2]
    print(f"sampling_ratio={ratio:>2}: {g_h} x {g_w} points per bin, count {p.count[0]:.0f}, "
          f"{49 * g_h * g_w} points in all")
print("first bin's sample rows (sampling_ratio=2):", sample_positions(plans[2].y)[0])
by_ratio = {ratio: roi_align(c3, [face], 7, scale, sampling_ratio=ratio).data for ratio in (2, -1)}
difference = np.abs(by_ratio[2] - by_ratio[-1]).max() / np.abs(by_ratio[-1]).max()
print(f"outputs, sampling_ratio 2 vs adaptive: max difference {difference:.2f} of the largest value")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(12, 6.3))
for ax, (ratio, p) in zip(axes, plans.items(), strict=True):
    g = p.y.low.shape[2]
    show_window(ax, fmap, rows, cols, title=f"sampling_ratio={ratio}: {g}x{g} points per bin", alpha=0.55)
    pixel_grid(ax, rows, cols, color="gray", alpha=0.4)
    align_bins(ax, exact, color="tab:blue", lw=1.2)
    outline(ax, *exact, edgecolor="tab:blue", lw=2)
    ys, xs = sample_positions(p.y).ravel(), sample_positions(p.x).ravel()  # (7 * g,) each
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    ax.plot(grid_x.ravel(), grid_y.ravel(), "o", color="tab:red", ms=4.5 if g <= 2 else 2.2, mew=0)
    ax.set_xlabel("C3 column")
axes[0].set_ylabel("C3 row")
fig.tight_layout()
plt.show()

# %% [markdown]
# With two points per axis, a bin of 3.2 x 3.6 pixels is sampled at 4 points, so a few
# pixels inside each bin get little or no weight; the adaptive grid (4 x 4 here) covers them
# all. Thanks to the level mapping (section 4.8), most boxes span about 14 to 28 pixels of
# the level they are read from (small boxes on P2 and very large ones on P5 fewer or more),
# so a bin is 2 to 4 pixels wide and `sampling_ratio=2` samples it sparsely, at a fixed cost.

# %% [markdown]
# ## 4.6 RoIAlign is two small matrix products
#
# Because the interpolation weights are separable and the sample grid is a product of a row
# grid and a column grid, the whole operation for one box is
#
# ```text
# out[c] = W_y @ f[c] @ W_x.T / (g_h * g_w)        W_y: (ph, H), W_x: (pw, W)
# ```
#
# Row `p` of `W_y` holds, for every row of the map, the summed weight of bin `p`'s sample rows
# on it (`axis_matrix` builds it from the plan); multiplying on the left averages rows,
# on the right columns. This is `roi_align_numpy`, the library's readable specification (it
# multiplies only the band of the map the box touches). The Numba kernel computes the same
# sums point by point, channels-last.

# %%
p = plans[2]
H, W = c3.shape[2:]
W_y = axis_matrix(p.y, 0, H)  # (7, 72)
W_x = axis_matrix(p.x, 0, W)  # (7, 64)
print("W_y", W_y.shape, "row sums", W_y.sum(axis=1), "(g_h sample rows, weights summing to 1 each)")
by_matrices = W_y @ c3[0] @ W_x.T / p.count[0]  # (7, 72) @ (512, 72, 64) @ (64, 7) -> (512, 7, 7)
for impl in ("numpy", "numba"):
    out = roi_align(c3, [face], 7, scale, sampling_ratio=2, impl=impl).data[0]  # (512, 7, 7)
    print(f"impl={impl}: max |W_y f W_x^T / count - roi_align| = {np.abs(by_matrices - out).max():.1e}")

# %% [markdown]
# `W_y` as an image, restricted to the rows of the map the box touches (all other columns
# are 0). Each bin's two sample rows fall between two pixels each, so a row of `W_y` has up to
# four non-zero weights; neighbouring bins can share a pixel.

# %% tags=["hide-input"]
band = np.flatnonzero(W_y.any(axis=0))
b0, b1 = band[0] - 1, band[-1] + 2
fig, ax = plt.subplots(figsize=(12, 3.6))
im = ax.imshow(W_y[:, b0:b1], cmap="Blues", extent=(b0 - 0.5, b1 - 0.5, 6.5, -0.5), vmin=0, vmax=1)
for (r, c), v in np.ndenumerate(W_y[:, b0:b1]):
    if v > 0:
        ax.text(b0 + c, r, f"{v:.2f}", ha="center", va="center", fontsize=7.5, color="white" if v > 0.6 else "black")
ax.set_xticks(range(b0, b1))
ax.tick_params(axis="x", labelsize=8)
ax.set_yticks(range(7))
ax.set_xlabel("row of the C3 map")
ax.set_ylabel("bin p")
ax.set_title(f"W_y ({W_y.shape[0]} x {H}) of the face box, sampling_ratio=2: its columns {b0} to {b1 - 1}")
fig.colorbar(im, ax=ax, fraction=0.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4.7 `aligned=True` and the half-pixel shift
#
# Where is feature pixel `j` in the image? In the *pixel model*, a feature pixel of stride `s`
# summarises the `s x s` cell of the image that starts at `s * j`, so its value belongs at the
# cell's centre, `s * (j + 0.5)` (image coordinates in which image pixel `i` covers
# `[i, i + 1)`). RoIAlign scales a box corner `x` to `x / s` and interpolates treating pixel
# `j` as sitting at `j`. To agree with the pixel model it must subtract half a pixel first:
# that is `aligned=True` (Detectron2's `ROIAlignV2`). The original RoIAlign, and
# torchvision's default, `aligned=False`, does not, so in the pixel model it reads half a
# feature pixel, `s / 2` image pixels, down and to the right of the box. (With
# `aligned=False` torchvision also enlarges boxes smaller than one feature pixel to 1x1.)
#
# Drawn on the photograph: the C3 cells (8 x 8 image pixels), the face box, and where the 7x7
# bin centres (`sampling_ratio=1`, left) and the 2x2 points of the bins at the bottom-right
# corner (`sampling_ratio=2`, right) read, converted to image coordinates with
# `s * (u + 0.5)`. The printout measures the same with `roi_align` on the map of column indices.

# %%
centres = {}
for flag in (False, True):
    p = sampling_plan(face_roi, scale, 7, 1, flag, *c3.shape[2:], np.float32)
    centres[flag] = (stride * (sample_positions(p.y)[:, 0] + 0.5), stride * (sample_positions(p.x)[:, 0] + 0.5))
columns_c3 = np.broadcast_to(np.arange(W, dtype=np.float32), (1, 1, H, W))  # each pixel's column index
# the same with sampling_ratio=2, measured with roi_align on the map of column indices: (7,) per flag
mean_column = {flag: roi_align(columns_c3, [face], 7, scale, sampling_ratio=2, aligned=flag).data[0, 0, 0]
               for flag in (False, True)}
exact_x = face[0, 0] + (np.arange(7) + 0.5) * (face[0, 2] - face[0, 0]) / 7
print("x of the 7 bin centres, image pixels (pixel model)")
print("exact:                          ", exact_x.round(2))
for flag in (False, True):
    print(f"aligned={flag!s:<5} reads at:          ", centres[flag][1].round(2))
for flag in (False, True):
    print(f"aligned={flag!s:<5} mean sample (ratio 2):", (stride * (mean_column[flag] + 0.5)).round(2))

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6.6), width_ratios=[1.05, 1])
zoom = (295, 342, 355, 306)  # x from, x to, y from (bottom), y to (top): the box's bottom-right corner
for ax in (ax1, ax2):
    ax.imshow(image)
    for v in range(0, image_size[1] + 1, stride):
        ax.axvline(v, color="white", lw=0.5, alpha=0.6)
    for v in range(0, image_size[0] + 1, stride):
        ax.axhline(v, color="white", lw=0.5, alpha=0.6)
    outline(ax, *face[0], edgecolor="yellow", lw=2.5)
    outline(ax, *(face[0] + stride / 2), edgecolor="tab:red", lw=1.5, ls="--")
for flag, marker, colour in ((True, "o", "tab:green"), (False, "X", "tab:red")):
    cy, cx = np.meshgrid(*centres[flag], indexing="ij")
    ax1.plot(cx.ravel(), cy.ravel(), marker, color=colour, ms=7, mec="white", mew=0.8, label=f"aligned={flag}")
    p2 = sampling_plan(face_roi, scale, 7, 2, flag, *c3.shape[2:], np.float32)  # sampling_ratio=2
    ys, xs = (stride * (sample_positions(t).ravel() + 0.5) for t in (p2.y, p2.x))  # image coordinates
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    ax2.plot(gx.ravel(), gy.ravel(), marker, color=colour, ms=9, mec="white", mew=0.8, label=f"aligned={flag}")
ax1.add_patch(patches.Rectangle((zoom[0], zoom[3]), zoom[1] - zoom[0], zoom[2] - zoom[3], fill=False, ec="white",
                                lw=1.5, ls=":"))
ax1.set_xlim(140, 352)
ax1.set_ylim(362, 132)
ax1.set_title("7x7 bin centres (sampling_ratio=1)", fontsize=11)
ax1.legend(loc="lower left", fontsize=10, framealpha=0.9)
ax2.set_xlim(zoom[0], zoom[1])
ax2.set_ylim(zoom[2], zoom[3])
ax2.set_title("bottom-right corner: the sample points of sampling_ratio=2", fontsize=11)
ax2.legend(loc="upper left", fontsize=10, framealpha=0.9)
fig.suptitle("Face box (yellow) and where RoIAlign reads it on C3 (white grid: C3 cells of 8 x 8 pixels),\n"
             "in the pixel model; dashed red: the box shifted by half a cell, what aligned=False reads", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# With `aligned=True` the bin centres fall exactly on the box's; with `aligned=False` they are
# 4 pixels (half a C3 cell) down and to the right, and so is every sample point: the region
# sampled is the dashed box, which misses a 4-pixel strip along the face box's top and left
# edges and reaches 4 pixels past its bottom and right edges. On P5 the shift would be 16
# pixels.
#
# Is the pixel model right for convolutional features? Not exactly. In torchvision's ResNet
# every stride-2 layer (the 7x7 stem conv with padding 3, the 3x3 max-pool with padding 1, the
# 3x3 convs with padding 1, the 1x1 downsample convs) centres output `j` on input `2j`, so the
# receptive field of C3 pixel `j` is centred on image pixel `8j`, i.e. at `8j + 0.5`, which is
# closer to `aligned=False`'s assumption than to the pixel model. Where the pixel model is exact
# (a resized image, or the ground-truth masks that training resamples into each box),
# `aligned=True` is right. For a trained network the convention it was trained with is what
# matters most: torchvision's Mask R-CNN uses `aligned=False` everywhere, and so does this
# library's model.

# %% [markdown]
# ## 4.8 Which level a box is read from
#
# A large box is read from a coarse level and a small one from a fine level, so that every
# box covers a similar number of feature pixels. The FPN paper (Lin et al. 2017, eq. 1) picks
#
# ```text
# k = floor(4 + log2(sqrt(w * h) / 224)),  clamped to 2..5
# ```
#
# A 224 x 224 box (ImageNet's image size) goes to P4; each halving of the size goes one level
# finer. So boxes below 112 pixels (square root of the area) go to P2, 112 to 224 to P3,
# 224 to 448 to P4, and larger ones to P5; P6 is used only by the RPN. Torchvision adds
# 1e-6 inside the floor so that a box of exactly 224 is not sent to P3 by a rounding error.
# The library's `LevelMapper` reproduces this; `level_of_boxes` returns `k`.

# %%
sizes = np.geomspace(16, 1024, 600, dtype=np.float32)  # sqrt(w * h)
squares = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], axis=1)  # (600, 4) xyxy
levels = level_of_boxes([squares])
edges = np.array([100, 111.9, 112, 223.9, 224, 447.9, 448], dtype=np.float32)  # sqrt(w h) of square boxes
print("size -> level:", {round(float(s), 1): int(k) for s, k in zip(edges, level_of_boxes(
    [np.stack([0 * edges, 0 * edges, edges, edges], axis=1)]), strict=True)})

named = {  # xyxy boxes on the photograph, image pixels
    "star": (65, 62, 118, 112), "name tag": (76, 484, 172, 526), "ribbons": (326, 482, 452, 520),
    "glasses": (150, 160, 350, 225), "face": (155, 147, 333, 347), "cap": (142, 22, 345, 170),
    "head": (135, 15, 352, 352), "flag": (0, 0, 215, 470), "person": (30, 15, 512, 576),
}
boxes = np.array(list(named.values()), dtype=np.float32)  # (9, 4)
box_levels = level_of_boxes([boxes])
for (name, b), k in zip(named.items(), box_levels, strict=True):
    print(f"{name:>9}: {b[2] - b[0]:>3} x {b[3] - b[1]:>3}, sqrt(wh) = {np.sqrt((b[2] - b[0]) * (b[3] - b[1])):5.1f}"
          f"  -> P{k}")

# %% tags=["hide-input"]
level_colours = {2: "tab:blue", 3: "tab:green", 4: "tab:orange", 5: "tab:red"}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6), width_ratios=[1.25, 1])
ax1.plot(sizes, 4 + np.log2(sizes / 224), color="gray", lw=1, ls="--", label="4 + log2(sqrt(wh) / 224)")
ax1.plot(sizes, levels, color="black", lw=2, drawstyle="steps-post", label="level k (floor, clamped to 2..5)")
for t in (112, 224, 448):
    ax1.axvline(t, color="gray", lw=0.8, ls=":")
    ax1.text(t * 1.03, 1.3, str(t), fontsize=9, color="dimgray")
for k, colour in level_colours.items():
    ax1.axhspan(k - 0.08, k + 0.08, color=colour, alpha=0.25)
ax1.set_xscale("log")
ax1.set_xticks([16, 32, 64, 112, 224, 448, 1024], ["16", "32", "64", "112", "224", "448", "1024"])
ax1.set_ylim(1, 6.2)
ax1.set_yticks(range(2, 6), [f"P{k}" for k in range(2, 6)])
ax1.set_xlabel("box size sqrt(w h), image pixels")
ax1.set_title("FPN level of a box")
ax1.legend(loc="upper left", fontsize=9)
ax2.imshow(image)
at_bottom = {"head", "glasses"}  # labels inside the bottom-left corner, so that none overlap
for (name, b), k in zip(named.items(), box_levels, strict=True):
    outline(ax2, *b, edgecolor=level_colours[k], lw=2.2)
    bottom = name in at_bottom
    ax2.text(b[0] + 3, b[3] - 3 if bottom else b[1] + 3, name, color="white", fontsize=8.5,
             va="bottom" if bottom else "top",
             bbox={"facecolor": level_colours[k], "alpha": 0.85, "pad": 1, "edgecolor": "none"})
ax2.set_xticks([])
ax2.set_yticks([])
ax2.set_title("boxes coloured by level")
ax2.legend(handles=[patches.Patch(color=c, label=f"P{k}") for k, c in level_colours.items()], loc="upper left",
           bbox_to_anchor=(1.01, 1), fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4.9 MultiScaleRoIAlign: every box from its own level
#
# `MultiScaleRoIAlign` puts the pieces together. From the maps' sizes and the image size it
# infers each level's `spatial_scale` (`2 ** round(log2(map height / image height))`, so 1/4
# for P2), maps every box to its level, runs `roi_align` (sampling_ratio 2, aligned=False) per
# level, and returns the outputs in the boxes' order. Mask R-CNN uses one with a 7x7 output
# for the box head and one with 14x14 for the mask head, both on P2 ... P5 (keys "0" ... "3";
# "pool", P6, is ignored). The pooler has no defaults of its own: in the model these settings are
# `MaskRCNNConfig`'s `roi_featmap_names`, `box_roi_output_size` (7), `mask_roi_output_size` (14)
# and `roi_sampling_ratio` (2), from which `RoIHeads.from_config` builds both poolers.

# %%
pooler = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
scales = [infer_scale(p_maps[k].shape[-2], image_size[0]) for k in pooler.featmap_names]
start = time.perf_counter()
box_features = pooler(p_maps, [boxes], [image_size]).data  # (9, 256, 7, 7)
elapsed = time.perf_counter() - start
mask_pooler = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
mask_features = mask_pooler(p_maps, [boxes], [image_size]).data  # (9, 256, 14, 14)
# the same thing by hand: each box alone, from its level's map with that level's scale
by_hand = np.concatenate([roi_align(p_maps[str(k - 2)], [b[None]], 7, scales[k - 2], sampling_ratio=2).data
                          for b, k in zip(boxes, box_levels, strict=True)])
print("scales:", scales)
print(f"box head input {box_features.shape} in {1000 * elapsed:.0f} ms")
print("mask head input", mask_features.shape)
print("equal to roi_align on each box's level:", np.array_equal(box_features, by_hand))

# %% [markdown]
# Each box (cyan) on its own level, with the box's size in that level's pixels (the map drawn
# is the root mean square over the 256 channels), and the 7x7 it is pooled to (the same
# statistic). Whatever the box's size, it covers a similar number of pixels of its own level,
# and the output is 7x7. With random weights the P maps are blurry and their patterns are not
# about faces or flags.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, len(named), figsize=(15, 4.4))
for i, ((name, b), k) in enumerate(zip(named.items(), box_levels, strict=True)):
    level_map = np.sqrt((p_maps[str(k - 2)][0] ** 2).mean(axis=0))  # (C, h, w) -> (h, w)
    s = 2**k
    fb = np.array(b) / s  # box in feature coordinates
    pad = max(fb[2] - fb[0], fb[3] - fb[1]) * 0.25 + 1
    x_lo, x_hi = max(fb[0] - pad, -0.5), min(fb[2] + pad, level_map.shape[1] - 0.5)
    y_lo, y_hi = max(fb[1] - pad, -0.5), min(fb[3] + pad, level_map.shape[0] - 0.5)
    shown = level_map[int(y_lo + 0.5) : int(y_hi + 0.5), int(x_lo + 0.5) : int(x_hi + 0.5)]  # colour scale of the crop
    ax = axes[0, i]
    ax.imshow(level_map, cmap="magma", vmin=shown.min(), vmax=shown.max())
    outline(ax, *fb, edgecolor="cyan", lw=2)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_hi, y_lo)
    ax.set_title(f"{name}: P{k}\n{fb[2] - fb[0]:.1f} x {fb[3] - fb[1]:.1f} pixels", fontsize=9)
    axes[1, i].imshow(np.sqrt((box_features[i] ** 2).mean(axis=0)), cmap="magma")
    axes[1, i].set_title("7x7", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4.10 Check against torchvision
#
# The same maps and boxes through torchvision's `roi_align` (both `aligned` settings, fixed
# and adaptive sampling), `roi_pool` and `MultiScaleRoIAlign`. The error is
# `max |ours - torchvision| / max |torchvision|`, in float32.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    import torchvision

    def relative_error(ours, theirs):
        theirs = theirs.numpy()
        return float(np.abs(ours - theirs).max() / np.abs(theirs).max())

    all_boxes = np.concatenate([boxes, shifted[::8]])  # (R, 4): named boxes and shifted faces
    c3_t, boxes_t = torch.from_numpy(c3), [torch.from_numpy(all_boxes)]
    errors = {}
    for flag in (False, True):
        for ratio in (2, -1):
            ours = roi_align(c3, [all_boxes], 7, scale, ratio, aligned=flag).data
            theirs = torchvision.ops.roi_align(c3_t, boxes_t, 7, scale, ratio, aligned=flag)
            errors[f"roi_align (aligned={flag}, sampling_ratio={ratio})"] = relative_error(ours, theirs)
    errors["roi_pool"] = relative_error(roi_pool(c3, [all_boxes], 7, scale).data,
                                        torchvision.ops.roi_pool(c3_t, boxes_t, 7, scale))
    for size in (7, 14):
        reference = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], size, sampling_ratio=2)
        theirs = reference({k: torch.from_numpy(v) for k, v in p_maps.items()}, [torch.from_numpy(boxes)],
                           [image_size])
        ours = MultiScaleRoIAlign(["0", "1", "2", "3"], size, sampling_ratio=2)(p_maps, [boxes], [image_size]).data
        errors[f"MultiScaleRoIAlign ({size}x{size})"] = relative_error(ours, theirs)
    for name, error in errors.items():
        print(f"{name:<45} relative error {error:.1e}")
    assert max(errors.values()) < 1e-5, errors

# %% [markdown]
# The library follows torchvision's kernel operation for operation (in float32 the Numba
# kernel gives the same bits on CPU), so the errors are 0 or at the level of float32
# rounding. `tests/reference/test_roi_align.py` repeats these checks in float32 and float64,
# for the gradients too, on boxes of every kind: tiny, partly and wholly outside the map.

# %% [markdown]
# ## Summary
#
# - RoIPool rounds the box to feature pixels and cuts bins with whole-pixel edges (`floor` and
#   `ceil`). Over 400 random boxes per level, its corners are off by up to `stride / 2` and its
#   bin centres by about a stride (on P5, 15.9 and 31.9 image pixels), while RoIAlign's bin
#   centres are exact to 1e-4 px. RoIPool's output is also a step function of the box: 65
#   shifts of 1/4 pixel give only 5 distinct outputs.
# - Bilinear interpolation is separable: a point's four weights are the outer product of
#   `[hy, ly]` and `[hx, lx]`. A point within one pixel outside the map is clamped to the edge,
#   and one farther out reads 0.
# - Each bin averages a `g_h x g_w` grid of points at the centres of equal sub-cells. Mask R-CNN
#   uses `sampling_ratio=2` (4 points per bin); `sampling_ratio <= 0` adapts the grid to the box,
#   `ceil(roi_h / 7)` points per axis.
# - For one box, RoIAlign is two small matrix products, `W_y @ f[c] @ W_x.T / (g_h * g_w)`, with
#   `W_y` of shape `(7, H)` whose rows sum to `g_h`. This is the library's specification, and
#   the Numba kernel computes the same sums point by point.
# - `aligned=False`, torchvision's Mask R-CNN setting and the library's, reads half a feature
#   pixel down and to the right of the pixel model (4 image pixels on C3, 16 on P5);
#   `aligned=True` subtracts that half pixel.
# - A box goes to level `floor(4 + log2(sqrt(wh) / 224) + 1e-6)`, clamped to 2 ... 5: below 112
#   pixels P2, 112 to 224 P3, 224 to 448 P4, and above that P5. P6 serves only the RPN.
# - `MultiScaleRoIAlign` infers the scales 1/4 ... 1/32 from the map sizes and returns
#   `(R, 256, 7, 7)` for the box head and `(R, 256, 14, 14)` for the mask head, in the boxes'
#   order.
# - `roi_align` (both `aligned` settings, fixed and adaptive sampling), `roi_pool` and both
#   poolers agree with torchvision with a relative error of 0.0 in float32.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/04_roi_align/`. `mrcnn-np check 04` grades it against `mrcnn_np`
# and torchvision; `mrcnn-np check 04 --hint` reveals the hints one at a time. The tasks:
#
# 1. `bilinear_interpolate`: one point of a map, bilinearly interpolated with torchvision's edge
#    rules.
# 2. `roi_align`: a `ph x pw` grid of averaged sample points per box.
# 3. `roi_align_backward`: the gradient of `roi_align` with respect to the features, checked
#    against torch autograd and central differences in float64.
# 4. `map_levels`: the FPN level of each box.
#
# Further questions:
#
# - The backward pass scatters each output's gradient onto the pixels that the output read.
#   Write it for one box with the matrices `W_y` and `W_x`. Where do two boxes' gradients
#   collide?
# - A box 150 pixels wide is read from P3 with `sampling_ratio=2`. How many feature pixels does
#   one of its 7 bins span, and how many of them get no weight?
# - A model trained with `aligned=False` is run with `aligned=True`. In which direction, and by
#   how much on each level, do its inputs move? What would you expect to happen to its masks?
