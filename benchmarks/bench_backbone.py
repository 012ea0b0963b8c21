"""Time the ResNet-50-FPN forward pass: mrcnn_np against torchvision, same weights, same run.

Input 1x3x800x800 float32 (the size torchvision's transform gives a typical image),
random weights, FrozenBN with random statistics, inference (no gradients). Prints
best-of-N wall times (calls interleaved) and the ratio mrcnn_np / torchvision, plus our
time per stage (stem + layer1..4, FPN) from one extra run.

    python benchmarks/bench_backbone.py [--size 800] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np import no_grad
from mrcnn_np.convert import load_torchvision_state_dict
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402


def stage_times(model, x) -> dict[str, float]:
    """Our wall time per stage for one forward pass."""
    body, times = model.body, {}
    with no_grad():
        t0 = time.perf_counter()
        h = F.max_pool2d(F.relu(body.bn1(body.conv1(x))), 3, 2, 1)
        times["stem"] = time.perf_counter() - t0
        feats = []
        for i in range(1, 5):
            t0 = time.perf_counter()
            h = getattr(body, f"layer{i}")(h)
            feats.append(h)
            times[f"layer{i}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fpn(feats)
        times["fpn"] = time.perf_counter() - t0
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    tv = tv_resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3).eval()
    ours = resnet_fpn_backbone("resnet50")
    load_torchvision_state_dict(ours, tv)
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    tx = torch.from_numpy(x)

    def run_ours():
        with no_grad():
            ours(x)

    def run_torch():
        with torch.no_grad():
            tv(tx)

    t_ours, t_torch = best_times((run_ours, run_torch), args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    print(f"ResNet-50-FPN forward, 1x3x{args.size}x{args.size} float32, best of {args.repeats}")
    print(f"{'mrcnn_np':>12s} {'torchvision':>12s} {'ratio':>7s}")
    print(f"{t_ours:11.3f}s {t_torch:11.3f}s {t_ours / t_torch:6.2f}x")
    print("mrcnn_np per stage (one run):")
    for name, t in stage_times(ours, x).items():
        print(f"  {name:7s} {t:7.3f}s")


if __name__ == "__main__":
    main()
