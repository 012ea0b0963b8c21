"""Time one training iteration (losses, backward, SGD step): mrcnn_np against torchvision + torch.optim.

``config.tiny()`` in float32 (the demo's network, which the demo narrows: an FPN of 32, lighter RoI heads): a batch
of generated shapes images (default 4 images of 128x128, min_size = max_size = the image size), torchvision's twin
of the configuration with the same weights (:func:`mrcnn_np.reference.twins.twin_pair`), both optimisers
from the same recipe, the same batch. Sampling is not replayed: each library draws its own
anchors and RoIs (the same numbers of them). Prints best-of-N wall times (calls interleaved),
the ratio mrcnn_np / torchvision, and each library's iteration split into forward (the losses),
backward and optimiser step (best of N of each part).

    python benchmarks/bench_train.py [--repeats 5] [--batch-size 4] [--image-size 128] [--threads 2]
        [--config tiny|tiny_v2|tiny_c4] [--conv-threads N]

``--config`` picks the architecture (torchvision's v2 recipe, or the ResNet-C4 model against its
twin assembled from torchvision's modules), each preset as it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

from mrcnn_np import Tensor
from mrcnn_np.config import preset
from mrcnn_np.data import DataLoader, shapes_dataset
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.reference.training import torchvision_optimizer, torchvision_train_step
from mrcnn_np.reference.twins import targets_to_torch, to_torch, twin_pair
from mrcnn_np.train import TrainRecipe, make_optimizer, train_step

sys.path.insert(0, str(Path(__file__).parent))
from timing import SETTLE_SECONDS, best_times  # noqa: E402


def phase_times(forward, backward, step, repeats: int) -> list[float]:
    """Best-of-``repeats`` wall times of the parts of one iteration: ``loss = forward()``,
    ``backward(loss)``, ``step()``."""
    best = [float("inf")] * 3
    for _ in range(repeats):
        time.sleep(SETTLE_SECONDS)  # the other library's idle threads let go of the cores first
        t0 = time.perf_counter()
        loss = forward()
        t1 = time.perf_counter()
        backward(loss)
        t2 = time.perf_counter()
        step()
        t3 = time.perf_counter()
        best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128, help="square shapes images, also min/max_size")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads (default: %(default)s)")
    parser.add_argument("--config", choices=("tiny", "tiny_v2", "tiny_c4"), default="tiny")
    parser.add_argument("--conv-threads", type=int, default=None,
                        help="threads of mrcnn_np's convolutions (default: --threads; 1: serial tiles on BLAS's "
                             "own threads)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kernel_threads.THREADS = args.conv_threads or args.threads
    # numba's OpenMP kernels set the OpenMP thread count (torch's too) to numba's at every launch
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))

    config = preset(args.config, min_size=args.image_size, max_size=args.image_size)
    dataset = shapes_dataset(args.batch_size, seed=0, height=args.image_size, width=args.image_size)
    images, targets = DataLoader(dataset, args.batch_size, shuffle=False, flip_prob=0.0).batch(0)
    tv, ours = twin_pair(config, image=images[0])
    tv_images, tv_targets = to_torch(images, config.dtype), targets_to_torch(targets)
    recipe = TrainRecipe(batch_size=args.batch_size)  # the warm-up's small lr: weights barely move while timing
    optimizer, _ = make_optimizer(ours, recipe)
    tv_optimizer, _ = torchvision_optimizer(tv, recipe)
    ours.train()
    tv.train()

    def run_ours():
        return train_step(ours, optimizer, images, targets, rng=0)

    def run_torch():
        return torchvision_train_step(tv, tv_optimizer, tv_images, tv_targets)

    t_ours, t_torch = best_times((run_ours, run_torch), args.repeats)

    def ours_forward():
        optimizer.zero_grad()
        return sum(ours.loss(images, targets, rng=0).values(), Tensor(np.zeros((), dtype=ours.dtype)))

    def torch_forward():
        tv_optimizer.zero_grad()
        return sum(tv(tv_images, tv_targets).values())

    parts_ours = phase_times(ours_forward, lambda loss: loss.backward(), optimizer.step, args.repeats)
    parts_torch = phase_times(torch_forward, lambda loss: loss.backward(), tv_optimizer.step, args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (numba {numba.get_num_threads()}, "
          f"mrcnn_np's convolutions {kernel_threads.cpu_threads()}), numpy {np.__version__}")
    print(f"Mask R-CNN {args.config} (ResNet {'-'.join(map(str, config.backbone_layers))} width "
          f"{config.backbone_width}, {'C4' if config.architecture == 'c4' else f'FPN {config.fpn_channels}'}), "
          f"one training iteration, batch {args.batch_size} x 3x{args.image_size}x"
          f"{args.image_size} float32, best of {args.repeats}")
    print(f"{'':18s} {'mrcnn_np':>10s} {'torchvision':>12s} {'ratio':>7s}")
    rows = [("iteration", t_ours, t_torch)]
    rows += list(zip(("  forward (losses)", "  backward", "  optimizer step"), parts_ours, parts_torch, strict=True))
    for name, a, b in rows:
        print(f"{name:18s} {a * 1e3:8.1f}ms {b * 1e3:10.1f}ms {a / b:6.2f}x")


if __name__ == "__main__":
    main()
