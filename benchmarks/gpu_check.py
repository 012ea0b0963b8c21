"""The GPU check: mrcnn_np on one GPU, against its NumPy reference and torchvision CUDA, in one run.

Sections, in order (each a function; the JSON at ``--out`` is rewritten after every one, so a
run cut short keeps what it measured; an exception is recorded as ``{"error": ...}`` and the
next section runs; past ``--budget-s`` the rest are recorded as skipped):

  versions    Python, NumPy, numba(-cuda), CuPy, CUDA, the GPU, torch; what impl="auto" picks
  kernels     box IoU, NMS, RoIAlign (forward, backward) with impl="cuda" on CuPy inputs vs
              impl="numpy" on the host; first call (compile) and steady times
  layers      every layer's forward and gradients on the device in float32 and float64, as
              relative error against the host NumPy reference in float64
  float64     the tiny (shipped shapes) model in float64 on the GPU vs the CPU: detections,
              the five losses, every parameter's gradient
  demo        the demo configuration (DemoSettings): first training step, steady step, predict
  resnet50    ResNet-50-FPN on two 800x1216 images: predict and one training step, time and
              peak memory, side by side with torchvision CUDA (same weights, same GPU)
  train300    300 iterations of the demo recipe: the loss falls and stays finite
                  (AP evaluation is left out: it needs pycocotools, absent on the GPU machine)

It ends with a table of the acceptance targets (also in the JSON, ``targets``): float64 GPU
detections identical to the CPU's and losses within 1e-10; the demo's 2100 iterations in <= 3
minutes (steady step x 2100); ResNet-50-FPN predict and training step <= 3x torchvision's time
(goal 2x). Kernel caches start empty: first calls (compiles) are reported apart from steady times.

On the GPU machine (the repo on PYTHONPATH, no pycocotools needed), at most ~8 minutes::

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json

In CI, on the CPU with the CuPy stand-in (tests/fake_cupy.py, tests/fake_kernels.py), tiny sizes::

    python benchmarks/gpu_check.py --fake --quick --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # mrcnn_np, and tests.fake_cupy for --fake

from mrcnn_np import Tensor, backend  # noqa: E402
from mrcnn_np.backend import default_impl, to_numpy  # noqa: E402
from mrcnn_np.demo import DemoSettings  # noqa: E402
from mrcnn_np.model.mask_rcnn import MaskRCNN  # noqa: E402
from mrcnn_np.nn import functional as F  # noqa: E402
from mrcnn_np.train import NonFiniteLossError, TrainRecipe, make_optimizer, train_step  # noqa: E402

DEMO = DemoSettings()
BAR_ITERATIONS = 2100  # the GPU issue's bar: the demo's iterations when it was set (2100) in <= 3 minutes
DET_TOL = {"boxes": 1e-6, "scores": 1e-9, "masks": 1e-6}  # "identical" float64 detections (pixels, probabilities)


class Run:
    """The run's state: options, device modules, deadline, and the report written after each section."""

    def __init__(self, args):
        self.args, self.fake, self.quick = args, args.fake, args.quick
        self.deadline = time.perf_counter() + args.budget_s
        self.report = {"fake": self.fake, "quick": self.quick, "budget_s": args.budget_s, "status": "running",
                       "sections_done": [], "sections": {}, "targets": {}}
        import cupy
        import torch

        self.cp, self.torch, self.last = cupy, torch, None  # last: the result of timeit's last call
        self.tdev = "cpu" if self.fake else "cuda"  # torchvision runs on the CPU in --fake mode
        if self.fake:  # on a shared CI machine 2 torch threads fighting numba's and BLAS's took 5x longer than 1
            torch.set_num_threads(1)

    def sync(self):
        self.cp.cuda.Device().synchronize()
        if self.tdev == "cuda":
            self.torch.cuda.synchronize()

    def timeit(self, fn, repeats: int) -> dict:
        """The first call (compiles, fills caches) timed on its own, then ``repeats`` synced calls
        (none: the first call stands in for them, in --quick runs)."""
        times = []
        for _ in range(repeats + 1):
            self.sync()
            t0 = time.perf_counter()
            self.last = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        steady = times[1:] or times
        return {"first_s": times[0], "best_s": min(steady), "median_s": statistics.median(steady), "repeats": repeats}

    def model_impl(self):
        """What the model sections run their kernels with. On a GPU: impl="auto" (the numba.cuda kernels).
        Under --fake: the NumPy reference of every kernel, on the host and the device alike -- the
        stand-in's arrays cannot enter numba.cuda kernels, tests/fake_kernels.py stands in only for the
        ones it lists (a kernel added before its stand-in would break this run, not the GPU's), and the
        float64 comparison demands bit equality, which holds only between the same kernels."""
        return default_impl("numpy") if self.fake else contextlib.nullcontext()

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def write(self):
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=1, default=_plain))
        os.replace(tmp, out)  # a reader never sees half a file
        if self.args.snapshots:  # a copy per write, for tests
            snaps = Path(self.args.snapshots)
            snaps.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, snaps / f"{len(self.report['sections_done']):02d}.json")


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def rel_err(got, ref) -> float:
    got, ref = to_numpy(got).astype(np.float64), np.asarray(ref, np.float64)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300)) if ref.size else 0.0


def max_abs(a, b) -> float:
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    return float(np.abs(a - b).max()) if a.size else 0.0


# --- data without pycocotools (mrcnn_np.data.coco, .loader and shapes_coco import it) -------------------
def shapes_sample(rng, **data):
    """``random_image`` -> (image float32 (H, W, 3), target) annotated as ``shapes_coco`` does (box: mask extent)."""
    from mrcnn_np.data.shapes import random_image

    image, masks, labels = random_image(rng, **data)
    boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in map(np.nonzero, masks)]
    return image, {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "labels": labels,
                   "masks": masks.astype(np.uint8)}


@functools.cache
def demo_sample(seed: int, i: int):
    """Image ``i`` of the demo's data set ``seed`` as ``shapes_coco`` draws it (uint8), without the COCO round trip."""
    image, target = shapes_sample(np.random.default_rng([seed, i]), **DEMO.data())
    return np.round(image * 255).astype(np.uint8), target


def demo_batch(recipe: TrainRecipe, t: int, n: int = DEMO.train_images):
    """``DataLoader(data, B, shuffle=True, flip_prob, seed).batch(t)`` (mrcnn_np/data/loader.py), re-done here."""
    B = recipe.batch_size
    epoch, j = divmod(t, -(-n // B))
    order = np.random.default_rng([recipe.seed, epoch]).permutation(n)
    images, targets = [], []
    for p in range(j * B, min((j + 1) * B, n)):
        image, target = demo_sample(recipe.seed, int(order[p]))
        if recipe.flip_prob > 0 and np.random.default_rng([recipe.seed, epoch, p, 1]).random() < recipe.flip_prob:
            b, w = target["boxes"], image.shape[1]
            target = {"boxes": np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1),
                      "labels": target["labels"], "masks": target["masks"][..., ::-1].copy()}
            image = image[:, ::-1].copy()
        images.append(image)
        targets.append(target)
    return images, targets


def rand_boxes(rng, n, size, dtype):
    xy = rng.uniform(0, 0.8 * size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(4, size / 4, (n, 2))], axis=1).astype(dtype)


# --- sections ----------------------------------------------------------------------------------------
def section_versions(run: Run) -> dict:
    import importlib.metadata as md

    from mrcnn_np.ops.boxes import BOX_IOU
    from mrcnn_np.ops.nms import NMS
    from mrcnn_np.ops.roi_align import ROI_ALIGN

    cp, torch = run.cp, run.torch
    v = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
         "numpy": np.__version__, "cupy": getattr(cp, "__version__", "stand-in (tests/fake_cupy.py)")}
    for pkg in ("numba", "numba-cuda", "cupy-cuda13x", "cupy-cuda12x", "torch", "torchvision", "pycocotools",
                "safetensors"):
        with contextlib.suppress(md.PackageNotFoundError):
            v[pkg] = md.version(pkg)
    if not run.fake:
        rt = cp.cuda.runtime
        props = rt.getDeviceProperties(0)
        v |= {"gpu": props["name"].decode(), "gpu_memory_gib": props["totalGlobalMem"] / 2**30,
              "cuda_runtime": rt.runtimeGetVersion(), "cuda_driver": rt.driverGetVersion(),
              "torch_cuda": torch.version.cuda, "torch_gpu": torch.cuda.get_device_name(0),
              "torch_tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                             "matmul": torch.backends.cuda.matmul.allow_tf32}}
    probe = cp.zeros((1, 4), np.float32)
    v["cuda_kernels_usable"] = backend.cuda_kernels_usable()
    v["auto_impl_on_device"] = {t.op: t.resolve("auto", probe) for t in (BOX_IOU, NMS, ROI_ALIGN)}
    try:  # the GPU machine's copy of the tree may have no .git, or no git
        git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        v["commit"] = git.stdout.strip() or None
    except OSError:
        v["commit"] = None
    return v


def section_kernels(run: Run) -> dict:
    rng, out = np.random.default_rng(0), {}
    for dt in (np.float32, np.float64):
        out |= kernel_rows(run, rng, dt)
    return out


def kernel_rows(run: Run, rng, dt) -> dict:
    """Each kernel through its op with impl="cuda" on device arrays vs impl="numpy" on the host."""
    from mrcnn_np.ops.boxes import box_iou
    from mrcnn_np.ops.nms import nms
    from mrcnn_np.ops.roi_align import roi_align

    dev, reps, name, out = run.cp.asarray, run.n(2, 10), np.dtype(dt).name, {}
    n_iou, n_nms = run.n(300, 2000), run.n(300, 2000)
    shape, n_rois = ((1, 32, 32, 32), 64) if run.quick else ((2, 256, 100, 152), 512)
    # timed first, so that the first call is the one that compiles; the results checked are the last call's
    b1, b2 = rand_boxes(rng, n_iou, 800, dt), rand_boxes(rng, n_iou, 800, dt)
    d1, d2 = dev(b1), dev(b2)
    row = out[f"box_iou {n_iou}x{n_iou} {name}"] = run.timeit(lambda: box_iou(d1, d2, impl="cuda"), reps)
    row["max_abs_err"] = max_abs(run.last, box_iou(b1, b2, impl="numpy"))
    b, s = rand_boxes(rng, n_nms, 160, dt), rng.random(n_nms).astype(dt)  # crowded: much is suppressed
    db, ds = dev(b), dev(s)
    row = out[f"nms {n_nms} {name}"] = run.timeit(lambda: nms(db, ds, 0.7, impl="cuda"), reps)
    ref = nms(b, s, 0.7, impl="numpy")
    row |= {"identical": bool(np.array_equal(to_numpy(run.last), ref)), "kept": len(ref)}
    x = rng.standard_normal(shape).astype(dt)
    boxes = [rand_boxes(rng, n_rois // shape[0], 4 * shape[2], dt) for _ in range(shape[0])]
    g = rng.standard_normal((n_rois, shape[1], 7, 7)).astype(dt)

    def fwd_bwd(x, boxes, g, impl):
        xt = Tensor(x, requires_grad=True)
        y = roi_align(xt, boxes, (7, 7), 0.25, 2, impl=impl)
        y.backward(g)
        return y.data, xt.grad

    dx, dboxes, dg = dev(x), [dev(bx) for bx in boxes], dev(g)
    row = out[f"roi_align {shape} {n_rois} rois 7x7 {name}"] = {
        "forward": run.timeit(lambda: roi_align(dx, dboxes, (7, 7), 0.25, 2, impl="cuda"), reps),
        "forward_backward": run.timeit(lambda: fwd_bwd(dx, dboxes, dg, "cuda"), reps)}
    (y, gx), (y_ref, gx_ref) = run.last, fwd_bwd(x, boxes, g, "numpy")
    row |= {"forward_max_abs_err": max_abs(y, y_ref), "backward_max_abs_err": max_abs(gx, gx_ref)}
    return out


def layer_cases(rng):
    """name -> (fn, leaves (get gradients), constants), float64 host arrays."""
    from mrcnn_np.ops.poolers import MultiScaleRoIAlign
    from mrcnn_np.ops.roi_align import roi_align

    def n(*s):
        return rng.standard_normal(s)

    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    boxes = [rand_boxes(rng, 12, 128, np.float64), rand_boxes(rng, 9, 128, np.float64)]
    feats = {str(k): n(2, 8, 32 >> k, 32 >> k) for k in range(4)}  # P2..P5 of a 128 x 128 image
    return {
        "conv2d 3x3/2": (lambda x, w, b: F.conv2d(x, w, b, 2, 1), dict(x=n(2, 16, 20, 20), w=n(32, 16, 3, 3) / 12,
                                                                        b=n(32)), {}),
        "conv2d 1x1": (lambda x, w: F.conv2d(x, w), dict(x=n(2, 64, 12, 12), w=n(32, 64, 1, 1) / 8), {}),
        "conv_transpose2d 2x2/2": (lambda x, w, b: F.conv_transpose2d(x, w, b, 2),
                                   dict(x=n(3, 16, 14, 14), w=n(16, 8, 2, 2) / 8, b=n(8)), {}),
        "linear": (F.linear, dict(input=n(64, 256), weight=n(128, 256) / 16, bias=n(128)), {}),
        "relu": (F.relu, dict(input=n(2, 16, 20, 20)), {}),
        "sigmoid": (F.sigmoid, dict(input=8 * n(64, 32)), {}),
        "softmax": (lambda x: F.softmax(x, 1), dict(x=5 * n(64, 91)), {}),
        "log_softmax": (lambda x: F.log_softmax(x, -1), dict(x=5 * n(64, 91)), {}),
        "max_pool2d 3x3/2": (lambda x: F.max_pool2d(x, 3, 2, 1), dict(x=n(2, 16, 21, 20)), {}),
        "frozen_batch_norm2d": (F.frozen_batch_norm2d, dict(input=n(2, 16, 10, 10)),
                                dict(weight=n(16), bias=n(16), running_mean=n(16), running_var=np.abs(n(16)) + 0.5)),
        "batch_norm train": (lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5),
                             dict(x=n(4, 16, 10, 10), w=n(16), b=n(16)), dict(rm=n(16), rv=np.abs(n(16)) + 0.5)),
        "interpolate nearest x2": (lambda x: F.interpolate(x, scale_factor=2), dict(x=n(2, 16, 10, 15)), {}),
        "interpolate bilinear": (lambda x: F.interpolate(x, size=(31, 27), mode="bilinear"),
                                 dict(x=n(2, 16, 10, 15)), {}),
        "cross_entropy": (F.cross_entropy, dict(input=3 * n(128, 91)), dict(target=rng.integers(0, 91, 128))),
        "bce_with_logits": (F.binary_cross_entropy_with_logits, dict(input=4 * n(16, 28, 28)),
                            dict(target=(rng.random((16, 28, 28)) > 0.5).astype(np.float64))),
        "smooth_l1_loss beta 1/9": (lambda x, t: F.smooth_l1_loss(x, t, "sum", beta=1 / 9),
                                    dict(x=n(256, 4)), dict(t=n(256, 4))),
        "roi_align 7x7": (lambda x, boxes: roi_align(x, boxes, (7, 7), 0.25, 2), dict(x=n(2, 16, 32, 32)),
                          dict(boxes=boxes)),
        "MultiScaleRoIAlign": (lambda p2, p3, p4, p5, boxes: pooler({"0": p2, "1": p3, "2": p4, "3": p5}, boxes,
                                                                     [(128, 128), (128, 128)]),
                               dict(p2=feats["0"], p3=feats["1"], p4=feats["2"], p5=feats["3"]), dict(boxes=boxes)),
    }


def forward_backward(fn, leaves, consts, grad_seed, move, dtype):
    cast = {k: move(a.astype(dtype) if a.dtype.kind == "f" else a) for k, a in leaves.items()}
    tensors = {k: Tensor(a, requires_grad=True) for k, a in cast.items()}
    consts = {k: [move(b.astype(dtype)) for b in a] if isinstance(a, list) else
              move(a.astype(dtype) if a.dtype.kind == "f" else a) for k, a in consts.items()}
    out = fn(**tensors, **consts)
    g = np.random.default_rng(grad_seed).standard_normal(out.shape)
    out.backward(move(np.asarray(g, dtype)))
    return out.data, {k: t.grad for k, t in tensors.items()}


def section_layers(run: Run) -> dict:
    out, worst = {}, {"float32": 0.0, "float64": 0.0}
    for name, (fn, leaves, consts) in layer_cases(np.random.default_rng(0)).items():
        with default_impl("numpy"):  # the reference is the readable NumPy specification of every kernel
            ref_out, ref_grads = forward_backward(fn, leaves, consts, 1, lambda a: a, np.float64)
        row = {}
        for dt in ("float32", "float64"):
            got_out, got_grads = forward_backward(fn, leaves, consts, 1, run.cp.asarray, dt)
            errs = {"out": rel_err(got_out, ref_out), **{f"grad {k}": rel_err(got_grads[k], ref_grads[k])
                                                          for k in ref_grads}}
            row[dt] = errs
            worst[dt] = max(worst[dt], *errs.values())
        out[name] = row
    return {"layers": out, "worst_rel_err": worst, "note": "max |device - host float64 reference| / max |reference|"}


def compare_detections(cpu: list, gpu: list) -> dict:
    rows = []
    for a, b in zip(cpu, gpu, strict=True):
        same = len(a["boxes"]) == len(b["boxes"]) and np.array_equal(a["labels"], b["labels"])
        rows.append({"detections": [len(a["boxes"]), len(b["boxes"])], "same_labels": bool(same),
                     **({k: max_abs(a[k], b[k]) for k in DET_TOL} if same else {})})
    identical = all(r["same_labels"] and all(r[k] <= tol for k, tol in DET_TOL.items()) for r in rows)
    bitwise = identical and all(np.array_equal(a[k], b[k]) for a, b in zip(cpu, gpu, strict=True) for k in DET_TOL)
    return {"identical": identical, "bitwise": bitwise, "tolerance": DET_TOL, "images": rows}


def tiny_float64(device: str):
    """The shipped shapes model (the demo's training result) in float64; random weights if it cannot be read."""
    try:
        from mrcnn_np.pretrained import shapes_model

        model, weights = shapes_model(), "shipped shapes model (mrcnn_np/weights)"
    except (ImportError, OSError, ValueError) as e:
        model, weights = MaskRCNN(DEMO.config(), rng=0), f"random (seed 0): shipped weights unreadable: {e}"
    return model.to(np.float64, device), weights


def section_float64(run: Run) -> dict:
    # On a GPU: the CPU's impl="auto" (numba kernels, OpenBLAS) against the GPU's (numba.cuda kernels,
    # cuBLAS), equal to rounding. Under --fake both sides run the NumPy reference (Run.model_impl) and
    # must agree bit for bit: the stand-in refuses any silent host round trip on the device path.
    images, targets = (list(x) for x in zip(*(demo_sample(DEMO.seed + 1, i) for i in range(2)), strict=True))
    runs = {}
    for device in ("cpu", "cuda"):
        model, weights = tiny_float64(device)
        detections = model.eval()(images)
        model.train()
        losses, drawn = model.loss(images, targets, rng=np.random.default_rng(5), return_sampled=True)
        first, *rest = losses.values()
        sum(rest, first).backward()
        grads = {n: to_numpy(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        drawn = [to_numpy(m) for part in drawn.values() for masks in part for m in masks]
        runs[device] = (detections, {k: float(v.item()) for k, v in losses.items()}, grads, drawn)
    (det_c, loss_c, grad_c, drawn_c), (det_g, loss_g, grad_g, drawn_g) = runs["cpu"], runs["cuda"]
    grad_errs = {n: rel_err(grad_g[n], grad_c[n]) for n in grad_c}
    worst = max(grad_errs, key=grad_errs.get)
    return {"weights": weights, "detections": compare_detections(det_c, det_g),
            "losses_cpu": loss_c, "losses_gpu": loss_g,
            "loss_max_abs_diff": max(abs(loss_c[k] - loss_g[k]) for k in loss_c),
            "same_sampled_anchors_and_rois": all(np.array_equal(a, b) for a, b in zip(drawn_c, drawn_g, strict=True)),
            "gradients": {"parameters": len(grad_c), "same_set": set(grad_c) == set(grad_g),
                          "worst_rel_err": grad_errs[worst], "worst_parameter": worst}}


def section_demo(run: Run) -> dict:
    recipe = DEMO.recipe()
    model = MaskRCNN(DEMO.config(), rng=DEMO.seed).to("cuda").train()
    optimizer, _ = make_optimizer(model, recipe)
    batches = [demo_batch(recipe, t) for t in range(run.n(1, 10) + 1)]  # drawn before timing
    times = []
    for t, (images, targets) in enumerate(batches):
        run.sync()
        t0 = time.perf_counter()
        train_step(model, optimizer, images, targets, rng=np.random.default_rng([recipe.seed, t]), iteration=t + 1)
        run.sync()
        times.append(time.perf_counter() - t0)
    four = [demo_sample(DEMO.seed + 1, i)[0] for i in range(4)]
    one = four[:1]
    model.eval()
    out = {"batch_size": recipe.batch_size, "image_size": DEMO.image_size,
           "first_step_s": times[0], "steady_step_median_s": statistics.median(times[1:]),
           "steady_step_best_s": min(times[1:]), "steady_steps": len(times) - 1,
           "projected_2100_iterations_s": statistics.median(times[1:]) * BAR_ITERATIONS,
           "predict_1_image": run.timeit(lambda: model(one), run.n(1, 10)),
           "predict_4_images": run.timeit(lambda: model(four), run.n(0, 5)),
           "note": "the first step compiles what the earlier sections left uncompiled (see cupy_kernels_compiled)"}
    return out


@contextlib.contextmanager
def cupy_peak(cp):
    """Peak bytes in use in CuPy's memory pool (read at every allocation) within the block: ``peak[0]``."""
    pool = cp.get_default_memory_pool()
    peak = [pool.used_bytes()]

    def malloc(size):
        mem = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return mem

    cp.cuda.set_allocator(malloc)
    try:
        yield peak
    finally:
        cp.cuda.set_allocator(pool.malloc)


def section_resnet50(run: Run) -> dict:
    from mrcnn_np.config import resnet50_fpn
    from mrcnn_np.reference.training import torchvision_optimizer, torchvision_train_step
    from mrcnn_np.reference.twins import targets_to_torch, to_torch, twin_pair

    torch, cp, tdev, t_setup = run.torch, run.cp, run.tdev, time.perf_counter()
    if run.quick:  # CPU-sized: about a second per call in NumPy
        h, w = 64, 96
        config = resnet50_fpn(min_size=h, max_size=w, rpn_pre_nms_top_n={"training": 100, "testing": 50},
                              rpn_post_nms_top_n={"training": 50, "testing": 25}, box_batch_size_per_image=32)
    else:
        h, w, config = 800, 1216, resnet50_fpn()  # 800 x 1216: no resize, no padding
    samples = [shapes_sample(np.random.default_rng([7, i]), height=h, width=w, max_instances=4) for i in range(2)]
    images, targets = [im for im, _ in samples], [t for _, t in samples]
    # torchvision's MaskRCNN of exactly our architecture (= maskrcnn_resnet50_fpn(weights=None,
    # weights_backbone=None) but with its pretrained recipe's FrozenBatchNorm2d and 3 trainable stages),
    # seeded random weights with calibrated norm statistics, loaded into ours (tests/reference do the same)
    tv, ours = twin_pair(config, seed=0, image=images[0])
    tv, ours = tv.to(tdev), ours.to("cuda")
    tv_images = [x.to(tdev) for x in to_torch(images, np.float32)]
    tv_targets = [{k: v.to(tdev) for k, v in t.items()} for t in targets_to_torch(targets)]
    recipe, reps = TrainRecipe(batch_size=2), run.n(0, 5)
    opt, _ = make_optimizer(ours, recipe)
    tv_opt, _ = torchvision_optimizer(tv, recipe)

    def tv_predict():
        with torch.no_grad():
            return tv.eval()(tv_images)

    calls = {"predict": (lambda: ours.eval()(images), tv_predict),
             "train_step": (lambda: train_step(ours.train(), opt, images, targets, rng=0),
                            lambda: torchvision_train_step(tv.train(), tv_opt, tv_images, tv_targets))}
    out = {"images": f"2 x {h}x{w}", "config": "resnet50_fpn()" if not run.quick else "resnet50_fpn(small)",
           "setup_s": time.perf_counter() - t_setup}
    for what, (mine, theirs) in calls.items():  # predict first: the training steps change the weights
        r = out[what] = {"mrcnn_np": run.timeit(mine, reps)}
        ours_last = run.last
        r["torchvision"] = run.timeit(theirs, reps)
        if what == "predict":
            r["detections"] = {"mrcnn_np": [len(d["boxes"]) for d in ours_last],
                               "torchvision": [len(d["boxes"]) for d in run.last]}
        r["ratio"] = r["mrcnn_np"]["median_s"] / r["torchvision"]["median_s"]
        if run.fake:
            continue
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # CuPy's cuBLAS: float32
        r["torchvision_no_tf32"] = run.timeit(theirs, reps)
        r["ratio_no_tf32"] = r["mrcnn_np"]["median_s"] / r["torchvision_no_tf32"]["median_s"]
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        with cupy_peak(cp) as peak:  # peak memory on a call of its own (the tracking allocator costs a little)
            mine()
            run.sync()
        torch.cuda.reset_peak_memory_stats()
        theirs()
        run.sync()
        r["peak_gib"] = {"mrcnn_np": peak[0] / 2**30, "torchvision": torch.cuda.max_memory_allocated() / 2**30,
                         "mrcnn_np_pool_held": cp.get_default_memory_pool().total_bytes() / 2**30}
    return out


def section_train300(run: Run) -> dict:
    recipe = DEMO.recipe()
    model = MaskRCNN(DEMO.config(), rng=DEMO.seed).to("cuda").train()
    optimizer, scheduler = make_optimizer(model, recipe)
    planned, losses, steps, stopped = run.n(3, 300), [], [], None
    t_run = time.perf_counter()
    for t in range(planned):  # mrcnn_np.train.train's loop, with this script's loader
        if time.perf_counter() > run.deadline:
            stopped = f"budget reached after {t} iterations"
            break
        images, targets = demo_batch(recipe, t)
        t0 = time.perf_counter()
        try:
            losses.append(train_step(model, optimizer, images, targets, rng=np.random.default_rng([recipe.seed, t]),
                                     iteration=t + 1)["loss"])
        except NonFiniteLossError as e:
            losses.append(float("nan"))
            stopped = str(e)
            break
        steps.append(time.perf_counter() - t0)
        scheduler.step()
        if (t + 1) % 50 == 0:  # progress in the JSON, in case the run is killed
            run.report["sections"]["train300"] = {"partial": True, "iterations": t + 1, "loss_every_10": losses[::10],
                                                  "wall_s": time.perf_counter() - t_run}
            run.write()
    run.sync()
    wall, k, done = time.perf_counter() - t_run, max(1, len(losses) // 10), max(1, len(losses))
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))  # the first and last 10%
    return {"iterations": len(losses), "planned": planned, "stopped": stopped, "wall_s": wall,
            "per_iteration_s": wall / done, "step_median_s": statistics.median(steps or [0.0]),
            "projected_2100_iterations_s": wall / done * BAR_ITERATIONS,
            "finite": bool(np.all(np.isfinite(losses))), "loss_first_mean": first, "loss_last_mean": last,
            "loss_falls": last < first, "loss_every_10": losses[::10] + losses[-1:],
            "note": "AP evaluation skipped: it needs pycocotools"}


SECTIONS = {"versions": section_versions, "kernels": section_kernels, "layers": section_layers,
            "float64": section_float64, "demo": section_demo, "resnet50": section_resnet50,
            "train300": section_train300}
MODEL_SECTIONS = {"float64", "demo", "resnet50", "train300"}  # see Run.model_impl


# --- targets -----------------------------------------------------------------------------------------
def targets(sections: dict) -> dict:
    def get(*path):
        x = sections
        for p in path:
            if not isinstance(x, dict) or p not in x:
                return None
            x = x[p]
        return x

    def row(target, value, ok, **extra):
        return {"target": target, "value": value, "pass": None if value is None else bool(ok), **extra}

    det, loss = get("float64", "detections", "identical"), get("float64", "loss_max_abs_diff")
    proj, wall, proj300 = (get("demo", "projected_2100_iterations_s"), get("train300", "wall_s"),
                           get("train300", "projected_2100_iterations_s"))
    falls, finite = get("train300", "loss_falls"), get("train300", "finite")
    out = {"float64 detections identical": row("GPU == CPU", det, det),
           "float64 losses": row("<= 1e-10", loss, loss is not None and loss <= 1e-10),
           "demo 2100 iterations": row("<= 180 s (steady step x 2100)", proj, proj is not None and proj <= 180),
           "demo 300 iterations, wall": row("x 2100 / iterations <= 180 s", wall,
                                            proj300 is not None and proj300 <= 180,
                                            iterations=get("train300", "iterations"), projected_2100_s=proj300),
           "demo loss falls, finite": row("falls, finite", None if falls is None else bool(falls and finite),
                                          falls and finite)}
    for what in ("predict", "train_step"):
        ratio = get("resnet50", what, "ratio")
        out[f"resnet50 {what} / torchvision"] = row("<= 3x (goal 2x)", ratio, ratio is not None and ratio <= 3,
                                                    goal_2x=None if ratio is None else ratio <= 2)
    return out


def print_table(report: dict) -> None:
    print(f"\n{'target':34s} {'measured':>12s} {'wanted':>32s}  result")
    for name, t in report["targets"].items():
        v = t["value"]
        shown = "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
        verdict = {None: "not measured", True: "PASS", False: "FAIL"}[t["pass"]]
        verdict += {True: " (goal 2x met)", False: " (goal 2x not met)"}.get(t.get("goal_2x"), "")
        print(f"{name:34s} {shown:>12s} {t['target']:>32s}  {verdict}")
    if report["fake"]:
        print("(--fake: CPU stand-in; times and ratios say nothing about a GPU)")


def cupy_cache_files(fake: bool) -> int:
    folder = Path(os.environ.get("CUPY_CACHE_DIR", Path.home() / ".cupy" / "kernel_cache"))
    return 0 if fake or not folder.is_dir() else sum(1 for _ in folder.iterdir())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report, rewritten after each section")
    parser.add_argument("--budget-s", type=float, default=450.0, help="then skip the remaining sections")
    parser.add_argument("--fake", action="store_true", help="run on the CPU with the CuPy stand-in (CI)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats, 3 demo iterations")
    parser.add_argument("--snapshots", help="keep a copy of the JSON after each section in this folder")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Grid size")  # numba.cuda's low-occupancy notes on small launches
    with contextlib.ExitStack() as stack:
        if args.fake:
            from tests import fake_cupy, fake_kernels

            stack.enter_context(fake_cupy.installed())
            stack.enter_context(fake_kernels.installed())
        run = Run(args)
        for name, section in SECTIONS.items():
            t0, cached = time.perf_counter(), cupy_cache_files(args.fake)
            if name != "versions" and t0 > run.deadline:
                result = {"skipped": f"the {args.budget_s:g} s budget was spent"}
            else:
                try:
                    with run.model_impl() if name in MODEL_SECTIONS else contextlib.nullcontext():
                        result = section(run)
                except Exception as e:  # recorded; the next section runs
                    result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
                result["section_s"] = time.perf_counter() - t0
                if not args.fake:  # CuPy compiles each elementwise/reduction kernel on first use, into its cache
                    result["cupy_kernels_compiled"] = cupy_cache_files(args.fake) - cached
            state = "error: " + result["error"] if "error" in result else "skipped" if "skipped" in result else "done"
            print(f"[{name}] {state} ({time.perf_counter() - t0:.1f} s)", flush=True)
            run.report["sections"][name] = result
            run.report["sections_done"].append(name)
            run.report["targets"] = targets(run.report["sections"])
            run.write()
        run.report["status"] = "complete"
        run.report["imported_pycocotools"] = sys.modules.get("pycocotools") is not None  # the GPU machine has none
        run.write()
    print_table(run.report)
    return 1 if any("error" in s for s in run.report["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
