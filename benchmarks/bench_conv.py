"""Every convolution of ResNet-50-FPN Mask R-CNN inference at 800x800, timed: ours against sgemm
and torch, measured in the same run.

The shapes are recorded from the model itself: one inference of ``config.resnet50_fpn()`` on a
3x800x800 image through the backbone, the FPN and the RPN head, plus the mask head and mask
predictor at 100 RoIs (the detections of a trained model). For each distinct shape it prints

    ours     GFLOP/s of F.conv2d / F.conv_transpose2d (impl="auto": the tiled kernels on the CPU; the
             model's inference also folds norms and fuses ReLUs into them, which this leaves out),
             counted as the direct convolution's FLOPs; a 3x3 stride-1 conv marked "W" runs as
             Winograd's F(2x2, 3x3) (mrcnn_np.kernels.winograd), which does 4/9 of them, so it can
             pass sgemm's speed. Its weight transform is computed once, outside the timing: every 3x3
             conv of the model runs through mrcnn_np.nn.fused.conv_norm, which keeps it on the conv
             (F.conv2d alone would transform the weight on every call: most of a 13x13 map's time)
    spec     GFLOP/s of the im2col specification (impl="numpy")
    sgemm    GFLOP/s of one NumPy matrix product of the conv's (M, N, K) = (C_out, N*Ho*Wo, C_in*kh*kw):
             the BLAS speed the conv could reach at best, with BLAS on every core (as the spec too;
             ours holds BLAS to one thread and shares its tiles out over the cores instead)
    ours/sgemm, and torch's time (torch.nn.functional.conv2d, oneDNN) / ours

Calls are interleaved (ours, spec, sgemm, torch, ours, ...) and the best of N taken, so every
contender sees the same machine load. Times are of forward passes inside ``no_grad``. The last line
gives the lowest ours/sgemm of the 1x1 and 3x3 convs: of all, of those ResNet-50 and the FPN run (a
shape the RPN head shares with the FPN counts in both), and of those the RPN head runs. The RPN head's
1x1s (256 -> 3 and 12 channels, 0.3-15 MFLOP) are one small BLAS call each, whose time is mostly the
call's own: torch's conv, too, runs them far below sgemm's GFLOP/s.

N is 10 by default: on the 2-core machine, whose L3 cache and memory are shared with other machines, a
row's best of 5 moved by 10-25 points of ours/sgemm from run to run, and a different row fell lowest
each time. ``--runs R`` measures every shape R times over and gives each 1x1 and 3x3 conv's median
ours/sgemm over the runs, the lowest of them, and each run's lowest.

    python benchmarks/bench_conv.py [--repeats 10] [--runs 1] [--size 800] [--rois 100] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mrcnn_np import no_grad
from mrcnn_np.config import resnet50_fpn
from mrcnn_np.kernels import conv as conv_kernels
from mrcnn_np.kernels import threads as kernel_threads
from mrcnn_np.kernels import winograd
from mrcnn_np.model.mask_rcnn import MaskRCNN
from mrcnn_np.nn import conv as conv_module
from mrcnn_np.nn import functional as F
from mrcnn_np.nn.fused import fusion

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times  # noqa: E402


def recorded_shapes(size: int, rois: int) -> tuple[Counter, dict]:
    """``{(op, N, C_in, H, W, C_out, kh, kw, stride, padding): calls}`` of one inference at ``size``, and for
    each shape the stages that call it (of "backbone" (ResNet-50 and FPN), "rpn" (its head), "mask")."""
    calls, stages = Counter(), {}
    stage = [None]
    real = {name: getattr(F, name) for name in ("conv2d", "conv_transpose2d")}

    def recorder(name):
        def record(input, weight, bias=None, stride=1, padding=0, *args, **kwargs):
            x = getattr(input, "data", input)
            shape = (name, *x.shape, weight.shape[0 if name == "conv2d" else 1], *weight.shape[2:], stride, padding)
            calls[shape] += 1
            stages.setdefault(shape, set()).add(stage[0])
            return real[name](input, weight, bias, stride, padding, *args, **kwargs)
        return record

    model = MaskRCNN(resnet50_fpn(), rng=0).eval()
    image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for name in real:
        setattr(F, name, recorder(name))
    try:
        with no_grad(), fusion(False):  # every conv through F.conv2d (inference otherwise fuses most of them)
            stage[0] = "backbone"
            features = model.backbone(image)
            stage[0] = "rpn"
            model.rpn.head(list(features.values()))
            stage[0] = "mask"
            mask_features = np.zeros((rois, model.backbone.out_channels, 14, 14), np.float32)
            model.roi_heads.mask_predictor(model.roi_heads.mask_head(mask_features))
    finally:
        for name, fn in real.items():
            setattr(F, name, fn)
    return calls, stages


_BLAS = []  # threadpoolctl's controllers of the loaded BLAS libraries, looked up once (a lookup takes ~ms)


@contextlib.contextmanager
def blas_threads(n: int):
    """BLAS on ``n`` threads inside the block (mrcnn_np's kernels hold it to one for the process)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.extend(ThreadpoolController().select(user_api="blas").lib_controllers)
    libraries = _BLAS
    before = [library.num_threads for library in libraries]
    for library in libraries:
        library.set_num_threads(n)
    try:
        yield
    finally:
        for library, count in zip(libraries, before, strict=True):
            library.set_num_threads(count)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1,
                        help="measure every shape this many times over, then give each 1x1 and 3x3 conv's "
                             "median ours/sgemm over the runs")
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--rois", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="one repeat, for a check that the script runs")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.runs < 1:
        parser.error("--repeats and --runs must be at least 1")
    repeats = 1 if args.quick else args.repeats
    shapes, stages = recorded_shapes(args.size, args.rois)
    rng = np.random.default_rng(0)
    cores = torch.get_num_threads()
    kernel_threads.THREADS = cores
    print(f"torch {torch.__version__}, {cores} threads (mrcnn_np's convolutions {kernel_threads.cpu_threads()}, "
          f"sgemm's BLAS {cores}), numpy {np.__version__}; "
          f"best of {repeats}, calls interleaved; float32 forward")
    runs = [one_run(shapes, stages, repeats, cores, rng) for _ in range(args.runs)]
    if args.runs > 1:
        print(f"median ours/sgemm over {args.runs} runs of each 1x1 and 3x3 conv, the lowest:")
        for key, label in (("backbone", "ResNet-50 and the FPN run"), ("rpn", "the RPN head runs")):
            medians = {shape: float(np.median([run[shape] for run in runs]))
                       for shape in runs[0] if key in stages[shape]}
            shape = min(medians, key=medians.get)
            print(f"  of those {label}: {medians[shape]:.0%} ({shape[2]} -> {shape[5]} channels, "
                  f"{shape[6]}x{shape[7]}/{shape[8]}, {shape[3]}x{shape[4]}); each run's lowest: "
                  + ", ".join(f"{min(run[s] for s in medians):.0%}" for run in runs))


def one_run(shapes: Counter, stages: dict, repeats: int, cores: int, rng) -> dict:
    """Times every shape once over (best of ``repeats``) and prints the table; returns ``{shape: ours/sgemm}``
    of the 1x1 and 3x3 convs."""
    ratios = {}
    header = (f"{'op':>6s} {'N':>4s} {'C_in':>5s} {'HxW':>9s} {'C_out':>5s} {'k':>3s} {'s':>2s} {'W':>1s} "
              f"{'calls':>5s} {'GFLOP':>6s} {'ours':>6s} {'spec':>6s} {'sgemm':>6s} {'ours/sgemm':>10s} "
              f"{'torch/ours':>10s}")
    print(header)
    total = {"ours": 0.0, "spec": 0.0, "torch": 0.0, "sgemm": 0.0}
    worst = {"all": 1.0, "backbone": 1.0, "rpn": 1.0}  # the lowest ours/sgemm of the 1x1 and 3x3 convs: all, by stage
    for (op, N, C, H, W, C_out, kh, kw, stride, padding), count in sorted(shapes.items(), key=lambda kv: kv[0][1:]):
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        if op == "conv2d":
            w = rng.standard_normal((C_out, C, kh, kw), dtype=np.float32) * 0.01
            out_hw = [(s + 2 * padding - k) // stride + 1 for s, k in ((H, kh), (W, kw))]
            M, Ncols, K = C_out, N * out_hw[0] * out_hw[1], C * kh * kw
            torch_fn = torch.nn.functional.conv2d
        else:
            w = rng.standard_normal((C, C_out, kh, kw), dtype=np.float32) * 0.01
            # the transposed conv is the product (C_out*kh*kw, C_in) @ (C_in, N*H*W) then a fold
            M, Ncols, K = C_out * kh * kw, N * H * W, C
            torch_fn = torch.nn.functional.conv_transpose2d
        fn = getattr(conv_module, op)
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, Ncols), dtype=np.float32)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)

        # a Winograd conv as the model runs it (conv_norm): the weight's transform kept from an earlier call
        fast = op == "conv2d" and winograd.applies(w.shape, (stride, stride), (1, 1), Ncols)
        transformed = winograd.weight_transform(w) if fast else None

        def ours(fn=fn, x=x, w=w, stride=stride, padding=padding, transformed=transformed):
            if transformed is not None:
                return conv_kernels.conv2d_forward_tiled(x, w, None, (1, 1), (padding, padding), (1, 1),
                                                         winograd=True, transformed=transformed)
            with no_grad():
                return fn(x, w, None, stride, padding)

        def spec(fn=fn, x=x, w=w, stride=stride, padding=padding):
            with no_grad(), blas_threads(cores):
                return fn(x, w, None, stride, padding, impl="numpy")

        def sgemm(a=a, b=b):
            with blas_threads(cores):
                return a @ b

        def run_torch(torch_fn=torch_fn, tx=tx, tw=tw, stride=stride, padding=padding):
            with torch.no_grad():
                return torch_fn(tx, tw, None, stride, padding)

        t_ours, t_spec, t_gemm, t_torch = best_times((ours, spec, sgemm, run_torch), repeats,
                                                     settle=0.12)
        flop = 2.0 * M * Ncols * K
        ratio = t_gemm / t_ours
        if op == "conv2d" and kh == kw and kh in (1, 3):
            ratios[(op, N, C, H, W, C_out, kh, kw, stride, padding)] = ratio
            for key in ("all", *stages[(op, N, C, H, W, C_out, kh, kw, stride, padding)]):
                if key in worst:
                    worst[key] = min(worst[key], ratio)
        for key, t in (("ours", t_ours), ("spec", t_spec), ("torch", t_torch), ("sgemm", t_gemm)):
            total[key] += count * t
        print(f"{'conv' if op == 'conv2d' else 'deconv':>6s} {N:4d} {C:5d} {f'{H}x{W}':>9s} {C_out:5d} {kh:3d} "
              f"{stride:2d} {'W' if fast else '':>1s} "
              f"{count:5d} {flop / 1e9:6.1f} {flop / t_ours / 1e9:6.0f} {flop / t_spec / 1e9:6.0f} "
              f"{flop / t_gemm / 1e9:6.0f} {ratio:9.0%} {t_torch / t_ours:9.2f}x", flush=True)
    print(f"all convs of one inference (each shape x its calls): ours {total['ours']:.3f}s, "
          f"spec {total['spec']:.3f}s, sgemm {total['sgemm']:.3f}s, torch {total['torch']:.3f}s; "
          f"ours/torch {total['ours'] / total['torch']:.2f}x, ours/spec {total['ours'] / total['spec']:.2f}x")
    print(f"lowest ours/sgemm among the 1x1 and 3x3 convs: {worst['all']:.0%}; of those ResNet-50 and the FPN run: "
          f"{worst['backbone']:.0%}; of those the RPN head runs: {worst['rpn']:.0%}")
    return ratios


if __name__ == "__main__":
    main()
