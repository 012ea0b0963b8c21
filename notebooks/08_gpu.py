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
# # 8. On the GPU
#
# Everything so far ran on the CPU, in NumPy arrays. A GPU has its own processor and its own
# memory. Arrays that live there are CuPy arrays, and each operation on them starts a
# *kernel*: a function that thousands of GPU threads run at once. The same model runs there
# with no change to its code, because every stage asks its input arrays which array module
# they belong to. This chapter covers what changes:
#
# - **arrays on a device**: `model.to("cuda")`, where data crosses between host and device
#   (and where it may not);
# - **syncs**: the moments when the host must wait for the device, why `bool(x.any())` is one,
#   and how many a prediction of the trained shapes model makes, line by line;
# - **the RoIAlign kernel, thread by thread**: which output element each GPU thread computes,
#   run and checked against chapter 4's NumPy specification, and one thread's arithmetic
#   beside the specification's matrices;
# - **NMS as a bitmask**: how a greedy, sequential algorithm is split into a parallel part
#   on the device and a short walk on the host;
# - **what runs where** in one training step, and how the GPU's speed will be measured.
#
# | Code | Torchvision counterpart |
# |---|---|
# | `mrcnn_np/backend.py` (`get_array_module`, `to_device`, `KernelTable`) | `torch.Tensor.to`, torch's dispatcher |
# | `mrcnn_np/kernels/device.py` (`Launcher`) | the launch code of torchvision's `.cu` files |
# | `mrcnn_np/kernels/roi_align.py` (`_forward_gpu`) | `torchvision/csrc/ops/cuda/roi_align_kernel.cu` |
# | `mrcnn_np/kernels/nms.py` (`_overlap_mask`, `_walk_masks`) | `torchvision/csrc/ops/cuda/nms_kernel.cu` |
# | `tests/fake_cupy.py`, `tests/fake_kernels.py` | (the test suite's stand-ins; no counterpart) |
#
# **Two modes.** With CuPy installed and an NVIDIA GPU present, the chapter runs on the GPU.
# Without them, as when the book is built and in CI, it runs on the CPU. The kernels, written
# with numba.cuda, then run in numba's *CUDA simulator*, which executes every GPU thread as
# Python on the CPU. The arrays are the **test suite's stand-in for CuPy**, `tests/fake_cupy.py`:
# NumPy arrays dressed as CuPy arrays. It refuses what CuPy refuses (an implicit copy to the
# host, a NumPy array mixed with a device array) and counts every sync. The first cell chooses
# the mode and prints it. The simulator must be chosen before numba is first imported, and
# `mrcnn_np` imports numba only when a kernel is first used, so the cell checks that numba is
# not loaded yet.

# %%
import contextlib
import inspect
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import mrcnn_np
from mrcnn_np.backend import cupy_available

chapter_start = time.perf_counter()
print("numba imported yet:", "numba" in sys.modules)
ON_GPU = cupy_available()  # real CuPy, and a CUDA device it can use
if not ON_GPU:
    assert "numba" not in sys.modules, "numba is loaded already, too late to choose the simulator: restart the kernel"
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # read by numba.cuda when numba is first imported
REPO = Path(mrcnn_np.__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository root, where tests/ (the stand-ins) lives

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches
from numba import cuda

from mrcnn_np import Tensor
from mrcnn_np.backend import cuda_simulator_enabled, default_impl, get_array_module, to_numpy
from mrcnn_np.checks import trusted
from mrcnn_np.convert import load_model, save_model
from mrcnn_np.data.shapes import shapes_dataset
from mrcnn_np.demo import DemoSettings
from mrcnn_np.kernels import nms as nms_kernels
from mrcnn_np.kernels import roi_align as roi_align_kernels
from mrcnn_np.kernels.device import THREADS, Launcher, blocks_for
from mrcnn_np.kernels.order import score_order
from mrcnn_np.ops.nms import nms, nms_numpy
from mrcnn_np.ops.roi_align import axis_matrix, convert_boxes_to_roi_format, roi_align, roi_align_numpy, sampling_plan
from mrcnn_np.pretrained import shapes_model
from mrcnn_np.train import TrainRecipe, make_optimizer, train_step
from mrcnn_np.viz import draw_instances
from tests import fake_cupy, fake_kernels

if ON_GPU:
    import cupy as cp

    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    mode = f"GPU: CuPy {cp.__version__} on {name.decode() if isinstance(name, bytes) else name}"
    gpu_path = contextlib.nullcontext  # the model's GPU path is the real one
else:
    cp = fake_cupy.install()  # from here on, `import cupy` finds the stand-in
    mode = "CPU: the CuPy stand-in of the test suite (tests/fake_cupy.py) and numba's CUDA simulator"
    gpu_path = fake_kernels.installed  # device arrays take the stand-in CUDA kernels (see section 8.2)
print("this chapter runs on", mode)
print(f"numba.cuda: simulator {cuda_simulator_enabled()}, a CUDA target available {cuda.is_available()}")
assert ON_GPU != cuda_simulator_enabled(), "with a GPU, unset NUMBA_ENABLE_CUDASIM; without one, it must be 1"
assert cuda.is_available()

# %% [markdown]
# ## 8.1 Arrays on a device
#
# A CuPy array looks like a NumPy array: it has a shape and a dtype, supports the same
# operators, and `cupy` has most of `numpy`'s functions. Its data, though, is in GPU memory,
# and each operation on it runs on the GPU. `mrcnn_np` never imports either module to do
# arithmetic on an array it was given. It asks the array instead:
# `xp = get_array_module(x)` is `cupy` for a device array and `numpy` otherwise, and the code
# goes on with `xp.maximum`, `xp.zeros` and so on. A model lives on one device. `model.to("cuda")`
# moves its parameters and buffers there, `model.to("cpu")` moves them back, and `model.device`
# says where they are.

# %%
model = shapes_model()  # the trained shapes model of chapter 7, on the host
name, weight = next(iter(model.named_parameters()))
print(f"before: model.device = {model.device!r}; {name}: {type(weight.data).__module__}.{type(weight.data).__name__}")
model.to("cuda")
name, weight = next(iter(model.named_parameters()))
print(f"after:  model.device = {model.device!r}; {name}: {type(weight.data).__module__}.{type(weight.data).__name__}")
print("get_array_module of that weight:", get_array_module(weight.data).__name__)
assert model.device == "cuda" and get_array_module(weight.data) is cp


def standardise(x):
    """Written once, for either module: the array says which one it belongs to."""
    xp = get_array_module(x)
    return (x - x.mean()) / xp.maximum(x.std(), 1e-12)


host = np.linspace(0, 1, 5)
for x in (host, cp.asarray(host)):
    y = standardise(x)
    print(f"standardise({type(x).__module__}.ndarray) -> {type(y).__module__}.ndarray")

# %% [markdown]
# **Nothing is converted to the host implicitly.** CuPy refuses `np.asarray` of a device
# array and refuses to mix a device array with a host array in one operation. Either would
# be a hidden copy between two memories, and the refusal makes every such copy explicit. A
# device `Tensor` refuses `np.asarray` the same way. The explicit ways to the host are
# `x.get()`, `cupy.asnumpy(x)`, `Tensor.numpy()` and the library's `to_numpy(x)`; the way to the
# device is `cupy.asarray(x)`.

# %%
d = cp.asarray(np.arange(6.0))
attempts = {"np.asarray(device array)": lambda: np.asarray(d),
            "device array + host array": lambda: d + np.ones(6),
            "np.asarray(device Tensor)": lambda: np.asarray(Tensor(d))}
for what, attempt in attempts.items():
    try:
        attempt()
    except TypeError as error:
        print(f"{what:<26} TypeError: {error}")
    else:
        raise AssertionError(f"{what} was allowed")
print(f"{'to_numpy(device array)':<26} {type(to_numpy(d)).__module__}.ndarray {to_numpy(d)}")

# %% [markdown]
# **The transfer points.** Host data meets the device in four named places, and nowhere else:
#
# | Where | Direction | Code |
# |---|---|---|
# | the model's input: images (and training targets) | host to device | `GeneralizedRCNNTransform.__call__(..., device=)`, `model/transform.py` |
# | the model's output: boxes, labels, scores, masks | device to host | `postprocess(..., to_host=True)`, `model/transform.py` |
# | checkpoints and weight files | device to host, and back on loading | `convert.save_safetensors`, `train(resume=)` |
# | evaluation: pycocotools reads host arrays | device to host | `evaluate.py` |
#
# So `predict` takes host images and returns host NumPy arrays on either device. Here the
# model on the device predicts two held-out shapes images, and the host model predicts the
# same images, with its norms kept as separate layers as on the device (on the host, inference
# otherwise folds each norm into the conv before it, which rounds differently). In CPU mode the device is the stand-in, and the prediction runs the GPU path
# with stand-in kernels (section 8.2), which must give the host's result to the bit. On a
# real GPU the kernels round differently, so the check there is that the confident
# detections agree to a fraction of a pixel.

# %%
from mrcnn_np.nn.fused import fusion

held_out = shapes_dataset(2, seed=1, **DemoSettings().data())  # chapter 7's held-out images
images = [held_out[i][0] for i in range(2)]
host_model = shapes_model()
with fusion(False):  # on the host, inference folds each norm into its conv (mrcnn_np.nn.fused); the GPU path does not
    host_out = host_model(images)
with gpu_path():
    device_out = model(images)
print("types of the outputs:", {k: f"{type(v).__module__}.{type(v).__name__}" for k, v in device_out[0].items()})
assert all(type(v) is np.ndarray for out in device_out for v in out.values())
for i, (a, b) in enumerate(zip(host_out, device_out, strict=True)):
    if ON_GPU:
        sure_a, sure_b = a["scores"] > 0.5, b["scores"] > 0.5
        assert np.array_equal(a["labels"][sure_a], b["labels"][sure_b])
        difference = np.abs(a["boxes"][sure_a] - b["boxes"][sure_b]).max(initial=0)
        print(f"image {i}: {sure_b.sum()} confident detections; largest box difference {difference:.1e} pixels")
        assert difference < 0.5
    else:
        same = all(np.array_equal(a[k], b[k]) for k in a)
        print(f"image {i}: {len(b['boxes'])} detections, equal to the host's bit for bit: {same}")
        assert same and a.keys() == b.keys()

# %% [markdown]
# The outputs are ordinary NumPy arrays, so they go straight to matplotlib:

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(7, 4))
for ax, image, out in zip(axes, images, device_out, strict=True):
    draw_instances(ax, image, out, model.classes, title="predicted on the device\n(score >= 0.5)")
fig.tight_layout()
plt.show()

# %% [markdown]
# A checkpoint holds host arrays, so it does not matter where a model was trained. A model
# saved from the device loads on the host (or on another machine's GPU):

# %%
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "model.safetensors"
    save_model(model, path)  # the device model's weights, copied to the host and written
    reloaded = load_model(path)
state, state_reloaded = model.state_dict(), reloaded.state_dict()
same = state.keys() == state_reloaded.keys() and all(np.array_equal(to_numpy(state[k]), state_reloaded[k]) for k in state)
print(f"saved from {model.device!r}, loaded on {reloaded.device!r}: the same {len(state)} arrays: {same}")
assert same

# %% [markdown]
# ## 8.2 Syncs
#
# The host (the CPU running Python) and the device work **asynchronously**. A CuPy operation
# does not wait for its result: it puts a kernel in a queue (a CUDA *stream*) and returns at
# once, with an array whose data will exist when the kernel has run. Python can go on queuing
# work while the GPU catches up, which is how a GPU is kept busy by a slow interpreter.
#
# A **sync** happens when the host needs a *value* of device data. The host then waits until
# every kernel queued before has finished, and copies the value across. The copy is a few
# bytes, but the wait is the cost. The queue drains, the GPU idles until Python sends more
# work, and Python waits for the GPU meanwhile. Even with an empty queue a round trip takes
# microseconds, and a sync behind long kernels waits for all of them. Syncs are easy to write
# by accident:
#
# - `bool(x.any())`: `x.any()` is computed on the device and returns a 0-d *device* array; `if`
#   needs a Python `bool`, so the host waits for it;
# - `int(n)`, `float(x)`, `x.item()`, `x.tolist()`, printing an array: the same, a value is read;
# - `x[mask]` with a boolean device mask: the result has as many elements as the mask has
#   `True` values, a number only the device knows, and CuPy must read it before it can allocate
#   the result;
# - `xp.nonzero(mask)`, `xp.unique(x)`: the same, the result's size depends on the data.
#
# Arithmetic, reductions whose result stays on the device (`x.sum()`), indexing with integer
# arrays, and `len(x)` or `x.shape` (a shape is kept on the host) cost none. The stand-in counts
# each case:

# %%
with fake_cupy.installed() as fake:
    x = fake.asarray(np.linspace(-1, 1, 8))
    idx = fake.asarray(np.array([0, 3, 5]))
    cases = {  # what runs -> syncs expected
        "y = 2 * x + 1": (lambda: 2 * x + 1, 0),
        "s = x.sum()   (a 0-d device array)": (lambda: x.sum(), 0),
        "x[idx]        (device integer indices)": (lambda: x[idx], 0),
        "len(x), x.shape": (lambda: (len(x), x.shape), 0),
        "bool((x > 0).any())": (lambda: bool((x > 0).any()), 1),
        "int((x > 0).sum())": (lambda: int((x > 0).sum()), 1),
        "float(x.max())": (lambda: float(x.max()), 1),
        "x[x > 0]      (a boolean mask)": (lambda: x[x > 0], 1),
        "xp.nonzero(x > 0)": (lambda: fake.nonzero(x > 0), 1),
        "x.get()       (an explicit copy)": (lambda: x.get(), 1),
    }
    for what, (run, expected) in cases.items():
        with fake_cupy.counting() as c:
            run()
        print(f"{what:<42} syncs: {c.syncs}")
        assert c.syncs == expected, what

# %% [markdown]
# ### The syncs of one prediction, line by line
#
# Where does a prediction of the shapes model sync? Two tools from the test suite answer it
# without a GPU. The stand-in runs the model on "device" arrays. `tests/fake_kernels.py`
# replaces each op's numba.cuda kernel by its numba CPU kernel, run on the stand-in arrays'
# data, and adds the syncs the real CUDA wrapper makes (NMS copies its bitmask to the host,
# section 8.4; RoIAlign and box IoU make none). Without it, device arrays would take the NumPy
# reference of every kernel, whose per-box loops would swamp the count. Together they are the
# model's GPU path, sync for sync, and their results equal the host run bit for bit (the
# numba CPU kernels are the host's).
#
# To see *where* the syncs are, we wrap the stand-in's counters. Each time the sync count
# goes up, a small hook walks up the call stack to the innermost line of `mrcnn_np` that asked
# for it. The hook skips the helpers that perform the read for their caller (`to_numpy`,
# `Tensor.item`, the checks), so the line it keeps is the one that wanted the value.

# %%
LIBRARY = REPO / "mrcnn_np"
HELPERS = {"backend.py", "autograd.py", "checks.py"}  # they read values for their callers
sites = Counter()  # "file:line  source" -> syncs


def asking_line() -> str:
    """The innermost line of mrcnn_np on the call stack, helpers skipped."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if path.is_relative_to(LIBRARY) and path.name not in HELPERS:
            return f"{path.relative_to(LIBRARY)}:{frame.lineno}  {frame.line}"
    return "(outside mrcnn_np)"


class SiteCounts(fake_cupy.Counts):
    """The stand-in's counters, also noting where each sync was asked for."""

    def __setattr__(self, name, value):
        if name == "syncs" and self is fake_cupy.counts and value > self.syncs:
            sites[asking_line()] += value - self.syncs
        super().__setattr__(name, value)


@contextlib.contextmanager
def gpu_path_with_sites():
    """The model's GPU path under the stand-in (arrays and kernels), with `sites` filled in."""
    with fake_cupy.installed() as fake, fake_kernels.installed():
        saved, fake_cupy.counts = fake_cupy.counts, SiteCounts()
        sites.clear()
        try:
            yield fake
        finally:
            fake_cupy.counts = saved


with gpu_path_with_sites():
    counted_model = shapes_model().to("cuda")
    with fake_cupy.counting() as first:
        counted_model(images)
    sites.clear()
    with fake_cupy.counting() as second:
        counted_out = counted_model(images)
    predict_sites = Counter(sites)
print(f"predict of {len(images)} images of {images[0].shape[0]} x {images[0].shape[1]}:")
print(f"  first call:  {first.syncs} syncs, {first.to_device} copies to the device, {first.to_host} to the host")
print(f"  second call: {second.syncs} syncs, {second.to_device} copies to the device, {second.to_host} to the host")
same = all(np.array_equal(a[k], b[k]) for a, b in zip(host_out, counted_out, strict=True) for k in a)
print("  equal to the host's prediction bit for bit:", same)
assert same and first.syncs == second.syncs == sum(predict_sites.values())

# %% [markdown]
# The first call copies more to the device than the second: constants such as the anchors
# and the sampling taps are built once per image shape and then cached on the device. The
# syncs are the same in both calls. Drawn by the line that asked for them:

# %% tags=["hide-input"]
labels, values = zip(*sorted(predict_sites.items(), key=lambda kv: kv[1]), strict=True)
fig, ax = plt.subplots(figsize=(12, 0.34 * len(labels) + 1.2))
ax.barh(range(len(labels)), values, color="tab:blue")
ax.set_yticks(range(len(labels)), [label if len(label) < 95 else label[:92] + "..." for label in labels],
              fontsize=8.5, family="monospace")
for k, v in enumerate(values):
    ax.text(v + 0.1, k, str(v), va="center", fontsize=9)
ax.set_xlabel("syncs in one predict call")
ax.set_title(f"The {second.syncs} syncs of one predict call ({len(images)} images), by the line that asks",
             fontsize=11, loc="right")
fig.tight_layout()
plt.show()

# %% [markdown]
# The lines are of a few kinds:
#
# - **filters**, whose result has a size only the device knows: `nonzero` to split the RoIs by
#   pyramid level, the boxes above a score threshold, the boxes that are not too small;
# - **NMS**, which copies its bitmask to the host for the walk (section 8.4);
# - **sizes read back** to allocate or loop with, such as the sampling plan's grid size;
# - **the output transfer point**, which copies each result array to the host.
#
# None of them is inside a per-box or per-pixel loop. They come once per image, per pyramid
# level or per call, not once per box. That is what DESIGN.md asks ("keep them out of inner
# loops"), and `tests/unit/test_device_model.py` holds the model to a budget of syncs per
# call. A sync removed from the library shows up here as a shorter chart.
#
# **The `trusted()` rule.** Every public op checks its arguments' *values*: no NaN, no box with
# `x2 < x1`, batch indices in range. On a GPU each such check is a `bool(bad.any())`, so one
# sync per check. Inside the model these checks would test the model's own intermediate
# results, whose sources (images, targets, weights) were checked at the edge. So `predict`
# and `loss` run their stages inside `mrcnn_np.checks.trusted()`. There the checks of *types
# and shapes* still run, since they cost nothing (a shape is on the host), and the checks of
# *values* are skipped. Called from outside, an op checks everything:

# %%
rng = np.random.default_rng(0)
corners = rng.uniform(0, 100, (50, 2))
with gpu_path_with_sites() as fake:
    boxes_d = fake.asarray(np.concatenate([corners, corners + 30], axis=1).astype(np.float32))  # (50, 4)
    scores_d = fake.asarray(rng.uniform(0, 1, 50).astype(np.float32))
    features_d = fake.asarray(rng.standard_normal((1, 4, 32, 32)).astype(np.float32))  # (N, C, H, W)
    calls = {"nms(boxes, scores, 0.5)": lambda: nms(boxes_d, scores_d, 0.5),
             "roi_align(features, [boxes], 7, 1/4, 2)": lambda: roi_align(features_d, [boxes_d], 7, 0.25, 2)}
    print(f"{'':<42} {'checked':>8} {'trusted()':>10}")
    for what, call in calls.items():
        with fake_cupy.counting() as checked:
            call()
        with trusted(), fake_cupy.counting() as inside:
            call()
        print(f"{what:<42} {checked.syncs:>8} {inside.syncs:>10}")
        assert inside.syncs < checked.syncs

# %% [markdown]
# What is left inside `trusted()` is the op's own work: the NMS bitmask copy, and the
# sampling plan's reads of its grid size.

# %% [markdown]
# ## 8.3 The RoIAlign kernel, thread by thread
#
# A numba.cuda kernel is a Python function that **one GPU thread** runs. A launch
# `kernel[blocks, threads](...)` starts a grid of `blocks` blocks of `threads` threads each (here
# `THREADS` = 128, four warps of 32 threads that execute in lockstep). Each thread finds its
# own number with `i = cuda.grid(1)`, which is `blockIdx.x * blockDim.x + threadIdx.x`, and
# works out from it what to compute. The RoIAlign forward kernel gives **one thread to each
# output element** `out[r, c, p, q]` (box `r`, channel `c`, bin row `p`, bin column `q`). It
# numbers them in the output's memory order, NCHW, with `q` varying fastest, which is also
# torchvision's CUDA mapping. The thread decodes `(r, c, p, q)` from `i`, reads the sample
# points of its bin with bilinear interpolation, and writes their mean. No two threads write
# the same element, so they need no coordination. (The backward kernel is the reverse: each
# thread scatters its gradient onto the pixels it read, and there threads do collide, since
# boxes overlap and neighbouring bins share pixels. It adds with `cuda.atomic.add`.)
#
# The kernel's input is the same `SamplingPlan` that chapter 4's NumPy specification uses.
# For every box, bin and sample point along each axis, the plan gives the two pixels read
# (`low`, `high`) and their weights (`w_low`, `w_high`; called `hy`/`ly` and `hx`/`lx` in the
# kernel, after torchvision). The kernel, as written in `mrcnn_np/kernels/roi_align.py`:

# %%
source = inspect.getsource(roi_align_kernels)
start = source.index("@cuda.jit(cache=True)\ndef _forward_gpu")
print(source[start : source.index("\n\n\n", start)])

# %% [markdown]
# A small example to follow every thread: a feature map of 2 channels and 10 x 12 pixels,
# 3 boxes given in feature pixels (`spatial_scale` 1), 3 x 3 bins, 2 x 2 sample points per
# bin (`sampling_ratio=2`). That is 3 x 2 x 3 x 3 = 54 output elements, so 54 threads: one
# block of 128, whose last 74 threads find `i >= R * C * PH * PW` and return.

# %%
H, W, PH, PW = 10, 12, 3, 3
yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
features = np.stack([np.sin(xx / 2) + np.cos(yy / 3), xx * yy / 60 - 1])[None]  # (N, C, H, W) = (1, 2, 10, 12)
boxes = np.array([[1.3, 0.6, 6.1, 4.4], [5.2, 3.1, 10.6, 8.7], [0.4, 5.5, 4.9, 9.2]], dtype=np.float32)  # (R, 4)
rois = convert_boxes_to_roi_format([boxes], np.float32)  # (R, 5): batch index, x1, y1, x2, y2
plan = sampling_plan(rois, 1.0, (PH, PW), 2, False, H, W, np.float32)
R, C = len(boxes), features.shape[1]
n_out = R * C * PH * PW
print(f"output (R, C, PH, PW) = {(R, C, PH, PW)}: {n_out} threads in {blocks_for(n_out)} block(s) of {THREADS}")

kernel_out = roi_align_kernels.roi_align_cuda(features, plan, (PH, PW))  # the launch: simulator or GPU
spec_out = roi_align_numpy(features, plan, (PH, PW))  # chapter 4's specification
public_out = roi_align(features, [boxes], (PH, PW), 1.0, 2, impl="cuda").data  # the op, impl="cuda"
difference = float(np.abs(kernel_out - spec_out).max())
print(f"kernel vs specification: largest difference {difference:.1e} (values up to {np.abs(spec_out).max():.2f})")
assert difference < 1e-5 and np.array_equal(public_out, kernel_out)

# %% [markdown]
# The difference is float32 rounding. The kernel adds the 16 weighted reads of a bin one by
# one, while the specification multiplies matrices, which sums the same terms in another order.
#
# Each thread's output element, on the map: every bin of channel 0 carries the number of the
# thread that computes it (the thread of the same bin in channel 1 is 9 further on). The dots
# are the bin's 2 x 2 sample points. Right: the same numbers laid out as the output array,
# `i = ((r * C + c) * PH + p) * PW + q`. Consecutive threads, which run together in a warp,
# take the neighbouring bins of one box in one channel. Their reads lie in a small window of
# one channel plane, so they share cache lines. Thread 33 is highlighted; the next cells
# follow its arithmetic.

# %%
chosen = 33  # a thread to follow
q, p, c, r = chosen % PW, (chosen // PW) % PH, (chosen // (PW * PH)) % C, chosen // (PW * PH * C)  # the kernel's decoding
print(f"thread {chosen}: q = {chosen} % {PW} = {q}, p = ({chosen} // {PW}) % {PH} = {p}, "
      f"c = ({chosen} // {PW * PH}) % {C} = {c}, r = {chosen} // {PW * PH * C} = {r}")


def sample_positions(taps, r):
    """(bins, G) positions of box r's sample points along one axis (chapter 4)."""
    return taps.low[r] + taps.w_high[r]


# %% tags=["hide-input"]
box_colours = ("tab:orange", "tab:cyan", "tab:pink")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.9), width_ratios=[1.15, 1])
ax1.imshow(features[0, 0], cmap="gray", extent=(-0.5, W - 0.5, H - 0.5, -0.5))
for k in range(R):
    x1, y1, x2, y2 = boxes[k]
    for t in np.linspace(0, 1, PW + 1):
        ax1.plot([x1 + t * (x2 - x1)] * 2, [y1, y2], color=box_colours[k], lw=1.5 if t in (0, 1) else 0.8)
    for t in np.linspace(0, 1, PH + 1):
        ax1.plot([x1, x2], [y1 + t * (y2 - y1)] * 2, color=box_colours[k], lw=1.5 if t in (0, 1) else 0.8)
    ys, xs = sample_positions(plan.y, k), sample_positions(plan.x, k)  # (PH, 2), (PW, 2)
    for pp in range(PH):
        for qq in range(PW):
            gy, gx = np.meshgrid(ys[pp], xs[qq], indexing="ij")
            ax1.plot(gx.ravel(), gy.ravel(), ".", color=box_colours[k], ms=4)
            thread = ((k * C + 0) * PH + pp) * PW + qq
            mark = (k, pp, qq) == (r, p, q)
            ax1.text(x1 + (qq + 0.5) * (x2 - x1) / PW, y1 + (pp + 0.5) * (y2 - y1) / PH, str(thread), ha="center",
                     va="center", fontsize=8, color="black",
                     bbox={"facecolor": "yellow" if mark else "white", "alpha": 0.85, "pad": 1, "edgecolor": "none"})
ax1.set_title(f"channel 0: thread numbers, bins and sample points\n(channel 1: the same bins, threads "
              f"+ {PH * PW}; yellow: the bin of threads {chosen - c * PH * PW} and {chosen})", fontsize=10)
ax1.set_xlabel("feature column")
ax1.set_ylabel("feature row")
table = np.arange(n_out).reshape(R * C, PH * PW)  # row (r, c), column (p, q): NCHW order
for row in range(R * C):
    for col in range(PH * PW):
        k, ch = divmod(row, C)
        ax2.add_patch(patches.Rectangle((col, row), 1, 1, color=box_colours[k], alpha=0.9 if ch == 0 else 0.45))
        ax2.text(col + 0.5, row + 0.5, str(table[row, col]), ha="center", va="center", fontsize=9,
                 fontweight="bold" if table[row, col] == chosen else "normal")
ax2.add_patch(patches.Rectangle((p * PW + q, r * C + c), 1, 1, fill=False, edgecolor="black", lw=2.5))
ax2.set_xlim(0, PH * PW)
ax2.set_ylim(R * C, 0)
ax2.set_xticks(np.arange(PH * PW) + 0.5, [f"{pp},{qq}" for pp in range(PH) for qq in range(PW)])
ax2.set_yticks(np.arange(R * C) + 0.5, [f"r={k}, c={ch}" for k in range(R) for ch in range(C)])
ax2.set_xlabel("bin (p, q)")
ax2.set_title(f"thread i -> out[r, c, p, q] (q fastest); threads {n_out}..{THREADS - 1} return at once",
              fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### One thread's arithmetic, and the specification's matrices
#
# Thread 33 runs the kernel's two loops over its bin's 2 x 2 sample points. For each point it
# reads the four pixels around it and weights each by the product of its row and column
# weights. Below is that computation in plain Python, step by step, with the plan's numbers.
# It should reproduce the kernel's `out[r, c, p, q]`: exactly in the simulator, which computes
# in NumPy float32 scalars in the same order, and to the last bit or so on a GPU, whose
# compiler may fuse a multiply and an add into one rounding.

# %%
y, x = plan.y, plan.x
b, f = plan.batch[r], features
acc = np.float32(0)
print(f"thread {chosen}: box {r}, channel {c}, bin ({p}, {q}); count = {plan.count[r]:g} points")
print(" iy ix | y0 y1    hy     ly  | x0 x1    hx     lx  |    w1     w2     w3     w4  |   read  |    acc")
for iy in range(y.low.shape[2]):
    y0, y1, hy, ly = y.low[r, p, iy], y.high[r, p, iy], y.w_low[r, p, iy], y.w_high[r, p, iy]
    for ix in range(x.low.shape[2]):
        x0, x1, hx, lx = x.low[r, q, ix], x.high[r, q, ix], x.w_low[r, q, ix], x.w_high[r, q, ix]
        read = hy * hx * f[b, c, y0, x0] + hy * lx * f[b, c, y0, x1] + ly * hx * f[b, c, y1, x0] \
            + ly * lx * f[b, c, y1, x1]  # the kernel's expression, term for term
        acc += read
        print(f" {iy:>2} {ix:>2} | {y0:>2} {y1:>2} {hy:6.3f} {ly:6.3f} | {x0:>2} {x1:>2} {hx:6.3f} {lx:6.3f} | "
              f"{hy * hx:6.3f} {hy * lx:6.3f} {ly * hx:6.3f} {ly * lx:6.3f} | {read:7.4f} | {acc:7.4f}")
by_hand = acc / plan.count[r]
print(f"acc / count = {by_hand:.7f}; the kernel wrote {kernel_out[r, c, p, q]:.7f}; "
      f"difference {abs(by_hand - kernel_out[r, c, p, q]):.1e}")
assert abs(by_hand - kernel_out[r, c, p, q]) <= 1e-6

# %% [markdown]
# The specification computes the same number differently. For box `r` it builds two
# interpolation matrices from the same plan: `W_y` (PH x H), whose row `p` holds the summed row
# weights of bin row `p`'s sample points, and `W_x` (PW x W). The whole 3 x 3 output of one
# channel is then `W_y @ features[b, c] @ W_x.T / count`. Entry `(p, q)` is
# `W_y[p] @ features[b, c] @ W_x[q] / count`, and the weight that thread 33 puts on pixel
# `(row, column)` is `W_y[p, row] * W_x[q, column]`, the outer product of the two rows. Below,
# the thread's 16 taps are added up pixel by pixel and compared with that outer product.

# %%
Wy, Wx = axis_matrix(y, r, H), axis_matrix(x, r, W)  # (PH, H), (PW, W)
taps = np.zeros((H, W), dtype=np.float64)  # thread 33's weight on every pixel, from its 16 taps
for iy in range(y.low.shape[2]):
    for ix in range(x.low.shape[2]):
        for row, wr in ((y.low[r, p, iy], y.w_low[r, p, iy]), (y.high[r, p, iy], y.w_high[r, p, iy])):
            for col, wc in ((x.low[r, q, ix], x.w_low[r, q, ix]), (x.high[r, q, ix], x.w_high[r, q, ix])):
                taps[row, col] += float(wr) * float(wc)
outer = np.outer(Wy[p], Wx[q])  # (H, W)
rows, cols = np.flatnonzero(Wy[p]), np.flatnonzero(Wx[q])
print(f"W_y[{p}] is non-zero on rows {rows.tolist()}:    {np.round(Wy[p, rows].astype(float), 4).tolist()}")
print(f"W_x[{q}] is non-zero on columns {cols.tolist()}: {np.round(Wx[q, cols].astype(float), 4).tolist()}")
print(f"thread {chosen}'s taps == outer(W_y[{p}], W_x[{q}]): largest difference {np.abs(taps - outer).max():.1e}")
from_matrices = Wy[p] @ features[b, c] @ Wx[q] / plan.count[r]
print(f"W_y[{p}] @ features[{b}, {c}] @ W_x[{q}] / count = {from_matrices:.7f}; the specification's whole box: "
      f"{np.abs(Wy @ features[b, c] @ Wx.T / plan.count[r] - spec_out[r, c]).max():.1e} from roi_align_numpy")
print(f"the taps cover {np.count_nonzero(taps)} pixels; their weights add up to {taps.sum():.4f}, "
      f"the point count {plan.count[r]:g}")
assert np.abs(taps - outer).max() < 1e-6 and abs(from_matrices - by_hand) < 1e-5
assert abs(taps.sum() - plan.count[r]) < 1e-5

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
im = ax.imshow(np.where(taps > 0, taps, np.nan), cmap="viridis", extent=(-0.5, W - 0.5, H - 0.5, -0.5))
ax.imshow(features[0, c], cmap="gray", alpha=0.25, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
x1, y1, x2, y2 = boxes[r]
ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=box_colours[r], lw=1.5))
bx, by = x1 + q * (x2 - x1) / PW, y1 + p * (y2 - y1) / PH
ax.add_patch(patches.Rectangle((bx, by), (x2 - x1) / PW, (y2 - y1) / PH, fill=False, edgecolor="yellow", lw=2))
gy, gx = np.meshgrid(sample_positions(y, r)[p], sample_positions(x, r)[q], indexing="ij")
ax.plot(gx.ravel(), gy.ravel(), "o", color="red", ms=5)
for (row, col), w in np.ndenumerate(taps):
    if w > 0:
        ax.text(col, row, f"{w:.2f}", ha="center", va="center", fontsize=7, color="white")
fig.colorbar(im, ax=ax, fraction=0.04, label="weight = W_y[p, row] * W_x[q, column]")
ax.set_title(f"thread {chosen}: the pixels it reads and their weights\n(yellow: its bin; red: its 4 sample points)",
             fontsize=10)
ax.set_xlabel("feature column")
ax.set_ylabel("feature row")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each sample point spreads a weight of 1 over the four pixels around it, nearer pixels getting
# more. The sixteen taps land on fewer than sixteen pixels, because neighbouring sample points
# share pixels. Their weights add up to the number of points, and dividing by it makes the
# output an average.
# The specification gets the same weights by matrix products over all bins at once. The
# thread gets them one point at a time, for its single bin, so no two threads depend on each
# other.

# %% [markdown]
# ## 8.4 NMS as a bitmask
#
# Greedy NMS (chapter 3) visits boxes from the highest score down and keeps a box unless a
# box *already kept* overlaps it with IoU above the threshold. Whether box `j` is kept depends
# on the decisions for all the boxes before it, so the algorithm is sequential. The GPU
# version, the bitmask scheme of torchvision's CUDA kernel, splits it in two:
#
# 1. **On the device, in parallel:** for every pair of boxes `i < j` (in score order), does `i`
#    overlap `j` enough to suppress it? That is one bit per pair. The boxes are cut into
#    blocks of 64, because a `uint64` word holds 64 bits. The launch is a 2-D grid of blocks
#    `(row, col)` of 64 threads each. Thread `t` of block `(row, col)` takes box
#    `i = row * 64 + t` and compares it with the 64 boxes of block `col`, setting bit `k` of
#    the word `mask[i, col]` when `IoU(i, col * 64 + k) > threshold`. Only later boxes count:
#    on the diagonal block a thread starts at `k = t + 1`, and blocks left of the diagonal
#    return at once (an earlier box is never suppressed by a later one).
# 2. **On the host, in sequence:** copy the mask over (one sync) and walk the boxes once, keeping
#    a running bit set `removed` (one word per block) of the bits set by the boxes kept so far. Box `i` is kept if its
#    bit in `removed` is clear, and then its mask words are OR-ed into `removed`.
#
# The quadratic work, n²/2 IoUs, is done in one launch. Within a block all 64 threads read the
# same box `j` at each step, a broadcast from the cache, while each holds its own box `i` in
# registers. What remains sequential is a walk linear in n, over bits.
#
# Twenty boxes, four noisy detections of each of five objects, with random scores. Twenty
# boxes fit in one block, so the mask has one word per box, of which the first 20 bits are
# used:

# %%
rng = np.random.default_rng(15)
centres = np.array([[20, 18], [52, 22], [66, 30], [28, 48], [80, 54]], dtype=np.float64)  # five objects
sizes = np.array([[22, 18], [20, 24], [18, 18], [26, 20], [16, 22]], dtype=np.float64)
jitter = rng.normal(0, 2, (5, 4, 4))  # (objects, detections, xyxy)
det_boxes = np.concatenate([centres[:, None] - sizes[:, None] / 2, centres[:, None] + sizes[:, None] / 2], axis=2)
det_boxes = (det_boxes + jitter).reshape(20, 4).astype(np.float32)  # (20, 4) xyxy
det_scores = rng.uniform(0.3, 1.0, 20).astype(np.float32)
threshold = 0.5

order = score_order(det_scores)  # box indices by decreasing score: "rank" below is the position in it
n = len(order)
blocks = -(-n // nms_kernels.BLOCK)  # ceil(n / 64)
run = Launcher(det_boxes)  # as nms_cuda does: host arrays here, CuPy arrays on a GPU
mask = run.empty((n, blocks), np.uint64)
run.launch(nms_kernels._overlap_mask, (blocks, blocks), nms_kernels.BLOCK, run.input(det_boxes[order]),
           det_boxes.dtype.type(0), np.float64(threshold), mask)
mask = run.to_host(mask)  # (n, blocks) uint64; the one copy to the host (a sync on a GPU)
print(f"{n} boxes: {blocks} x {blocks} block(s) of {nms_kernels.BLOCK} threads; mask {mask.shape} {mask.dtype}")
bits = ((mask[:, :1] >> np.arange(n, dtype=np.uint64)) & np.uint64(1)).astype(bool)  # (n, n): bit k of word i
for i in range(4):
    print(f"rank {i:>2} (box {order[i]:>2}): mask word {int(mask[i, 0]):#07x} -> bits {np.flatnonzero(bits[i]).tolist()}")

# %% [markdown]
# The host walk, one line per box in score order. The running word `removed` is printed with
# bit `k` at position `k`, so a `1` under a column means that rank is already suppressed:

# %%
removed = np.zeros(blocks, dtype=np.uint64)
kept = []
print("rank box score  decision    removed (bit 0 ... 19)")
for i in range(n):
    word, bit = removed[i // 64], np.uint64(i % 64)
    if (word >> bit) & np.uint64(1):
        decision = "suppressed"
    else:
        decision = "kept"
        kept.append(i)
        removed[i // 64 :] |= mask[i, i // 64 :]  # the bits of the boxes it suppresses
    print(f"{i:>4} {order[i]:>3} {det_scores[order[i]]:.2f}  {decision:<10}  "
          + "".join("1" if (int(removed[0]) >> k) & 1 else "." for k in range(n)))
kept = np.array(kept)
walked = order[kept]
reference = nms_numpy(det_boxes, det_scores, threshold)
print("kept ranks:", kept.tolist(), "-> boxes", walked.tolist())
print("nms_numpy keeps:     ", reference.tolist())
dropped = [i for i in range(n) if i not in kept]
late = [(i, int(k)) for i in dropped for k in np.flatnonzero(bits[i]) if k in kept]
print("a suppressed rank whose bit points at a rank that was kept all the same:", late)
assert np.array_equal(kept, nms_kernels._walk_masks(mask))  # the library's compiled walk
assert np.array_equal(walked, reference) and np.array_equal(nms(det_boxes, det_scores, threshold, impl="cuda"), reference)

# %% tags=["hide-input"]
kept_set = set(walked.tolist())
rank_of = {int(box): i for i, box in enumerate(order)}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.6), width_ratios=[1.2, 1])
for box in range(n):
    x1, y1, x2, y2 = det_boxes[box]
    colour = f"C{box // 4}"
    is_kept = box in kept_set
    ax1.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                    lw=2.2 if is_kept else 1, ls="-" if is_kept else "--"))
    ax1.text(x1 + 0.5, y1 + 0.5, str(rank_of[box]), color=colour, fontsize=8, va="top",
             fontweight="bold" if is_kept else "normal")
ax1.set_xlim(0, 100)
ax1.set_ylim(72, 0)
ax1.set_aspect("equal")
ax1.set_title("20 detections of 5 objects, labelled by score rank\n(solid: kept, dashed: suppressed)", fontsize=10)
shown = np.where(np.triu(np.ones((n, n), dtype=bool), 1), bits.astype(float), np.nan)  # the computed half only
ax2.imshow(shown, cmap="Greys", vmin=0, vmax=1.3)
ax2.imshow(np.where(np.tril(np.ones((n, n), dtype=bool)), 1.0, np.nan), cmap="Blues", vmin=0, vmax=5, alpha=0.5)
for i in range(n):
    if i in kept:
        ax2.add_patch(patches.Rectangle((-0.5, i - 0.5), n, 1, fill=False, edgecolor="tab:green", lw=1.2))
ax2.set_xticks(range(n))
ax2.set_yticks(range(n), [f"{i} {'keep' if i in kept else 'drop'}" for i in range(n)])
for i, tick in enumerate(ax2.get_yticklabels()):
    tick.set_color("tab:green" if i in kept else "tab:red")
ax2.tick_params(labelsize=7)
ax2.set_xlabel("bit k: box of rank k")
ax2.set_ylabel("word mask[i, 0]: thread i")
ax2.set_title("the bitmask (black: IoU > 0.5); blue: bits never computed\n"
              "green rows: kept boxes, whose words the walk OR-s in", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Row `i` of the matrix is what thread `i` computed. The walk reads only the rows of kept
# boxes (green). Each suppressed box is a column with a black bit in a green row: a kept box
# with a higher score overlaps it. A black bit in a red row, the row of a suppressed box,
# changes nothing, because the walk never ORs that row in. The last line printed above the
# figure lists such bits, which point at boxes that were kept all the same. Ignoring them is
# what makes the walk greedy NMS, rather than "drop every box that overlaps a better one".
#
# **More than 64 boxes.** With 150 boxes there are three blocks of 64 per axis. Below, the
# launch grid: blocks left of the diagonal return at once, diagonal blocks compare each box
# with the later boxes of its own block, and the others compare all 64 pairs. The walk ORs
# the words from a box's own block onwards. The kernel and the library's walk keep what
# `nms_numpy` keeps:

# %%
corners = rng.uniform(0, 120, (150, 2))
many_boxes = np.concatenate([corners, corners + rng.uniform(10, 40, (150, 2))], axis=1).astype(np.float32)
many_scores = rng.uniform(0, 1, 150).astype(np.float32)
start = time.perf_counter()
many_cuda = nms(many_boxes, many_scores, threshold, impl="cuda")
elapsed = time.perf_counter() - start
many_reference = nms_numpy(many_boxes, many_scores, threshold)
print(f"150 boxes: {-(-150 // 64)} x {-(-150 // 64)} blocks; {len(many_cuda)} kept by the kernel and the walk "
      f"({elapsed:.2f} s, {'on the GPU' if ON_GPU else 'in the simulator'}); the same as nms_numpy: "
      f"{np.array_equal(many_cuda, many_reference)}")
assert np.array_equal(many_cuda, many_reference)

# %% tags=["hide-input"]
nb = -(-150 // 64)
fig, ax = plt.subplots(figsize=(5.2, 4.6))
for row in range(nb):
    for col in range(nb):
        kind = "returns" if col < row else ("k > t only" if col == row else "all 64 x 64")
        colour = {"returns": "lightgray", "k > t only": "tab:olive", "all 64 x 64": "tab:green"}[kind]
        ax.add_patch(patches.Rectangle((col, row), 1, 1, facecolor=colour, edgecolor="white", lw=2))
        height = min(64, 150 - row * 64)
        ax.text(col + 0.5, row + 0.5, f"block ({row}, {col})\n{kind}\n{height} threads", ha="center", va="center",
                fontsize=8)
ax.set_xlim(0, nb)
ax.set_ylim(nb, 0)
ax.set_xticks(np.arange(nb) + 0.5, [f"boxes {64 * k}-{min(64 * (k + 1), 150) - 1}" for k in range(nb)], fontsize=8)
ax.set_yticks(np.arange(nb) + 0.5, [f"boxes {64 * k}-{min(64 * (k + 1), 150) - 1}" for k in range(nb)], fontsize=8)
ax.set_xlabel("col: the 64 boxes compared with (the word's bits)")
ax.set_ylabel("row: the boxes of the threads")
ax.set_title("the launch grid of _overlap_mask for 150 boxes", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 8.5 What runs where in one training step
#
# On a GPU, one `train_step` divides the work this way:
#
# | Step | Where | Crossings |
# |---|---|---|
# | draw the batch (loader, flips); draw the sampled anchors and RoIs from the `Generator` | host | (random draws are host NumPy, so every device gets the same ones) |
# | `transform`: images and targets in, normalise, resize, batch | device | host to device: the input transfer point |
# | backbone and FPN: convolutions as im2col + one matrix product each | device (cuBLAS, through CuPy) | none |
# | anchors | device, built once per image shape and cached | none after the first call |
# | RPN: head, decode, top-n, clip, small boxes out | device | a sync per filter (`nonzero`) |
# | NMS per level | bitmask kernel on the device, walk on the host | one sync per call: the mask |
# | matching and sampling (box IoU kernel, `Matcher`, sampler) | device, with the host's draws | a sync per sampled set |
# | RoIAlign (box and mask poolers, mask targets) | numba.cuda kernel | the level split (`nonzero`), the plan's grid size |
# | box and mask heads, the five losses | device | none |
# | reading the losses (finite check, log) | host | one `.item()` per loss |
# | backward (RoIAlign's backward: `cuda.atomic.add`), SGD step | device | none |
# | checkpoint every `checkpoint_every` iterations | host | device to host: weights, momentum |
#
# The stand-in counts the step's syncs as it did for the prediction. The host model takes the
# same step with the same draws, and the two must end with the same losses and weights, bit
# for bit. In training the host normalises with a batch-norm kernel of its own (two passes per
# channel, float64 sums: mrcnn_np/kernels/batch_norm.py) that rounds differently from the
# specification the GPU path runs, so the host step uses the specification's batch norm here
# (`default_impl("numpy", ops=("batch_norm",))`), as inference above kept the norms unfolded:

# %%
images_t, targets_t = (list(t) for t in zip(*(held_out[i] for i in range(2)), strict=True))
one_step = TrainRecipe(iterations=1, batch_size=2, warmup_iters=0, milestones=())
host_step_model = shapes_model().train()
with default_impl("numpy", ops=("batch_norm",)):  # the GPU path's batch norm: the specification
    host_losses = train_step(host_step_model, make_optimizer(host_step_model, one_step)[0], images_t, targets_t,
                             rng=1)
with gpu_path_with_sites():
    step_model = shapes_model().to("cuda").train()
    optimizer, _ = make_optimizer(step_model, one_step)
    sites.clear()
    with fake_cupy.counting() as step:
        step_losses = train_step(step_model, optimizer, images_t, targets_t, rng=1)
    step_sites = Counter(sites)
    state = {k: to_numpy(v) for k, v in step_model.state_dict().items()}
host_state = host_step_model.state_dict()
same = step_losses == host_losses and all(np.array_equal(state[k], host_state[k]) for k in host_state)
print(f"one training step: {step.syncs} syncs, {step.to_host} copies to the host; "
      f"losses and weights equal to the host's step: {same}")
by_file = Counter()
for site, count in step_sites.items():
    by_file[site.split(":")[0]] += count
for file, count in by_file.most_common():
    print(f"  {file:<24} {count:>3}")
assert same and step.syncs == sum(step_sites.values())

# %% [markdown]
# A training step syncs more than a prediction. The samplers select positives and negatives,
# and the losses are read once each. The RPN also keeps more boxes per level in training
# (`rpn_pre_nms_top_n`), and above 1,000 boxes `batched_nms` switches, as torchvision's does,
# from one NMS over shifted boxes to one NMS per category (for the RPN, per pyramid level).
# That costs a `unique` and a `nonzero` per image, plus one mask copy per category. Again
# nothing grows with the number of boxes or pixels.
#
# ### How the GPU numbers will be measured
#
# This chapter reports no GPU timings, and it should not: so far the project has had no GPU to
# measure on (in CPU mode, the simulator's times above measure Python, not a GPU). The
# measurements belong to `benchmarks/gpu_check.py`, to be run on a machine with a GPU when the
# project is lent one (`python benchmarks/gpu_check.py --out gpu_check.json`; its docstring
# lists its sections and the targets it checks). It runs the kernels with `impl="cuda"` on
# CuPy arrays against the NumPy reference, the layers and the shapes model in float64 on the
# GPU against the CPU, and times predict and training steps, of the demo's model and of
# ResNet-50-FPN, beside torchvision on the same GPU. In CI it runs on the stand-ins
# (`--fake --quick`), which shows that the script works but says nothing about speed. Two
# rules make such timings honest:
#
# - **synchronise before reading the clock.** A launch returns before the kernel has run, so
#   `time.perf_counter()` around a CuPy call measures the queuing, not the work. Time with
#   CUDA events, or call `cupy.cuda.Device().synchronize()` before each reading;
# - **warm up first.** The first call of a numba.cuda kernel compiles it (or loads it from the
#   cache), and the first call of the model builds and caches its anchors and taps. Time the
#   calls after those.
#
# Until those numbers exist, the README says so ("Measured GPU numbers are still to come").

# %%
if not ON_GPU:
    fake_cupy.uninstall()  # `import cupy` no longer finds the stand-in
print(f"chapter run time: {time.perf_counter() - chapter_start:.0f} s, in {mode}")

# %% [markdown]
# ## Summary
#
# - The same code runs on the CPU and on a GPU: every stage asks `get_array_module(x)` for
#   `numpy` or `cupy`, and `model.to("cuda")` moves the parameters and buffers. Nothing is
#   converted between host and device implicitly; data crosses only at four named points (the
#   model's input, its output, checkpoints and evaluation), and `predict` returns host NumPy
#   arrays on either device.
# - Without a GPU the chapter runs on the test suite's CuPy stand-in and numba's CUDA simulator.
#   There the device path predicts and trains exactly as the host does, bit for bit.
# - A sync happens whenever the host needs a value of device data: `bool(x.any())`, `int`,
#   `float`, `.item()`, a boolean mask, `nonzero`. Arithmetic, device reductions, integer
#   indexing and shapes cost none. Counted by the stand-in, a prediction of two shapes images
#   makes 28 syncs, once per image, level or call and never per box, and `trusted()` skips the
#   value checks inside the model.
# - The RoIAlign forward kernel gives one thread to each output element, numbered in NCHW order.
#   3 boxes x 2 channels x 3 x 3 bins make 54 threads in one block of 128, and the kernel agrees
#   with the specification to 1.2e-7 (float32, another order of addition). The taps of one
#   thread equal `outer(W_y[p], W_x[q])` up to float32 rounding.
# - The backward kernel scatters gradients onto shared pixels, so there threads collide and add
#   with `cuda.atomic.add`.
# - NMS splits into a parallel bitmask on the device (one `uint64` word per box and block of 64:
#   n²/2 IoU tests in one launch) and a sequential walk on the host over the bits. The 20-box
#   example keeps boxes `[5, 10, 17, 9, 2, 13]`, and 150 boxes keep 119, as `nms_numpy` does.
# - One training step makes 66 syncs (24 of them in NMS). The chapter reports no GPU timings; they
#   belong to `benchmarks/gpu_check.py`, which synchronises before reading the clock and warms up
#   first.

# %% [markdown]
# ## Exercises
#
# The exercise is in `exercises/08_gpu/`. `mrcnn-np check 08` grades your numba.cuda kernels in
# numba's simulator when there is no GPU (on the GPU when there is one), against
# `box_iou(impl="numpy")` and `roi_align_numpy`; `mrcnn-np check 08 --hint` reveals the hints one
# at a time. The tasks:
#
# 1. `box_iou`: a 2-D grid of threads, one per pair of boxes.
# 2. `element_index`: a flat thread index to the output element `(r, c, p, q)` in NCHW order.
# 3. `roi_align`: the RoIAlign forward pass from the sampling plan of section 8.3, one thread per
#    output element.
#
# Further questions:
#
# - The forward kernel needs no atomics and the backward one does. Could the backward give one
#   thread to each *input* pixel instead? What would that thread have to find out first?
# - In the NMS walk, a suppressed box's bits are ignored. For the 20-box example, which boxes
#   would be lost if they were OR-ed in as well?
# - Which of the 28 syncs of a prediction could a fixed-size design remove (padding to a fixed
#   number of boxes instead of `nonzero`), and what would the padding cost?
