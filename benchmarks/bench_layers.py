"""Time mrcnn_np's convolution against torch's on the same input, in the same run.

The required row is a float32 3x3 conv 256->256 on a 1x256x200x200 input (the size of
FPN level P2 for an 800x800 image), forward and forward+backward (gradients of the input
and the weight). Two more rows show the ResNet stem and a bottleneck 1x1 conv. Prints a
table of best-of-N wall times (calls interleaved) and the ratio mrcnn_np / torch (lower is better for us).

    python benchmarks/bench_layers.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import mrcnn_np.nn.functional as F
from mrcnn_np.autograd import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402

CASES = [  # name, input shape, weight shape, stride, padding
    ("conv3x3 256->256, 1x256x200x200", (1, 256, 200, 200), (256, 256, 3, 3), 1, 1),
    ("stem conv7x7/2 3->64, 1x3x800x800", (1, 3, 800, 800), (64, 3, 7, 7), 2, 3),
    ("conv1x1 1024->256, 1x1024x50x50", (1, 1024, 50, 50), (256, 1024, 1, 1), 1, 0),
]


def bench_case(rng, name, x_shape, w_shape, stride, padding, repeats):
    """Rows ``(name, pass, t_ours, t_torch)`` for forward and forward+backward of one conv."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * np.float32(0.05)
    out_hw = [(n + 2 * padding - k) // stride + 1 for n, k in zip(x_shape[2:], w_shape[2:], strict=True)]
    g = rng.standard_normal((x_shape[0], w_shape[0], *out_hw), dtype=np.float32)
    tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)

    def ours_fwd():
        F.conv2d(x, w, None, stride, padding)

    def ours_fwd_bwd():
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        F.conv2d(xt, wt, None, stride, padding).backward(g)

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, None, stride, padding)

    def torch_fwd_bwd():
        xt, wt = tx.clone().requires_grad_(), tw.clone().requires_grad_()
        torch.nn.functional.conv2d(xt, wt, None, stride, padding).backward(tg)

    rows = []
    for what, ours, theirs in (("forward", ours_fwd, torch_fwd), ("fwd+bwd", ours_fwd_bwd, torch_fwd_bwd)):
        rows.append((name, what, *best_times((ours, theirs), repeats)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    rows = []
    for name, x_shape, w_shape, stride, padding in CASES:
        rows += bench_case(rng, name, x_shape, w_shape, stride, padding, args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, numpy {np.__version__}")
    print(f"{'case':36s} {'pass':8s} {'mrcnn_np':>10s} {'torch':>10s} {'ratio':>7s}")
    for name, what, t_ours, t_torch in rows:
        print(f"{name:36s} {what:8s} {t_ours * 1e3:8.1f}ms {t_torch * 1e3:8.1f}ms {t_ours / t_torch:6.2f}x")


if __name__ == "__main__":
    main()
