"""Time RoIAlign: every impl of mrcnn_np against torchvision's CPU roi_align, same run.

1,000 boxes on a 1x256x200x200 float32 map (P2 of an 800x800 image) at spatial scale 1/4,
sampling ratio 2, aligned=False, output 7x7 (box head) and 14x14 (mask head); forward, and
backward (the gradient of the features). Prints best-of-N wall times (calls interleaved) and
the speed-up torchvision / impl (>= 5 forward and >= 3 backward is the target for numba).

    python benchmarks/bench_roi_align.py [--repeats 5] [--with-numpy]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

from mrcnn_np.kernels import roi_align as kernels
from mrcnn_np.ops import roi_align as ops
from mrcnn_np.ops.roi_align import roi_align, sampling_plan

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402


def boxes_on_image(rng, n, size=800):
    xy = rng.uniform(0, size - 32, (n, 2))
    wh = rng.uniform(16, 400, (n, 2))
    return np.concatenate([np.zeros((n, 1)), xy, np.minimum(xy + wh, size)], axis=1).astype(np.float32)


def bench(rng, output_size, impls, repeats):
    x = rng.standard_normal((1, 256, 200, 200), dtype=np.float32)
    rois = boxes_on_image(rng, 1000)
    tx, trois = torch.from_numpy(x), torch.from_numpy(rois)
    plan = sampling_plan(rois, 0.25, output_size, 2, False, 200, 200, np.float32)
    g = rng.standard_normal((1000, 256, *output_size), dtype=np.float32)
    tg = torch.from_numpy(g)
    backward = {"numpy": ops.roi_align_backward_numpy, **{k: v[1] for k, v in kernels.IMPLS.items()}}

    def torch_forward():
        torchvision.ops.roi_align(tx, trois, output_size, 0.25, 2, False)

    def torch_backward():  # the gradient alone: forward outside the timed region is not possible, so
        xt = tx.detach().requires_grad_()  # time forward+backward and subtract the forward below
        torchvision.ops.roi_align(xt, trois, output_size, 0.25, 2, False).backward(tg)

    fwd = [lambda impl=impl: roi_align(x, rois, output_size, 0.25, 2, False, impl=impl) for impl in impls]
    bwd = [lambda impl=impl: backward[impl](g, plan, x.shape) for impl in impls]
    t_fwd = best_times([*fwd, torch_forward], repeats)
    t_bwd = best_times([*bwd, torch_backward], repeats)
    t_bwd[-1] -= t_fwd[-1]  # torchvision's backward alone
    return t_fwd, t_bwd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--with-numpy", action="store_true", help="also time the NumPy specification (slow)")
    args = parser.parse_args(argv)
    impls = ("numpy", "numba") if args.with_numpy else ("numba",)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}")
    header = "".join(f"{i:>10s} {'speed-up':>9s}" for i in impls)
    print(f"{'output':8s} {'pass':9s}{header} {'torchvision':>12s}")
    for size in ((7, 7), (14, 14)):
        t_fwd, t_bwd = bench(rng, size, impls, args.repeats)
        for name, times in (("forward", t_fwd), ("backward", t_bwd)):
            cells = "".join(f"{t * 1e3:8.1f}ms {times[-1] / t:8.1f}x" for t in times[:-1])
            print(f"{size[0]}x{size[1]:<5d} {name:9s}{cells} {times[-1] * 1e3:10.1f}ms")


if __name__ == "__main__":
    main()
