"""Procedural shapes: squares, circles and triangles rasterised with NumPy.

The synthetic dataset of mrcnn-np: every image is drawn from an explicit
``np.random.Generator``, so a seed reproduces it exactly, and every shape comes with its
exact pixel mask, which makes it a detection / instance-segmentation dataset with
perfect ground truth (no annotation noise, any size, no download).

Geometry. Pixel ``(row y, column x)`` covers the square ``[x, x+1) x [y, y+1)``; its
centre is ``(x + 0.5, y + 0.5)``. A pixel belongs to a shape when its centre lies
inside the shape. Coordinates are continuous, ``x`` to the right and ``y`` down, as in
image arrays and in ``xyxy`` boxes. ``size`` is

- ``"square"``:   the side length (edges half-open: left/top included, right/bottom not,
  so an axis-aligned square of integer side on integer corners covers exactly side^2
  pixels);
- ``"circle"``:   the diameter (the open disc of radius ``size / 2``);
- ``"triangle"``: the side of an equilateral triangle whose centroid is ``center``; at
  ``angle=0`` one vertex points up.

``angle`` is in degrees, counter-clockwise as seen on the screen (the rotation of
``PIL.Image.rotate`` and ``torchvision.transforms.functional.rotate``).

Entry points:

- :func:`draw_mask`: one shape -> bool mask (H, W);
- :func:`random_image`: one image with K occluding instances -> image (H, W, 3), masks
  (K, H, W), labels (K,) with 1-based class ids into :data:`SHAPES` (0 is background,
  as in torchvision's detection models);
- :func:`classification_set`: n images with one shape each -> (n, 3, S, S), labels 0..2;
- :func:`shapes_coco`, :func:`write_shapes_dataset`, :func:`shapes_dataset`: n images of
  :func:`random_image` as a COCO dataset (a dict and uint8 arrays, PNGs and a JSON file on
  disk, or a :class:`~mrcnn_np.data.coco.CocoDataset` in memory).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..checks import is_int

SHAPES = ("square", "circle", "triangle")

# Circumradius / size per kind: a shape drawn at any angle stays inside the disc of this
# radius around its centre, which is how random_image keeps every shape inside the image.
_CIRCUMRADIUS = {"square": 1 / math.sqrt(2), "circle": 0.5, "triangle": 1 / math.sqrt(3)}
_PLACEMENT_TRIES = 20  # random_image: placements tried per shape under max_overlap


# --- one shape ---------------------------------------------------------------------------
def draw_mask(kind: str, center, size: float, height: int, width: int,
              angle: float = 0.0) -> np.ndarray:
    """Rasterise one shape: ``center`` ``(cx, cy)`` in pixels -> bool mask (height, width).

    ``kind`` is one of :data:`SHAPES`; ``size`` and ``angle`` (degrees, counter-clockwise
    on screen) are described in the module docstring. Parts outside the image are cut.
    """
    if kind not in SHAPES:
        raise ValueError(f"draw_mask: kind must be one of {SHAPES}, got {kind!r}")
    height, width = _check_image_size("draw_mask", height, width)
    if not (np.isfinite(size) and size > 0):
        raise ValueError(f"draw_mask: size must be a positive number, got {size!r}")
    center = np.asarray(center, dtype=np.float64)
    if center.shape != (2,) or not np.all(np.isfinite(center)):
        raise ValueError(f"draw_mask: center must be two finite numbers (cx, cy), got {center!r}")
    if not np.isfinite(angle):
        raise ValueError(f"draw_mask: angle must be a finite number of degrees, got {angle!r}")

    # Offsets of the pixel centres from the shape centre: (1, W) and (H, 1), broadcast.
    dx = (np.arange(width) + 0.5 - center[0])[None, :]
    dy = (np.arange(height) + 0.5 - center[1])[:, None]
    # Into the shape's own frame: undo the rotation (counter-clockwise on screen, y down).
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    u = dx * c - dy * s  # (H, W)
    v = dx * s + dy * c  # (H, W)

    half = size / 2
    if kind == "square":
        return (u >= -half) & (u < half) & (v >= -half) & (v < half)
    if kind == "circle":
        return u * u + v * v < half * half
    # Equilateral triangle, centroid at the origin, apex up (y down): apex (0, -R),
    # base corners (+-size/2, R/2) with circumradius R = size / sqrt(3).
    r = size / math.sqrt(3)
    corners = ((0.0, -r), (half, r / 2), (-half, r / 2))
    inside = np.ones((height, width), dtype=bool)
    for (px, py), (qx, qy) in zip(corners, corners[1:] + corners[:1], strict=True):
        # Edge function: cross((q - p), (point - p)) >= 0 on the inner side of edge p->q.
        inside &= (qx - px) * (v - py) - (qy - py) * (u - px) >= 0
    return inside


# --- images with several instances -------------------------------------------------------
def random_image(rng: np.random.Generator, height: int, width: int, max_instances: int = 1, *,
                 min_instances: int = 1, min_size: float | None = None,
                 max_size: float | None = None, rotate: bool = True,
                 min_visible: float = 0.1, min_contrast: float = 0.3, max_overlap: float = 1.0):
    """Draw one image of randomly coloured, placed, sized and rotated shapes.

    Returns ``(image, masks, labels)``:

    - ``image``  float32 (H, W, 3) in [0, 1]: a uniform background and the shapes;
    - ``masks``  bool (K, H, W): the *visible* pixels of each instance;
    - ``labels`` int64 (K,): 1-based class ids, ``SHAPES[labels[k] - 1]`` is the kind.

    Between ``min_instances`` and ``max_instances`` shapes are drawn in order; a later
    shape occludes the earlier ones, whose masks lose the covered pixels. An instance
    left with less than ``min_visible`` of its own area (or no pixel) is dropped from
    the annotations (its few visible pixels stay in the image as clutter), so ``K`` may
    be smaller than the number drawn; the last shape is never occluded. A new shape may
    hide at most ``max_overlap`` of any earlier shape's visible pixels: a placement that
    hides more is drawn again (new size, centre and angle, at most 20 tries, else the shape
    is left out). The default 1.0 allows any occlusion.

    Sizes are uniform in ``[min_size, max_size]`` (defaults: 25% and 60% of the shorter
    image side); centres are placed so that the whole shape, at any angle, lies inside
    the image. Colours are uniform in [0, 1]^3, each shape's at Euclidean distance at
    least ``min_contrast`` from the background and from the earlier shapes' colours
    (when 64 candidates cannot achieve that, the most distant one is used).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"random_image: rng must be a np.random.Generator, got {type(rng).__name__}")
    height, width = _check_image_size("random_image", height, width)
    short = min(height, width)
    min_size = 0.25 * short if min_size is None else float(min_size)
    max_size = 0.6 * short if max_size is None else float(max_size)
    if not 0 < min_size <= max_size:
        raise ValueError(f"random_image: need 0 < min_size <= max_size, got {min_size}, {max_size}")
    if 2 * _CIRCUMRADIUS["square"] * max_size > short:
        raise ValueError(
            f"random_image: max_size {max_size} does not fit a {height}x{width} image at every "
            f"angle (at most {short / math.sqrt(2):.2f}, the shorter side / sqrt(2))"
        )
    if not 1 <= min_instances <= max_instances:
        raise ValueError(
            f"random_image: need 1 <= min_instances <= max_instances, got {min_instances}, {max_instances}"
        )
    if not 0 <= min_visible <= 1:
        raise ValueError(f"random_image: min_visible must lie in [0, 1], got {min_visible}")
    if not 0 <= max_overlap <= 1:
        raise ValueError(f"random_image: max_overlap must lie in [0, 1], got {max_overlap}")
    if not 0 <= min_contrast < math.sqrt(3):
        raise ValueError(f"random_image: min_contrast must lie in [0, sqrt(3)), got {min_contrast}")

    background = rng.uniform(0, 1, size=3)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = background
    used_colours = [background]
    masks, areas, labels = [], [], []
    for _ in range(int(rng.integers(min_instances, max_instances + 1))):
        label = int(rng.integers(len(SHAPES)))
        for _ in range(_PLACEMENT_TRIES):
            size = rng.uniform(min_size, max_size)
            radius = _CIRCUMRADIUS[SHAPES[label]] * size
            center = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
            angle = rng.uniform(0, 360) if rotate else 0.0
            mask = draw_mask(SHAPES[label], center, size, height, width, angle)
            if max_overlap >= 1 or all((m & mask).sum() <= max_overlap * m.sum() for m in masks):
                break
        else:
            continue  # no placement hides little enough of the earlier shapes: leave this one out
        colour = _distinct_colour(rng, np.stack(used_colours), min_contrast)
        for earlier in masks:  # occlusion: the new shape hides what lies under it
            earlier &= ~mask
        image[mask] = colour
        used_colours.append(colour)
        masks.append(mask)
        areas.append(int(mask.sum()))
        labels.append(label + 1)

    keep = [k for k, m in enumerate(masks) if m.any() and m.sum() >= min_visible * areas[k]]
    masks_out = np.zeros((len(keep), height, width), dtype=bool)  # (K, H, W)
    for i, k in enumerate(keep):
        masks_out[i] = masks[k]
    return image, masks_out, np.asarray([labels[k] for k in keep], dtype=np.int64)


def classification_set(n: int, size: int = 32, seed=0, rotate: bool = True):
    """``n`` images with exactly one shape each, for classification.

    The shape is 35% to 65% of the image side, rotated at random unless ``rotate`` is
    False, and contrasts with the background (colour distance >= 0.5).
    ``seed``: an int, a ``np.random.SeedSequence`` or a ``Generator`` (anything
    ``np.random.default_rng`` accepts). Returns ``images`` float32 (n, 3, size, size)
    (channels first, as the layers expect) and ``labels`` int64 (n,) in 0..2, indices
    into :data:`SHAPES` (no background class here).
    """
    if not is_int(n) or n < 0:
        raise ValueError(f"classification_set: n must be a non-negative int, got {n!r}")
    size = _check_image_size("classification_set", size, size)[0]
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        image, _, ids = random_image(rng, size, size, max_instances=1, min_size=0.35 * size,
                                     max_size=0.65 * size, rotate=rotate, min_contrast=0.5)
        images[i] = image.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
        labels[i] = ids[0] - 1
    return images, labels


# --- helpers -----------------------------------------------------------------------------
def _check_image_size(op: str, height, width) -> tuple[int, int]:
    """``(height, width)`` as ints; ValueError unless both are positive integers."""
    for name, value in (("height", height), ("width", width)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(height), int(width)


def _distinct_colour(rng: np.random.Generator, avoid: np.ndarray, min_contrast: float) -> np.ndarray:
    """An RGB colour in [0, 1]^3 at distance >= ``min_contrast`` from every row of ``avoid`` (A, 3).

    Draws 64 candidates (always 64, so the random stream does not depend on the outcome)
    and returns the first one far enough, or else the one farthest from its nearest.
    """
    candidates = rng.uniform(0, 1, size=(64, 3))
    # (64, 1, 3) - (1, A, 3) -> (64, A) distances -> (64,) to the nearest avoided colour
    nearest = np.linalg.norm(candidates[:, None, :] - avoid[None, :, :], axis=-1).min(axis=1)
    ok = np.flatnonzero(nearest >= min_contrast)
    return candidates[ok[0] if ok.size else int(nearest.argmax())]


# --- the shapes as a COCO dataset ------------------------------------------------------------
COCO_CATEGORIES = [{"id": k + 1, "name": kind} for k, kind in enumerate(SHAPES)]  # label = SHAPES index + 1


def shapes_coco(n: int, seed=0, height: int = 128, width: int = 128, max_instances: int = 4,
                **kwargs) -> tuple[dict, dict]:
    """``n`` images of :func:`random_image` -> (COCO dict, ``{image_id: uint8 (H, W, 3)}``).

    Image ``i`` (id ``i + 1``, ``file_name`` ``"000001.png"`` ...) is drawn from
    ``np.random.default_rng([seed, i])``, so ``n`` images are a prefix of ``n + 1`` and each
    seed gives its own set (the demo trains on seed 0 and tests on seed 1). ``kwargs`` go to
    :func:`random_image`. One annotation per kept instance: its visible mask as a compressed
    RLE, ``bbox`` the mask's extent ``[x0, y0, x1 - x0, y1 - y0]`` (x1 = last column + 1),
    ``area`` its pixel count, ``iscrowd`` 0; category ids 1..3 are the labels.
    """
    return seeded_coco("shapes_coco", lambda rng: random_image(rng, height, width, max_instances, **kwargs), n, seed,
                       COCO_CATEGORIES, f"mrcnn-np shapes, seed {seed}, {n} images of {height}x{width}")


def seeded_coco(caller: str, draw, n: int, seed, categories: list[dict], description: str) -> tuple[dict, dict]:
    """``n`` samples ``draw(rng)`` -> :func:`images_to_coco`, sample ``i`` from ``np.random.default_rng([seed, i])``
    (so ``n`` images are a prefix of ``n + 1``); ValueError naming ``caller`` for a bad ``n`` or ``seed``."""
    if not is_int(n) or n < 0:
        raise ValueError(f"{caller}: n must be a non-negative int, got {n!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"{caller}: seed must be a non-negative int, got {seed!r}")
    return images_to_coco((draw(np.random.default_rng([seed, i])) for i in range(n)), categories, description)


def images_to_coco(samples, categories: list[dict], description: str) -> tuple[dict, dict]:
    """``(image, masks, labels)`` triples (float (H, W, 3) in [0, 1], bool (K, H, W), int (K,) category ids)
    -> (COCO dict, ``{image_id: uint8 (H, W, 3)}``): image ``i`` gets id ``i + 1`` and ``file_name``
    ``"000001.png"`` ...; one annotation per mask: the mask as a compressed RLE, ``bbox`` its extent
    ``[x0, y0, x1 - x0, y1 - y0]`` (x1 = last column + 1), ``area`` its pixel count, ``iscrowd`` 0."""
    from ..evaluate import encode_mask  # pycocotools: imported when needed

    images, annotations, arrays = [], [], {}
    for i, (image, masks, labels) in enumerate(samples):
        image_id = i + 1
        height, width = image.shape[:2]
        arrays[image_id] = np.round(image * 255).astype(np.uint8)  # (H, W, 3) in [0, 1] -> uint8
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "height": height, "width": width})
        for mask, label in zip(masks, labels, strict=True):
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "segmentation": encode_mask(mask), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": int(mask.sum()), "iscrowd": 0})
    coco = {"info": {"description": description}, "images": images, "annotations": annotations,
            "categories": [dict(c) for c in categories]}
    return coco, arrays


def write_coco(out_dir, coco: dict, arrays: dict, progress: bool = False, desc: str = "write images") -> Path:
    """Write the images of ``arrays`` (``{image_id: uint8 (H, W, 3)}``) to ``out_dir/images/`` under their
    ``file_name`` and ``coco`` to ``out_dir/annotations.json``; returns the JSON path."""
    from PIL import Image

    from ..progress import progress_bar

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    with progress_bar(progress, total=len(coco["images"]), desc=desc, unit="image") as bar:
        for entry in coco["images"]:
            Image.fromarray(arrays[entry["id"]]).save(out_dir / "images" / entry["file_name"])
            bar.update()
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(coco), encoding="utf-8")
    return path


def write_shapes_dataset(out_dir, n: int, seed=0, height: int = 128, width: int = 128, max_instances: int = 4,
                         progress: bool = False, **kwargs) -> Path:
    """Write :func:`shapes_coco` to ``out_dir/images/000001.png ...`` and ``out_dir/annotations.json``.

    Returns the JSON path; ``CocoDataset(path)`` finds the images in ``images/`` next to it.
    ``progress`` shows a progress bar while the PNGs are written.
    """
    coco, arrays = shapes_coco(n, seed, height, width, max_instances, **kwargs)
    return write_coco(out_dir, coco, arrays, progress, desc="write shapes")


def shapes_dataset(n: int, seed=0, height: int = 128, width: int = 128, max_instances: int = 4, **kwargs):
    """The images of :func:`shapes_coco` in memory, as a :class:`~mrcnn_np.data.coco.CocoDataset` (no files)."""
    from .coco import CocoDataset

    coco, arrays = shapes_coco(n, seed, height, width, max_instances, **kwargs)
    return CocoDataset(coco, images=arrays, name=f"<shapes seed={seed}>")
