"""Time full Mask R-CNN inference: mrcnn_np against torchvision, same weights, same run.

A 3x800x800 float32 image (a photograph matplotlib ships, resized), torchvision's
ResNet-50-FPN Mask R-CNN recipe with seeded random weights (frozen-BN statistics calibrated as
``mrcnn-np verify`` does, so the network behaves like a trained one numerically), 91 classes.
Prints best-of-N wall times (calls interleaved), the ratio mrcnn_np / torchvision, our call
as a user writes it (``model([image])``) against the same call inside ``no_grad()`` -- equal
within noise, since predict never records the tape -- and our time per stage from one extra run.

    python benchmarks/bench_model.py [--repeats 3] [--size 800] [--image photo|random] [--conv-threads N]

``--image random``: uniform noise instead of the photograph (more proposals survive, different
RoI heads' work). ``--conv-threads``: threads of mrcnn_np's convolutions (default: torch's thread
count, so both libraries use the same cores; 1: serial tiles on BLAS's own threads).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mrcnn_np import no_grad
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.nn import functional as F
from mrcnn_np.reference.twins import build_pair, sample_image

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402


def square_image(size: int) -> np.ndarray:
    img = sample_image()[None].transpose(0, 3, 1, 2)  # (1, 3, H, W)
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False).data[0].transpose(1, 2, 0)


def stage_times(model, image) -> dict[str, float]:
    """Our wall time per stage for one inference."""
    times = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    with no_grad():
        batch, _ = timed("transform", model.transform, [image], None, np.float32)
        feats = timed("backbone+fpn", model.backbone, batch.tensors)
        proposals, _ = timed("rpn", model.rpn.predict, batch.tensors.shape[-2:], batch.image_sizes, feats)
        rh = model.roi_heads
        box_feats = timed("box roi_align", rh.box_roi_pool, feats, proposals, batch.image_sizes)
        logits, deltas = timed("box head", lambda f: rh.box_predictor(rh.box_head(f)), box_feats)
        results = timed("postprocess", rh.postprocess_detections, logits.data, deltas.data, proposals,
                        batch.image_sizes)
        boxes = [r["boxes"] for r in results]
        mask_feats = timed("mask roi_align", rh.mask_roi_pool, feats, boxes, batch.image_sizes)
        timed("mask head", lambda f: rh.mask_predictor(rh.mask_head(f)), mask_feats)
        results = timed("full predict (again)", model.roi_heads.predict, feats, proposals, batch.image_sizes)
        timed("paste masks", model.transform.postprocess, results, batch.image_sizes, batch.original_sizes)
    return times


def hot_spots(model, image, top: int = 12) -> list[tuple[str, float, int]]:
    """The ``top`` functions by own time (cProfile's tottime) in one inference: ``(name, seconds, calls)``."""
    profile = cProfile.Profile()
    profile.enable()
    model([image])
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (calls, ncalls, tottime, cumtime, callers)}
    rows = sorted(((f"{Path(f).name}:{line}({name})" if line else name, tt, nc)
                   for (f, line, name), (_, nc, tt, _, _) in stats.items()), key=lambda r: -r[1])
    return rows[:top]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--image", choices=("photo", "random"), default="photo")
    parser.add_argument("--conv-threads", type=int, default=None)
    args = parser.parse_args(argv)
    kernel_threads.THREADS = args.conv_threads or torch.get_num_threads()
    if args.image == "photo":
        image = square_image(args.size).astype(np.float32)
    else:
        image = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)
    tv, ours = build_pair(num_classes=91, dtype=np.float32, min_size=args.size, max_size=1333, image=image)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def run_ours():  # predict never records the autograd tape: no no_grad() needed
        return ours([image])

    def run_ours_inside_no_grad():  # the same call as a cautious user might write it
        with no_grad():
            return ours([image])

    def run_torch():
        with torch.no_grad():
            return tv([x])

    t_ours, t_no_grad, t_torch = best_times((run_ours, run_ours_inside_no_grad, run_torch), args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (mrcnn_np's convolutions "
          f"{kernel_threads.cpu_threads()}), numpy {np.__version__}")
    print(f"Mask R-CNN ResNet-50-FPN inference, 1 {args.image} image 3x{args.size}x{args.size} float32, "
          f"best of {args.repeats}; "
          f"{len(run_ours()[0]['boxes'])} detections")
    print(f"{'mrcnn_np':>12s} {'torchvision':>12s} {'ratio':>7s}")
    print(f"{t_ours:11.3f}s {t_torch:11.3f}s {t_ours / t_torch:6.2f}x")
    print(f"model([image]) / the same call inside no_grad(): {t_ours / t_no_grad:.3f} "
          f"({t_no_grad:.3f}s inside no_grad)")
    print("mrcnn_np per stage (one run; 'full predict (again)' re-runs box+mask heads with postprocess):")
    for name, t in stage_times(ours, image).items():
        print(f"  {name:22s} {t:7.3f}s")
    print("mrcnn_np's hot spots: the functions with the most own time in one inference (cProfile, which adds "
          "its overhead to Python calls):")
    for name, t, calls in hot_spots(ours, image):
        print(f"  {t:7.3f}s {calls:6d} calls  {name}")


if __name__ == "__main__":
    main()
