"""Pictures of detections and of training: masks, boxes and labels drawn on images, loss curves.

- :func:`draw_instances`: one image with its instances (predicted or ground truth) on a
  matplotlib ``Axes``: each mask a translucent colour, its box, ``class score`` above it;
- :func:`plot_predictions`: rows of held-out images, ground truth next to predictions -> PNG;
- :func:`plot_losses`: the five Mask R-CNN losses and their sum per iteration (from a
  :mod:`mrcnn_np.train` log), smoothed, on a log scale -> PNG.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``): they render
with Agg whatever the backend, and leave pyplot's state alone.
"""

from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .model.transform import as_chw_float

# Colour-blind-friendly qualitative colours (Okabe & Ito), one per class, cycling.
COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")


def draw_instances(ax, image, instances: dict, class_names=None, score_thresh: float = 0.5,
                   mask_thresh: float = 0.5, title: str | None = None) -> None:
    """Draw ``image`` (H, W, 3) and its ``instances`` on ``ax``.

    ``instances``: ``boxes (D, 4)`` xyxy, ``labels (D,)``, and optionally ``scores (D,)`` (only
    those >= ``score_thresh`` are drawn) and ``masks`` (D, 1, H, W) probabilities or (D, H, W)
    binary (drawn where >= ``mask_thresh``). ``class_names[label]`` names a label.
    """
    from matplotlib.patches import Rectangle

    shown = as_chw_float(to_numpy(image), np.float64).transpose(1, 2, 0)  # (H, W, 3) in [0, 1]
    boxes = np.asarray(to_numpy(instances["boxes"]), dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(to_numpy(instances["labels"])).reshape(-1)
    scores = to_numpy(instances["scores"]) if "scores" in instances else None
    masks = to_numpy(instances["masks"]) if "masks" in instances else None
    if masks is not None and masks.ndim == 4:
        masks = masks[:, 0]  # (D, 1, H, W) -> (D, H, W)
    keep = np.ones(len(boxes), dtype=bool) if scores is None else np.asarray(scores) >= score_thresh
    overlay = shown.copy()
    for d in np.flatnonzero(keep):
        if masks is not None:
            colour = np.array(_rgb(COLOURS[int(labels[d]) % len(COLOURS)]))
            m = masks[d] >= mask_thresh
            overlay[m] = 0.45 * overlay[m] + 0.55 * colour
    ax.imshow(overlay)
    for d in np.flatnonzero(keep):
        colour = COLOURS[int(labels[d]) % len(COLOURS)]
        # box coordinates are continuous (pixel (0, 0) covers [0, 1)); imshow centres pixels on integers
        x1, y1, x2, y2 = boxes[d] - 0.5
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, lw=1.5))
        name = class_names[int(labels[d])] if class_names is not None else str(int(labels[d]))
        text = name if scores is None else f"{name} {float(scores[d]):.2f}"
        ax.text(x1, y1, text, fontsize=7, color="black", va="bottom",
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.85})
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)


def plot_predictions(images: list, outputs: list, path=None, targets: list | None = None, class_names=None,
                     score_thresh: float = 0.5, title: str | None = None, columns: int = 4):
    """A grid of images with their predicted instances (and, when ``targets`` are given, the ground
    truth in the row above each row of predictions) -> PNG at ``path``, whose name is returned;
    without ``path``, the ``Figure`` (a notebook shows it)."""
    from matplotlib.figure import Figure

    n = len(images)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)  # ceil
    per_image = 2 if targets is not None else 1
    fig = Figure(figsize=(2.6 * columns, 2.7 * rows * per_image + 0.4), layout="constrained")
    axes = fig.subplots(rows * per_image, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, columns)
        if targets is not None:
            draw_instances(axes[r * 2, c], images[i], targets[i], class_names, title="ground truth")
        draw_instances(axes[r * per_image + per_image - 1, c], images[i], outputs[i], class_names,
                       score_thresh, title=f"prediction (score >= {score_thresh})")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_losses(records: list[dict], path=None, window: int = 20, title: str = "Training losses"):
    """Each loss of the log ``records`` (``{"iteration", "loss", "loss_objectness", ...}``), as a
    moving average over ``window`` iterations, and the learning rate -> PNG at ``path`` (its name is
    returned), or the ``Figure`` without ``path``."""
    from matplotlib.figure import Figure

    if not records:
        raise ValueError("plot_losses: no log records to plot")
    it = np.array([r["iteration"] for r in records])
    names = [k for k in records[0] if k == "loss" or k.startswith("loss_")]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax, ax_lr = fig.subplots(1, 2, width_ratios=(3, 1))
    w = max(1, min(window, len(records)))
    for name in names:
        values = np.array([r[name] for r in records], dtype=np.float64)
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")  # (N - w + 1,)
        ax.plot(it[w - 1:], smooth, lw=2.2 if name == "loss" else 1.3, color="black" if name == "loss" else None,
                label="total" if name == "loss" else name.removeprefix("loss_"))
    ax.set(xlabel="iteration", ylabel=f"loss (mean of {w} iterations)", yscale="log", title=title)
    ax.legend(fontsize=8, ncols=2)
    ax_lr.plot(it, [r["lr"] for r in records], color="tab:gray")
    ax_lr.set(xlabel="iteration", title="learning rate")
    return _save(fig, path)


def _save(fig, path):
    """``fig`` written to ``path`` (PNG) -> the path as a string; ``path`` None -> ``fig``."""
    if path is None:
        return fig
    fig.savefig(path, dpi=100)
    return str(path)


def _rgb(hex_colour: str) -> tuple:
    return tuple(int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
