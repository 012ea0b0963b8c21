"""Time nms and box_iou: every CPU impl of mrcnn_np against torchvision, same inputs, same run.

nms on 1,000 / 4,000 / 12,000 clustered float32 boxes (detections around 50 objects) at
IoU 0.7; box_iou of 20,000 x 50 boxes (anchors against ground truths). Prints best-of-N
wall times (calls interleaved) and ratios impl / torchvision (<= 1.0: at least as fast).

    python benchmarks/bench_boxes.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

from mrcnn_np.ops import box_iou, nms

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402

IMPLS = ("numpy", "numba")


def clustered_boxes(rng, n, clusters=50):
    centres = rng.uniform(0, 1000, (clusters, 2))
    sizes = rng.uniform(20, 200, (clusters, 2))
    pick = rng.integers(0, clusters, n)
    xy = centres[pick] + rng.normal(0, 8, (n, 2))
    wh = sizes[pick] * rng.uniform(0.8, 1.2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def bench_nms(rng, n, repeats):
    boxes, scores = clustered_boxes(rng, n), rng.random(n).astype(np.float32)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    fns = [lambda impl=impl: nms(boxes, scores, 0.7, impl=impl) for impl in IMPLS]
    return best_times([*fns, lambda: torchvision.ops.nms(tb, ts, 0.7)], repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for n in (1000, 4000, 12000):
        rows.append((f"nms {n} boxes @0.7", bench_nms(rng, n, args.repeats)))
    anchors, gt = clustered_boxes(rng, 20000), clustered_boxes(rng, 50)
    ta, tg = torch.from_numpy(anchors), torch.from_numpy(gt)
    fns = [lambda impl=impl: box_iou(anchors, gt, impl=impl) for impl in IMPLS]
    rows.append(("box_iou 20000 x 50", best_times([*fns, lambda: torchvision.ops.box_iou(ta, tg)], args.repeats)))

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}")
    header = "".join(f"{impl:>10s} {'ratio':>6s}" for impl in IMPLS)
    print(f"{'case':22s}{header} {'torchvision':>12s}")
    for name, times in rows:
        ref = times[-1]
        cells = "".join(f"{t * 1e3:8.2f}ms {t / ref:5.2f}x" for t in times[:-1])
        print(f"{name:22s}{cells} {ref * 1e3:10.2f}ms")


if __name__ == "__main__":
    main()
