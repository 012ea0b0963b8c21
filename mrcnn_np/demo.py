"""The main job, ``mrcnn-np demo``: generate shapes, train a small Mask R-CNN from scratch on
the CPU, evaluate it with pycocotools, draw what it learned.

    generate   OUT/data/train (seed s) and OUT/data/test (seed s + 1): PNG images +
               COCO JSON with RLE masks (mrcnn_np.data.shapes.write_shapes_dataset)
    read       both back with the COCO reader users train their own data with
    train      config.tiny() at the images' size, SGD + warm-up + step decay
               (mrcnn_np.train), log and checkpoints in OUT/
    evaluate   COCO bbox and segm AP on the held-out images (mrcnn_np.evaluate)
    draw       OUT/loss_curve.png, OUT/predictions.png (ground truth above predictions)

``DemoSettings(task="detection")`` (``mrcnn-np demo --task detection``) runs the same demo with
Faster R-CNN, the same configuration without the mask branch: bbox AP only.
``DemoSettings(variant="v2")`` (``--variant v2``) trains the model with torchvision's v2 recipe,
``variant="c4"`` the paper's ResNet-C4 model.

With the defaults (2100 iterations, an FPN of 32 channels and a mask head of 16: see
:class:`DemoSettings`) it took 281 s from a fresh clone at d7eb1df on two idle CPU cores (351 s and 370 s at
98c1431 and 9f94736, on a machine then 1.3x-1.6x slower than on its quietest day; the widths before took 453 s
for 2500 iterations at 99a9054; timed in one process, their training iteration takes 1.57x as long as this
model's), and reached COCO AP@0.5 of 0.977 for boxes and 0.971 for masks on the 100 held-out images
(AP@[.5:.95] 0.788 and 0.797); the three runs gave the same weights, bit for bit. The shipped model of
:mod:`mrcnn_np.pretrained` is the first. While the data is
written, a second process compiles the numba kernels (:func:`warm_kernels`): the first iteration of a
fresh install took 0.6 s instead of 7 s. At 2100 iterations, runs of the widths before reached 0.907
to 0.961 for boxes. It exits with status 1 below :data:`DEMO_MIN_AP50` for either.
Everything is seeded: the same settings give the same numbers on the same machine (the kernel
threads' count, by default the cores, the BLAS library and the host change the last bits, and so
the numbers a little).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEMO_MIN_AP50 = 0.9  # ``mrcnn-np demo`` exits with status 1 below this bbox or segm AP@0.5
TASKS = ("segmentation", "detection")  # Mask R-CNN, Faster R-CNN (the model without its mask branch)
# torchvision's maskrcnn_resnet50_fpn recipe, its _v2 (mrcnn_np.config.V2), and the paper's ResNet-C4 model (C4)
VARIANTS = ("v1", "v2", "c4")


@dataclass
class DemoSettings:
    # 2100 until stop 31, when the model had an FPN of 64 channels and a mask head of 32: four runs of the same
    # recipe at 2100 reached box AP@0.5 of 0.915 to 0.958, and one from a clean clone 0.907 (masks 0.900), under
    # the bar; 2500 from stop 31 to stop 36. The narrower model of stop 35 (fpn_channels, mask_channels) learns
    # sooner: at 2100 iterations, seeds 0 and 1 (one core each) reached 0.971 / 0.973 and 0.979 / 0.980 (boxes /
    # masks; AP@[.5:.95] 0.78 / 0.77 and 0.79 / 0.78), where at 2500 they had reached 0.981 / 0.976 and 0.959 / 0.956
    iterations: int = 2100
    batch_size: int = 4
    # 4x torchvision's linearly scaled rate (0.02 per 16 images): training from scratch with
    # BatchNorm takes it and needs it to converge in minutes; 0.04 diverged at iteration ~600
    lr: float = 0.02
    train_images: int = 3000
    test_images: int = 100
    image_size: int = 128  # square images; the model's min_size = max_size = image_size (no resizing)
    max_instances: int = 4
    # the data (mrcnn_np.data.shapes.random_image): shapes partly hide each other, but a new shape
    # may hide at most 30% of an earlier one; an instance less than half visible is clutter, not an
    # annotation; colours at least 0.4 apart. With unrestricted overlap, 10% visibility and 0.3
    # contrast (random_image's defaults) many instances are ambiguous slivers and the same recipe
    # reached held-out AP@0.5 of only 0.71 / 0.67 (boxes / masks)
    max_overlap: float = 0.3
    min_visible: float = 0.5
    min_contrast: float = 0.4
    seed: int = 0
    task: str = "segmentation"  # "segmentation": Mask R-CNN; "detection": Faster R-CNN (mask_branch=False)
    # "v2": torchvision's v2 recipe (BatchNorm in FPN and heads, 2 RPN convs, conv box head); "c4": ResNet-C4
    variant: str = "v1"
    # The model's widths. fpn_channels: the FPN's channels, so also the RPN head's and those of the features
    # the RoI heads pool; mask_channels: each of the mask head's four convs and its deconvolution. Until
    # stop 35 they were 64 (tiny()'s) and 32 (EARLIER_WIDTHS, which the stored experiments ran with). The
    # demo's late training iteration (trained weights, the same batches, 30 interleaved pairs) takes 0.64x
    # as long with 32 and 16 (0.78x with 32 and 32). Two runs of 2500 iterations (seeds 0 and 1, one core
    # each) reached held-out AP@0.5 0.981 / 0.976 and 0.959 / 0.956 (boxes / masks), AP@[.5:.95] 0.80 /
    # 0.80 and 0.76 / 0.77; the widths before, 0.963 / 0.963 (seed 0). With 32 and 32, four seeds reached
    # 0.941-0.959 / 0.935-0.957; with a mask head of two 16-channel convs, 0.978 / 0.979 and 0.941 / 0.924
    # but AP@[.5:.95] for masks only 0.66-0.70
    fpn_channels: int = 32
    mask_channels: int = 16

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"DemoSettings: task must be one of {TASKS}, got {self.task!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"DemoSettings: variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("fpn_channels", "mask_channels"):  # checked here, before the demo writes its data
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DemoSettings: {name} must be a positive int, got {value!r}")

    def data(self) -> dict:
        """Keyword arguments of :func:`mrcnn_np.data.shapes.write_shapes_dataset` besides ``n`` and ``seed``."""
        return {"height": self.image_size, "width": self.image_size, "max_instances": self.max_instances,
                "max_overlap": self.max_overlap, "min_visible": self.min_visible, "min_contrast": self.min_contrast}

    def config(self):
        """The model: :func:`mrcnn_np.config.tiny` for 3 shape classes at the images' own size, made
        cheaper where an iteration spends its time: an FPN of :attr:`fpn_channels` (32), and in the RoI
        heads a mask head of :attr:`mask_channels` (16; 4 convs as torchvision's, narrower), 64 sampled
        RoIs per image (at most 16 positives, the mask head's
        input) and 150 proposals per image in training: an iteration takes about 0.6x as long as with
        128 RoIs and 300 proposals. For ``task="detection"`` the same without the mask branch; for
        ``variant="v2"`` the same with :data:`mrcnn_np.config.V2`'s settings, the conv box head 32
        channels wide; for ``variant="c4"`` the ResNet-C4 model
        (:func:`mrcnn_np.config.tiny_c4`: res5 is the box and mask head) with the same RoI and proposal counts."""
        from .config import V2, tiny, tiny_c4

        variant = {"v1": {}, "v2": {**V2, "box_conv_layers": (32, 32, 32, 32)}, "c4": {}}[self.variant]
        build = tiny_c4 if self.variant == "c4" else tiny
        return build(num_classes=4, min_size=self.image_size, max_size=self.image_size, fpn_channels=self.fpn_channels,
                     mask_layers=(self.mask_channels,) * 4, mask_dim_reduced=self.mask_channels,
                     box_batch_size_per_image=64,
                     rpn_post_nms_top_n={"training": 150, "testing": 100}, mask_branch=self.task == "segmentation",
                     **variant)

    def recipe(self):
        """Warm-up over the first 10% of the iterations, lr / 10 at 75% and again at 92%."""
        from .train import TrainRecipe

        n = self.iterations
        return TrainRecipe(iterations=n, batch_size=self.batch_size, lr=self.lr, warmup_iters=max(1, n // 10),
                           milestones=(int(0.75 * n), int(0.92 * n)), seed=self.seed,
                           checkpoint_every=max(1, n // 3))


# the demo model's widths until stop 35, when they became DemoSettings fields: the stored experiments
# (benchmarks/compare_architectures.py, mrcnn-np ablate --budget full, benchmarks/small_objects_anchors.py) ran
# with them and their scripts keep them; a recorded ``asdict(DemoSettings(...))`` without the fields ran with these
EARLIER_WIDTHS = {"fpn_channels": 64, "mask_channels": 32}


def recorded_settings(recorded: dict) -> dict:
    """A run's recorded ``asdict(DemoSettings(...))`` completed with the fields added since it ran, at the values
    they had then (:data:`EARLIER_WIDTHS`)."""
    return {**EARLIER_WIDTHS, **recorded}


def run_shapes_demo(settings: DemoSettings | None = None, out_dir="runs/demo", progress: bool = True,
                    overwrite: bool = False, device: str = "cpu") -> dict:
    """Run the demo; returns ``{"metrics": {"bbox": {...}, "segm": {...}}, "seconds", "train_seconds",
    "files": {name: path}}`` (no "segm" for ``task="detection"``). ``device``: ``"cpu"`` or ``"cuda"``. An
    ``out_dir`` that holds an earlier run is a :class:`~mrcnn_np.train.RunExistsError` unless ``overwrite``
    (checked before anything is written)."""
    import json

    from .data.coco import CocoDataset
    from .data.shapes import SHAPES, write_shapes_dataset
    from .evaluate import evaluate_model
    from .model.mask_rcnn import MaskRCNN
    from .train import prepare_run_folder, read_log, train
    from .viz import plot_losses, plot_predictions

    s = settings or DemoSettings()
    out = Path(out_dir)
    prepare_run_folder(out, resuming=False, overwrite=overwrite)  # refuse (or clear) an earlier run first
    start = time.perf_counter()
    data = out / "data"
    # numba compiles the CPU kernels while the data is written (on the other core), for training to find in its cache
    warming = _start_warming(s) if device == "cpu" else None
    try:
        train_json = write_shapes_dataset(data / "train", s.train_images, seed=s.seed, progress=progress, **s.data())
        test_json = write_shapes_dataset(data / "test", s.test_images, seed=s.seed + 1, progress=progress, **s.data())
    except BaseException:  # a failed or interrupted write stops it at once
        _finish_warming(warming, wait=False)
        raise
    _finish_warming(warming)
    train_set, test_set = CocoDataset(train_json, strict=True), CocoDataset(test_json, strict=True)

    model = MaskRCNN(s.config(), rng=s.seed)
    result = train(model, train_set, s.recipe(), out, device=device, progress=progress)
    metrics, outputs = evaluate_model(model, test_set, progress=progress)

    names = ["background", *SHAPES]
    model_name = ("Mask R-CNN" if s.task == "segmentation" else "Faster R-CNN") + {"v1": "", "v2": " v2",
                                                                                   "c4": " C4"}[s.variant]
    ap50 = ", ".join(f"{k} AP@0.5 {v['AP50']:.3f}" for k, v in metrics.items())
    n = min(8, len(test_set))
    samples = [test_set[i] for i in range(n)]
    files = {
        "weights": str(result.weights),
        "log": str(out / "log.jsonl"),
        "loss curve": plot_losses(read_log(out), out / "loss_curve.png", title=f"{model_name} (tiny) on shapes"),
        "predictions": plot_predictions(
            [im for im, _ in samples], outputs[:n], out / "predictions.png", [t for _, t in samples], names,
            title=f"Held-out images: {ap50}"),
        "metrics": str(out / "metrics.json"),
    }
    seconds = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps({"settings": asdict(s), "recipe": asdict(s.recipe()),
                                                  "metrics": metrics, "train_seconds": result.seconds,
                                                  "seconds": seconds}, indent=1))
    return {"metrics": metrics, "seconds": seconds, "train_seconds": result.seconds, "files": files}


# --- compiling the kernels while the data is written --------------------------------------------
WARM_UP_SECONDS = 60  # the longest the demo waits for warm_kernels once its data is written (then stops it)


def warm_kernels(settings: DemoSettings | None = None) -> None:
    """One training iteration of ``settings``' model (the demo's by default) on four in-memory shapes images of
    its size, then its inference on them: numba compiles every CPU kernel these call, with the types the demo's
    data gives them, and writes them to its on-disk cache (``cache=True``), from which a later process loads them
    in a fraction of the time. :func:`run_shapes_demo` runs this in a second process while it writes its data,
    so that the first iteration of a fresh install loads the kernels instead of compiling them (about 7 s on the
    2-core machine)."""
    from .checks import describe
    from .data import DataLoader, shapes_dataset
    from .model.mask_rcnn import MaskRCNN
    from .train import make_optimizer, train_step

    s = DemoSettings() if settings is None else settings
    if not isinstance(s, DemoSettings):
        raise TypeError(f"warm_kernels: settings must be a DemoSettings or None, got {describe(s)}")
    model = MaskRCNN(s.config(), rng=s.seed)
    optimizer, _ = make_optimizer(model, s.recipe())
    images, targets = DataLoader(shapes_dataset(4, seed=s.seed, **s.data()), 4, shuffle=False).batch(0)
    train_step(model, optimizer, images, targets, rng=0)
    model.eval()  # and the evaluation's (an untrained model's scores still pass box_score_thresh: masks are pasted)
    model(images)


# the second process: kernel threads and BLAS on one core each, so that the data is written at full speed
_WARM_UP_COMMAND = ("import json, sys; from mrcnn_np.kernels import threads; threads.THREADS = 1; "
                    "from mrcnn_np.demo import DemoSettings, warm_kernels; "
                    "warm_kernels(DemoSettings(**json.loads(sys.argv[1])))")


def _start_warming(s: DemoSettings):
    """:func:`warm_kernels` for ``s`` in a second Python process (its output discarded); None where it cannot start."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        return subprocess.Popen([sys.executable, "-c", _WARM_UP_COMMAND, json.dumps(asdict(s))], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no second process: training compiles the kernels itself
        return None


def _finish_warming(process, wait: bool = True) -> None:
    """Wait for the process of :func:`_start_warming` (at most :data:`WARM_UP_SECONDS`; not at all unless ``wait``),
    then stop it if it still runs: its work only saves time, so its failure or absence changes nothing else."""
    import subprocess

    if process is None:
        return
    try:
        if wait:
            process.wait(timeout=WARM_UP_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also on Ctrl-C while waiting
        if process.poll() is None:
            process.kill()
            process.wait()
