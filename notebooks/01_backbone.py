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
# # 1. The backbone: ResNet and the Feature Pyramid Network
#
# Mask R-CNN first turns the image into feature maps, once; the RPN and, through RoIAlign, the
# box and mask heads look at the image only through those maps. The backbone has two parts:
#
# - a **ResNet-50** body, the *bottom-up* pathway: four stages of bottleneck blocks whose
#   outputs C2, C3, C4, C5 have strides 4, 8, 16, 32 and 256 to 2048 channels;
# - a **Feature Pyramid Network** (FPN), the *top-down* pathway with lateral connections:
#   P2 ... P5 at the same strides plus P6 at stride 64, all with 256 channels.
#
# This chapter computes everything with the library and explains it: convolution as
# im2col + matrix product, the bottleneck block and the ResNet-50 stages, the FPN, the
# feature maps of a photograph, and a number-for-number check against torchvision.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/nn/conv.py` | `torch.nn.functional.conv2d` |
# | `mrcnn_np/model/backbone.py` | `torchvision/models/resnet.py`, `models/detection/backbone_utils.py` |
# | `mrcnn_np/model/fpn.py` | `torchvision/ops/feature_pyramid_network.py` |

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cbook, patches

import mrcnn_np
from mrcnn_np.kernels import winograd
from mrcnn_np.model.backbone import RESNET_LAYERS, ResNet, resnet_fpn_backbone
from mrcnn_np.model.fpn import FeaturePyramidNetwork
from mrcnn_np.nn import functional as F
from mrcnn_np.nn.conv import im2col
from mrcnn_np.reference import import_torch

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1.1 Convolution is one matrix product
#
# A convolution with weight `(C_out, C_in, kh, kw)` computes, at every output position, the
# dot product of the weight with the `C_in x kh x kw` patch of input under it (its
# *receptive field*). `im2col` copies every receptive field into one column; the whole
# convolution is then a single matrix product, which BLAS computes fast. This is how
# `mrcnn_np.nn.functional.conv2d` is written.
#
# A tiny example: one 5x5 channel, a 3x3 kernel, stride 1, no padding. The output is 3x3,
# so there are 9 receptive fields and 9 columns of 9 values each.

# %%
x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)  # (N, C, H, W)
cols = im2col(x, kernel_size=3)  # (N, C*kh*kw, Ho*Wo) = (1, 9, 9)
print(cols.shape)
print(cols[0].astype(int))

# %% [markdown]
# Column `k` belongs to output position `(k // Wo, k % Wo)`; row `i*kw + j` holds kernel tap
# `(i, j)` (with several channels, row `c*kh*kw + i*kw + j`). Three receptive fields and their
# columns, in matching colours:

# %% tags=["hide-input"]
fields = {(0, 0): "tab:red", (1, 2): "tab:blue", (2, 1): "tab:green"}  # output (row, col) -> colour
Ho = Wo = 3
fig, (ax_in, ax_cols) = plt.subplots(1, 2, figsize=(11, 4.6), width_ratios=[5, 9])
for ax, values in ((ax_in, x[0, 0]), (ax_cols, cols[0])):
    ax.imshow(values, cmap="Greys", vmin=0, vmax=70)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=9)
for n, ((r, c), colour) in enumerate(fields.items()):
    inset = 0.08 * n  # so that overlapping outlines stay visible
    ax_in.add_patch(patches.Rectangle((c - 0.5 + inset, r - 0.5 + inset), 3 - 2 * inset, 3 - 2 * inset,
                                      fill=False, edgecolor=colour, lw=2.5))
    ax_cols.add_patch(patches.Rectangle((r * Wo + c - 0.45, -0.45), 0.9, 8.9, fill=False, edgecolor=colour, lw=2.5))
ax_in.set_title("input x (5x5), three 3x3 receptive fields")
ax_in.set_xticks(range(5))
ax_in.set_yticks(range(5))
ax_cols.set_title("im2col(x): one column per output position")
ax_cols.set_xticks(range(9), [f"({k // Wo},{k % Wo})" for k in range(9)])
ax_cols.set_yticks(range(9), [f"tap ({i // 3},{i % 3})" for i in range(9)])
ax_cols.set_xlabel("output position (row, col)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The weight, reshaped to `(C_out, C_in*kh*kw)`, has its rows in the same order, so
# `weight.reshape(C_out, -1) @ im2col(x)` is the convolution. A less trivial case: two images,
# 3 input channels, 4 output channels, stride 2 and padding 1.

# %%
x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)  # (N, C_in, H, W)
weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # (C_out, C_in, kh, kw)
cols = im2col(x, kernel_size=3, stride=2, padding=1)  # (2, 3*3*3, 5*4)
by_matmul = weight.reshape(4, -1) @ cols  # (4, 27) @ (2, 27, 20) -> (2, 4, 20)
by_matmul = by_matmul.reshape(2, 4, 5, 4)  # (N, C_out, Ho*Wo) -> (N, C_out, Ho, Wo)
by_conv = F.conv2d(x, weight, stride=2, padding=1).data  # (2, 4, 5, 4)
print("cols", cols.shape, "output", by_conv.shape)
print("identical:", np.array_equal(by_matmul, by_conv))

# %% [markdown]
# The column matrix repeats each input value up to `kh*kw` times (9x for a 3x3 kernel):
# im2col trades memory for one large, fast product. A 1x1 convolution with stride 1 needs no
# unfolding at all: it is a matrix product over channels. Two of the three convolutions of a
# bottleneck block are 1x1.

# %% [markdown]
# A 3x3 convolution with stride 1 can also be done with fewer multiplications. Winograd's
# F(2x2, 3x3) (Lavin & Gray, 2016) computes a 2x2 block of outputs from the 4x4 input patch `d`
# under it as `A^T [(G g G^T) * (B^T d B)] A`, with `*` elementwise and fixed matrices of 0, ±1
# and ±1/2: 16 multiplications instead of 4 x 9 = 36. Summed over input channels, the 16
# elementwise products become 16 matrix products over channels, so the whole convolution does 4/9
# of im2col's arithmetic. On one patch:

# %%
d = rng.standard_normal((4, 4))  # one input patch: the receptive fields of a 2x2 output block
g = rng.standard_normal((3, 3))  # one filter
direct = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
transformed = (winograd.G @ g @ winograd.G.T) * (winograd.B_T @ d @ winograd.B_T.T)  # (4, 4): 16 products
by_winograd = winograd.A_T @ transformed @ winograd.A_T.T  # (2, 2)
print("direct: 36 multiplications, Winograd: 16; the same 2x2 outputs:", np.allclose(by_winograd, direct))

# %% [markdown]
# mrcnn_np's CPU inference (inside `no_grad`) runs the 3x3 stride-1 convolutions of 32 or more
# channels this way (`mrcnn_np/kernels/winograd.py`); the additions in the transforms round
# differently from im2col, by about as much as the order of a dot product does. Training keeps
# the im2col products.

# %% [markdown]
# ## 1.2 The bottleneck block
#
# ResNet-50 and ResNet-101 are stacks of *bottleneck* blocks:
#
# - `conv1`: 1x1, reduces the channels to `planes`;
# - `conv2`: 3x3 with the block's stride, the only spatial convolution;
# - `conv3`: 1x1, expands to `4 * planes` channels;
# - each conv is followed by a norm, the first two also by a ReLU;
# - the block's input is added to the result (the *shortcut*) and a ReLU follows the sum.
#
# When a block changes the shape (the first block of each stage), the shortcut is a
# `downsample`: a 1x1 conv with the block's stride, then a norm. Otherwise it is the identity.
# Like torchvision, mrcnn_np puts the stride on the 3x3 conv ("ResNet v1.5"); the original
# paper put it on the first 1x1 conv, which skips three quarters of the input positions.
#
# The first block of stage 2 (`layer2.0`), as the library builds it:

# %%
body = ResNet(RESNET_LAYERS["resnet50"], rng=0)  # ResNet-50, random weights
block = body.layer2[0]
print(block)


# %% tags=["hide-input"]
# the bottleneck diagram; box() and arrow() also draw the FPN diagram below
def conv_label(name, conv):
    """'conv2 3x3, stride 2' and '128 -> 128' from the conv's weight (C_out, C_in, kh, kw)."""
    c_out, c_in, kh, kw = conv.weight.shape
    stride = f", stride {conv.stride}" if conv.stride != 1 else ""
    return f"{name} {kh}x{kw}{stride}", f"{c_in} -> {c_out}"


def box(ax, xy, text, colour, width=3.4, height=0.62):
    ax.add_patch(patches.FancyBboxPatch((xy[0] - width / 2, xy[1] - height / 2), width, height,
                                        boxstyle="round,pad=0.05", facecolor=colour, edgecolor="black"))
    ax.text(*xy, text, ha="center", va="center", fontsize=9.5)


def arrow(ax, start, end, text="", side="left"):
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.3})
    if text:
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        dx = -0.12 if side == "left" else 0.12
        ax.text(mid[0] + dx, mid[1], text, ha="right" if side == "left" else "left", va="center",
                fontsize=8.5, color="dimgray")


c_in = block.conv1.weight.shape[1]
planes = block.conv2.weight.shape[0]
c_out = block.conv3.weight.shape[0]
s = block.conv2.stride
fig, ax = plt.subplots(figsize=(8, 6.6))
main = [
    (5.6, "input x", "white"),
    (4.6, "{}\n{}, bn1, ReLU".format(*conv_label("conv1", block.conv1)), "#cfe2f3"),
    (3.6, "{}\n{}, bn2, ReLU".format(*conv_label("conv2", block.conv2)), "#f9cb9c"),
    (2.6, "{}\n{}, bn3".format(*conv_label("conv3", block.conv3)), "#cfe2f3"),
]
shapes = [f"({c_in}, H, W)", f"({planes}, H, W)", f"({planes}, H/{s}, W/{s})", f"({c_out}, H/{s}, W/{s})"]
for y, text, colour in main:
    box(ax, (2, y), text, colour)
for (y0, _, _), (y1, _, _), shape in zip(main, main[1:], shapes, strict=False):
    arrow(ax, (2, y0 - 0.33), (2, y1 + 0.33), shape)
arrow(ax, (2, 2.27), (2, 1.78), shapes[-1])
ax.add_patch(patches.Circle((2, 1.6), 0.17, facecolor="white", edgecolor="black"))
ax.text(2, 1.6, "+", ha="center", va="center", fontsize=14)
box(ax, (2, 0.8), "ReLU", "#d9ead3", width=1.6)
arrow(ax, (2, 1.43), (2, 1.13))
arrow(ax, (2, 0.47), (2, 0.1), f"output ({c_out}, H/{s}, W/{s})")
down = block.downsample[0]
box(ax, (5.6, 3.6), "{}\n{}, norm".format(*conv_label("downsample.0", down)), "#ead1dc", width=3.3)
ax.annotate("", xy=(5.6, 3.95), xytext=(3.72, 5.6),
            arrowprops={"arrowstyle": "->", "lw": 1.3, "connectionstyle": "angle,angleA=0,angleB=90"})
ax.annotate("", xy=(2.19, 1.6), xytext=(5.6, 3.27),
            arrowprops={"arrowstyle": "->", "lw": 1.3, "connectionstyle": "angle,angleA=-90,angleB=0"})
ax.text(5.7, 2.3, "shortcut: the identity when the\nshape does not change", fontsize=8.5, color="dimgray")
ax.set_xlim(-0.5, 7.8)
ax.set_ylim(-0.1, 6.1)
ax.axis("off")
ax.set_title(f"Bottleneck layer2.0: planes = {planes}, stride {s} on the 3x3 conv")
plt.show()

# %% [markdown]
# The whole body: a stem (7x7 conv with stride 2, norm, ReLU, 3x3 max-pool with stride 2,
# together stride 4) and four stages of 3, 4, 6, 3 blocks (ResNet-101: 3, 4, 23, 3). Running a
# 224x224 input through the library's ResNet-50 gives each stage's output and stride:

# %%
x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)  # (N, 3, H, W)
with mrcnn_np.no_grad():
    features = body(x)  # [C2, C3, C4, C5]
print("output  stage   blocks  planes               shape  stride      params")
for i, feature in enumerate(features):
    stage = getattr(body, f"layer{i + 1}")
    planes = stage[0].conv2.weight.shape[0]
    shape, stride = str(feature.shape), 224 // feature.shape[-1]
    n_params = sum(p.size for p in stage.parameters())
    print(f"C{i + 2}      layer{i + 1}  {len(stage):>6}  {planes:>6}  {shape:>18}"
          f"  {stride:>6}  {n_params:>10,}")

# %% [markdown]
# Every stage after the first halves the resolution (stride 2 in its first block) and doubles
# `planes`; the output channels are `4 * planes`. A block's parameters grow 4x from one stage to
# the next while its number of positions drops 4x, so every block costs about the same
# computation, but the two coarsest stages hold almost all the parameters.
#
# Every norm is a `FrozenBatchNorm2d`: `y = x * scale + shift` with
# `scale = weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`, and all
# four arrays fixed buffers (eps = 1e-5). Detection trains on a few large images per batch,
# too few for reliable batch statistics, so when it fine-tunes ImageNet weights torchvision
# freezes their statistics (its `maskrcnn_resnet50_fpn` switches to ordinary batch norm only
# when training from scratch).

# %% [markdown]
# ## 1.3 The Feature Pyramid Network
#
# The fine maps (C2, C3) are spatially precise but computed by few layers; the coarse maps
# (C4, C5) are deep but have strides 16 and 32. The FPN gives every level deep features and
# the same 256 channels:
#
# - **lateral**: a 1x1 conv (`inner_blocks[i]`) projects `C_i` to 256 channels;
# - **top-down**: the running sum from the level above is upsampled with *nearest-neighbour*
#   interpolation to the lateral's exact size and added to it;
# - **output**: a 3x3 conv (`layer_blocks[i]`) on each sum gives `P_i`;
# - **P6**: max-pool with kernel 1 and stride 2 of P5, i.e. every other pixel of P5.
#
# Note that what is upsampled is the 256-channel sum, not C5 itself (C5 has 2048 channels).

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(9, 6))
widths = [1.6, 1.25, 1.0, 0.85]  # drawn sizes of levels 2..5
ys = [0.6, 2.0, 3.4, 4.8]
channels = body.out_channels  # [256, 512, 1024, 2048]
radius = {2: 0.17, 3: 0.17, 4: 0.17, 5: 0.06}  # "+" nodes; the top level has only its lateral
for level, (w, y, c) in enumerate(zip(widths, ys, channels, strict=True), start=2):
    box(ax, (1.0, y), f"C{level}\n{c} ch, /{2**level}", "#cfe2f3", width=w, height=0.7)
    if level < 5:
        ax.add_patch(patches.Circle((3.6, y), 0.17, facecolor="white", edgecolor="black"))
        ax.text(3.6, y, "+", ha="center", va="center", fontsize=13)
    else:
        ax.add_patch(patches.Circle((3.6, y), 0.06, facecolor="black"))
    box(ax, (6.2, y), f"P{level}\n256 ch, /{2**level}", "#d9ead3", width=w, height=0.7)
    arrow(ax, (1.0 + w / 2 + 0.08, y), (3.6 - radius[level], y))
    ax.text(2.4, y + 0.12, "1x1 conv", ha="center", fontsize=8.5, color="dimgray")
    arrow(ax, (3.6 + radius[level], y), (6.2 - w / 2 - 0.08, y))
    ax.text(4.85, y + 0.12, "3x3 conv", ha="center", fontsize=8.5, color="dimgray")
    if level < 5:
        arrow(ax, (3.6, ys[level - 1] - radius[level + 1]), (3.6, y + 0.17))
        ax.text(3.7, (y + ys[level - 1]) / 2, "nearest\nupsample", fontsize=8.5, color="dimgray", va="center")
    if level > 2:
        arrow(ax, (1.0, ys[level - 3] + 0.37), (1.0, y - 0.37))
box(ax, (6.2, 6.0), "P6\n256 ch, /64", "#d9ead3", width=0.8, height=0.7)
arrow(ax, (6.2, 5.17), (6.2, 5.63))
ax.text(6.35, 5.4, "max-pool k1 s2", fontsize=8.5, color="dimgray", va="center")
ax.text(1.0, 6.0, "bottom-up\n(ResNet)", ha="center", fontsize=10)
ax.text(3.6, 6.0, "top-down\n(inner sums)", ha="center", fontsize=10)
ax.set_xlim(-0.2, 7.6)
ax.set_ylim(0, 6.6)
ax.axis("off")
ax.set_title("FPN: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs\n(/s: stride s)")
plt.show()

# %% [markdown]
# The library's code path is short enough to read whole:

# %%
print(inspect.getsource(FeaturePyramidNetwork.forward))

# %% [markdown]
# `last_inner` is the running top-down sum: it starts as the lateral of C5, and at each finer
# level the lateral of `C_i` is added to `last_inner` resized to the lateral's size. `results`
# collects the 3x3 outputs, finest first, and P6 is appended at the end. The output is the
# dict `{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}` with torchvision's keys.
#
# Nearest-neighbour resizing to an exact size: doubling copies every value into a 2x2 block; any
# other size takes source index `floor(dst * in / out)`, torch's legacy rule.

# %%
m = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)  # (N, C, 2, 3)
print(F.interpolate(m, size=(4, 6), mode="nearest").data[0, 0])
print(F.interpolate(m, size=(3, 5), mode="nearest").data[0, 0])

# %% [markdown]
# The transform of the full model pads images to a multiple of 32, so every level is exactly half
# the one below. Other sizes still work because the resize targets the lateral's exact size: a
# small configuration of the same code (1 block per stage, width 8) on a 100x108 image:

# %%
small = resnet_fpn_backbone(layers=(1, 1, 1, 1), width=8, rng=0)
x = rng.standard_normal((1, 3, 100, 108)).astype(np.float32)  # (N, 3, H, W)
with mrcnn_np.no_grad():
    c_small = small.body(x)  # [C2, C3, C4, C5]
    p_small = small.fpn(c_small)  # {"0": P2, ..., "pool": P6}
print("C:", [f.shape[2:] for f in c_small])
print("P:", [f.shape[2:] for f in p_small.values()])

# %% [markdown]
# **Who reads which level.** The RPN head, one set of weights shared by all levels, runs on
# *every* level P2 ... P6, with anchors of size 32 on P2 up to 512 on P6 (3 aspect ratios, so 3
# anchors per position). Some tutorials say the RPN sees only the finest level, or that it uses 9
# anchors (3 sizes x 3 ratios) per position; neither is what torchvision's FPN model does. RoIAlign
# then reads each proposal from one of P2 ... P5 chosen by its size; P6 serves the RPN only.

# %% [markdown]
# ## 1.4 The feature maps of a photograph
#
# The photograph is normalised with the ImageNet mean and standard deviation (the statistics the
# backbone's pretrained weights expect) and cropped from 600 to 576 rows, so that both sides are
# multiples of 32. (The full model's transform resizes and pads instead.)

# %%
path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
image = plt.imread(path)  # (600, 512, 3) uint8
image = image[:576]  # (576, 512, 3): both sides multiples of 32
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
normalised = (image.astype(np.float32) / 255 - mean) / std  # (H, W, 3)
x = normalised.transpose(2, 0, 1)[None]  # (H, W, 3) -> (1, 3, H, W)
print(x.shape, x.dtype)

# %% [markdown]
# `resnet_fpn_backbone("resnet50")` builds the body and the FPN as torchvision does, with
# `trainable_layers=3` (the stem and `layer1` stay frozen during training). The weights are
# random (torchvision's initialisation, float32); calling `backbone.body` then `backbone.fpn`
# is what `backbone(x)` does, keeping the C maps for the figure.

# %%
backbone = resnet_fpn_backbone("resnet50", rng=0)
n_trainable = sum(p.size for p in backbone.parameters() if p.requires_grad)
n_total = sum(p.size for p in backbone.parameters())
print(f"parameters: {n_total:,}, trainable: {n_trainable:,}")
start = time.perf_counter()
with mrcnn_np.no_grad():
    c_maps = backbone.body(x)  # [C2, C3, C4, C5]
    p_maps = backbone.fpn(c_maps)  # {"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}
print(f"forward: {time.perf_counter() - start:.1f} s")
maps = {f"C{i + 2}": f.data for i, f in enumerate(c_maps)}
maps |= {f"P{i + 2}": f.data for i, f in enumerate(p_maps.values())}
for name, f in maps.items():
    stride = x.shape[-1] // f.shape[-1]
    rms = np.sqrt((f**2).mean())  # root mean square
    print(f"{name}: {str(f.shape):>19}  stride {stride:>2}  rms {rms:5.1f}")

# %% [markdown]
# Each map below is the root mean square over channels at every position, drawn over the
# image's extent, so the pixel size shows the stride. With random weights the maps respond to
# local contrast, edges and colour, not to meaning; later chapters load a trained checkpoint,
# whose deep levels respond to object parts and categories instead.

# %%
H, W = image.shape[:2]
fig, axes = plt.subplots(2, 5, figsize=(12, 5.8))
axes[0, 0].imshow(image)
axes[0, 0].set_title(f"image {H}x{W}")
for ax, (name, f) in zip([*axes[0, 1:], *axes[1]], maps.items(), strict=True):
    energy = np.sqrt((f[0] ** 2).mean(axis=0))  # (C, h, w) -> (h, w)
    ax.imshow(energy, cmap="magma", extent=(0, W, H, 0))
    ax.set_title(f"{name}: {f.shape[1]} x {f.shape[2]} x {f.shape[3]}", fontsize=11)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# C2 and C3 still trace the photograph's edges and colour regions, more coarsely at each stride.
# P2 ... P5 instead all look like enlarged copies of the coarse levels. That too is the random
# weights: with identity norms the activations grow through the residual stages (the rms
# printed above rises from C2 to C5 by well over an order of magnitude), the FPN's random
# convs keep those magnitudes, and so the top-down sum swamps the fine laterals. Trained weights
# balance the levels.
#
# Single channels show both effects: the first six channels of C2 respond to edges and colour
# contrasts (some are nearly silent after the ReLU); those of P2 show the blocks of the
# nearest-neighbour upsampling from the coarse levels.

# %%
fig, axes = plt.subplots(2, 6, figsize=(12, 4.8))
for row, name in enumerate(("C2", "P2")):
    for channel, ax in enumerate(axes[row]):
        ax.imshow(maps[name][0, channel], cmap="gray")
        ax.set_title(f"{name} channel {channel}", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 1.5 Check against torchvision
#
# The parameter names are torchvision's state-dict keys, so torchvision's backbone loads into
# ours without a renaming table (`backbone` keeps its module structure and receives
# torchvision's random weights). Both run on the same image; the error of each level is
# `max |ours - torchvision| / max |torchvision|`.

# %%
torch = import_torch()  # None, with how to install it, without the reference extra

# %%
if torch is not None:
    from torchvision.models.detection import backbone_utils

    from mrcnn_np.convert import load_torchvision_state_dict

    torch.manual_seed(0)
    reference = backbone_utils.resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, trainable_layers=3
    ).eval()
    print(load_torchvision_state_dict(backbone, reference))
    with mrcnn_np.no_grad():
        c_ours = backbone.body(x)  # [C2, C3, C4, C5]
        p_ours = backbone.fpn(c_ours)  # {"0": P2, ..., "pool": P6}
    with torch.no_grad():
        c_theirs = reference.body(torch.from_numpy(x))  # {"0": C2, ..., "3": C5}
        p_theirs = reference.fpn(c_theirs)  # {"0": P2, ..., "pool": P6}
    pairs = {f"C{i + 2}": (c_ours[i], c_theirs[str(i)]) for i in range(4)}
    pairs |= {f"P{i + 2}": (p_ours[k], p_theirs[k]) for i, k in enumerate(p_theirs)}
    # {"C2": (ours, theirs), ..., "P6": (ours, theirs)}
    errors = {}
    for name, (ours, theirs) in pairs.items():
        expected = theirs.numpy()
        errors[name] = np.abs(ours.data - expected).max() / np.abs(expected).max()
        print(f"{name}: {str(expected.shape):>19}  relative error {errors[name]:.1e}")
    assert max(errors.values()) < 1e-4, errors

# %% [markdown]
# In float32 the levels agree to about 1e-6 relative: the two implementations differ only in the
# order of floating-point additions inside the matrix products. `tests/reference/` repeats this
# check in float64.

# %% [markdown]
# ## Summary
#
# - A convolution is one matrix product: `weight.reshape(C_out, -1) @ im2col(x)`. A 3x3 kernel on
#   a 5x5 map unfolds into 9 columns of 9 values, and for 2 images, 3 -> 4 channels, stride 2 and
#   padding 1 the product gives `conv2d`'s `(2, 4, 5, 4)` output exactly. The columns repeat
#   every input value up to `kh * kw` times; a 1x1 convolution with stride 1 needs no unfolding.
#   Winograd's F(2x2, 3x3) computes a 3x3 stride-1 convolution with 16 multiplications per 2x2
#   outputs instead of 36; CPU inference uses it.
# - A bottleneck block is 1x1 (reduce to `planes`), 3x3 (the block's stride, "ResNet v1.5" as in
#   torchvision), 1x1 (expand to `4 * planes`), each followed by a frozen batch norm, plus a
#   shortcut (a strided 1x1 conv and a norm when the shape changes) and a ReLU after the sum.
# - ResNet-50 is a stem of stride 4 and stages of 3, 4, 6 and 3 blocks. On a 224x224 input, C2 ...
#   C5 are `(256, 56, 56)`, `(512, 28, 28)`, `(1024, 14, 14)` and `(2048, 7, 7)`, at strides 4 to
#   32, and `layer3` and `layer4` hold 22.0 million of the four stages' 23.4 million parameters.
# - `FrozenBatchNorm2d` is `x * scale + shift` computed from four fixed buffers (eps 1e-5):
#   detection batches are too small for batch statistics.
# - The FPN adds a 1x1 lateral of each `C_i` to the 256-channel running sum from above, upsampled
#   (nearest neighbour) to the lateral's exact size, and smooths it with a 3x3 conv. P6 is P5
#   max-pooled with kernel 1 and stride 2. The output is `{"0": P2, ..., "3": P5, "pool": P6}`.
# - On the 576x512 photograph the pyramid runs from P2 `(1, 256, 144, 128)` to P6 `(1, 256, 9, 8)`,
#   and the ResNet-50-FPN has 26,799,296 parameters (26,576,896 trainable with
#   `trainable_layers=3`). With random weights and identity norms the rms grows from 0.9 on C2 to
#   52.0 on C5, and the top-down sum swamps the fine laterals.
# - The RPN reads every level P2 ... P6, with 3 anchors per position; RoIAlign reads P2 ... P5.
# - Torchvision's backbone loads into ours with no renaming (no missing or unexpected keys), and
#   every level agrees with it to about 2e-6 relative in float32.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/01_backbone/`. `mrcnn-np check 01` grades your functions against
# `mrcnn_np` and, when it is installed, torch; `mrcnn-np check 01 --hint` reveals the hints of the
# first failing task one at a time. The tasks:
#
# 1. `im2col`: unfold every receptive field of `(N, C, H, W)` into a column.
# 2. `conv2d_forward`: the convolution as im2col and one matrix product, with stride and padding.
# 3. `conv2d_backward`: `d_x`, `d_weight` and `d_bias` of the convolution, also judged by central
#    differences in float64.
# 4. `bottleneck_forward`: a ResNet bottleneck block with frozen batch norms and its shortcut.
#
# Further questions:
#
# - For a 3x3 convolution with stride 1 on a P2 of 256 channels and 200 x 272 positions (a COCO-size
#   image, chapter 2), how many bytes does the float32 im2col matrix take? How could a convolution
#   avoid building it whole?
# - The original ResNet put the stride on the first 1x1 conv of a block. Which input positions
#   does such a block never read, and why does the 3x3 conv not have that problem?
# - What would you set the frozen norms' statistics to so that every level of the random
#   network keeps an rms near 1? (Chapter 6, section 6.3, takes up the question.)
