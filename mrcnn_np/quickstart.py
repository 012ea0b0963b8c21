"""Quick start: train a small CNN classifier, built only from :mod:`mrcnn_np.nn`, on shapes.

The foundation demo of the project (``mrcnn-np demo``) until the Mask R-CNN demo exists.
It runs the layers (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Linear), the autograd tape,
the cross-entropy loss, SGD and the warm-up schedule end to end on the procedural shapes
of :mod:`mrcnn_np.data.shapes`::

    images (N, 3, S, S) -> standardize -> B x [conv 3x3 -> BN -> ReLU -> maxpool 2]
        -> (N, C, S/2^B, S/2^B) -> mean over H, W -> (N, C) -> linear -> logits (N, 3)

Everything is float32 on the CPU and seeded, so a seed reproduces a run exactly. With
the defaults it trains in about a minute on two CPU cores and classifies nearly all of
the held-out images correctly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import nn
from .autograd import no_grad
from .data.shapes import SHAPES, classification_set
from .nn import functional as F
from .nn.optim import SGD, WarmupMultiStepLR


class ShapeClassifier(nn.Module):
    """``x`` array (N, 3, S, S) in [0, 1] -> logits (N, len(SHAPES)).

    One conv block per entry of ``widths`` (its output channels), each halving H and W,
    so S must be a multiple of ``2 ** len(widths)``. ``rng`` (a seed or Generator)
    initialises the layers in order.
    """

    def __init__(self, widths=(32, 64, 128, 256), rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        blocks, c_in = [], 3
        for c_out in widths:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng),
                       nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c_in, len(SHAPES), rng=rng)

    def forward(self, x):
        x = standardize(x)  # (N, 3, S, S), per image: zero mean per channel, unit variance
        x = self.features(x)  # (N, 3, S, S) -> (N, C, h, w), h = w = S / 2^B
        x = F.mean(x, axis=(2, 3))  # global average pool: (N, C, h, w) -> (N, C)
        return self.classifier(x)  # (N, C) -> (N, 3)


def standardize(images: np.ndarray) -> np.ndarray:
    """Per image, remove the mean colour and scale to unit variance: (N, 3, S, S) -> same.

    Shapes come in random colours on random backgrounds; subtracting each image's mean
    colour (per channel, over H, W) and dividing by its standard deviation (over C, H,
    W) leaves the network mostly geometry to learn.
    """
    centred = images - images.mean(axis=(2, 3), keepdims=True)
    return centred / (centred.std(axis=(1, 2, 3), keepdims=True) + 1e-3)


def predict(model: ShapeClassifier, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Class indices (N,) for ``images`` (N, 3, S, S), in eval mode without a tape."""
    model.eval()
    with no_grad():
        logits = [model(images[i : i + batch_size]).data for i in range(0, len(images), batch_size)]
    return np.concatenate(logits).argmax(axis=1)  # (N, 3) -> (N,)


def train_shape_classifier(steps: int = 300, batch_size: int = 64, image_size: int = 32,
                           seed: int = 0, progress: bool = True, out_dir=None, *,
                           n_test: int = 300, widths=(32, 64, 128, 256), lr: float = 0.05) -> dict:
    """Train a :class:`ShapeClassifier` for ``steps`` SGD steps; test it on held-out images.

    Every step draws a fresh batch of ``batch_size`` one-shape images of ``image_size``
    pixels square (a multiple of ``2 ** len(widths)``), so no image is seen twice; the
    test set holds ``n_test`` other images. SGD with momentum 0.9 and weight decay 1e-4,
    learning rate ``lr`` warmed up linearly over the first 10% of the steps and divided
    by 10 at 70% and again at 90%.

    ``out_dir``: if given, ``loss_curve.png`` and ``predictions.png`` are written there.
    Returns ``{"test_accuracy", "final_loss" (mean training loss of the last 10% of the
    steps), "seconds" (wall time of the whole run), "figures" (paths written)}``.
    """
    if steps < 1 or batch_size < 2 or n_test < 1:
        raise ValueError(
            f"need steps >= 1, batch_size >= 2, n_test >= 1; got {steps}, {batch_size}, {n_test}"
        )
    if image_size < 1 or image_size % 2 ** len(widths):
        raise ValueError(
            f"image_size must be a positive multiple of {2 ** len(widths)} for {len(widths)} "
            f"pooling blocks, got {image_size}"
        )
    start = time.perf_counter()
    train_seed, test_seed, init_seed = np.random.SeedSequence(seed).spawn(3)
    train_rng = np.random.default_rng(train_seed)
    test_images, test_labels = classification_set(n_test, image_size, test_seed)

    model = ShapeClassifier(widths, rng=init_seed)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = WarmupMultiStepLR(optimizer, milestones=[int(0.7 * steps), int(0.9 * steps)],
                                  warmup_factor=0.01, warmup_iters=max(1, steps // 10))
    losses = []
    model.train()
    bar = tqdm(range(steps), desc="train", unit="step", disable=not progress)
    for _ in bar:
        images, labels = classification_set(batch_size, image_size, train_rng)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()

    predicted = predict(model, test_images)
    accuracy = float((predicted == test_labels).mean())
    figures = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        figures = [
            _plot_losses(losses, out_dir / "loss_curve.png"),
            _plot_predictions(test_images, test_labels, predicted, accuracy,
                              out_dir / "predictions.png"),
        ]
    return {
        "test_accuracy": accuracy,
        "final_loss": float(np.mean(losses[-max(1, steps // 10):])),
        "seconds": time.perf_counter() - start,
        "figures": figures,
    }


# --- figures (matplotlib's object API: renders with Agg, leaves pyplot's state alone) -------
def _plot_losses(losses, path: Path) -> str:
    """The training loss per step and its moving average (20 steps) -> ``path`` (PNG)."""
    from matplotlib.figure import Figure

    losses = np.asarray(losses)
    window = min(20, len(losses))
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")  # (steps - window + 1,)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.8, alpha=0.4, label="loss per step")
    ax.plot(np.arange(window, len(losses) + 1), smooth, lw=2, label=f"mean of {window} steps")
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
           title="Shape classifier: training loss")
    ax.legend()
    fig.savefig(path, dpi=100)
    return str(path)


def _plot_predictions(images, labels, predicted, accuracy, path: Path, rows=4, cols=6) -> str:
    """Test images titled with the predicted and (true) class -> ``path`` (PNG).

    Misclassified images come first (titled in red), then correct ones in test order.
    """
    from matplotlib.figure import Figure

    order = np.argsort(predicted == labels, kind="stable")[: rows * cols]  # wrong first
    images, labels, predicted = images[order], labels[order], predicted[order]
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows + 0.4), layout="constrained")
    for i, ax in enumerate(fig.subplots(rows, cols, squeeze=False).ravel()):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i].transpose(1, 2, 0))  # (3, S, S) -> (S, S, 3)
        right = predicted[i] == labels[i]
        ax.set_title(f"{SHAPES[predicted[i]]}\n({SHAPES[labels[i]]})", fontsize=9,
                     color="green" if right else "red")
    fig.suptitle(f"Predicted (true) class of held-out images; test accuracy {accuracy:.1%}")
    fig.savefig(path, dpi=100)
    return str(path)
