"""Small and thin objects: specks and rods, a dataset that the default anchors do not suit.

The data of chapter 11 ("Your own data"): a speck is a disc a few pixels across, a rod a bar one
to six pixels wide and many times longer, lying horizontally or vertically. At the tiny model's
128 x 128 (no resizing) a speck of 10 px meets the smallest default anchor (32 x 32) at IoU
about 79 / 1024 = 0.08 and a horizontal rod of 4 x 40 px the flattest one (45 x 23) at 0.15, far
below the RPN's 0.7: such objects get positives only from the low-quality rule. Ground truth is exact (the
masks are drawn, as in :mod:`.shapes`), so what the model learns is limited by the anchors and the
mask size, not by annotation noise.

Geometry as in :mod:`.shapes` (pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``; a speck is
``draw_mask("circle", ...)``); a rod is the pixel rectangle ``[x0, x0 + length) x [y0, y0 + width)``
(or its transpose), so its box is exact.

Entry points: :func:`small_objects_image` (one image), :func:`small_objects_coco`,
:func:`write_small_objects_dataset` and :func:`small_objects_dataset` (n images as a COCO dataset:
a dict and arrays, PNGs and a JSON file, or a :class:`~mrcnn_np.data.coco.CocoDataset` in memory).
"""

from __future__ import annotations

import numpy as np

from ..checks import is_int
from .shapes import _check_image_size, _distinct_colour, draw_mask, seeded_coco, write_coco

KINDS = ("speck", "rod")
CATEGORIES = [{"id": k + 1, "name": kind} for k, kind in enumerate(KINDS)]  # label = KINDS index + 1
_PLACEMENT_TRIES = 20  # placements tried per object before it is left out
_GAP = 2  # pixels kept free around every object, so that no two touch


def small_objects_image(rng: np.random.Generator, height: int = 128, width: int = 128, max_instances: int = 6, *,
                        speck_size=(6.0, 16.0), rod_length=(24, 64), rod_width=(3, 6), min_contrast: float = 0.4):
    """Draw one image of specks and rods on a uniform background.

    Returns ``(image, masks, labels)``: float32 (H, W, 3) in [0, 1], bool (K, H, W), int64 (K,) with
    1-based ids into :data:`KINDS`. Between 1 and ``max_instances`` objects, each a speck or a rod with
    equal probability: a speck's diameter uniform in ``speck_size``; a rod's length and width integers
    uniform in ``rod_length`` and ``rod_width`` (both ends included), horizontal or vertical with equal
    probability. Objects do not overlap or touch (2 px apart); one that finds no free place in 20 tries
    is left out. Colours as in :func:`.shapes.random_image` (at least ``min_contrast`` from the
    background and from each other).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"small_objects_image: rng must be a np.random.Generator, got {type(rng).__name__}")
    height, width = _check_image_size("small_objects_image", height, width)
    if not is_int(max_instances) or max_instances < 1:
        raise ValueError(f"small_objects_image: max_instances must be a positive int, got {max_instances!r}")
    lo, hi = (float(v) for v in speck_size)
    if not 0 < lo <= hi or hi > min(height, width):
        raise ValueError(f"small_objects_image: need 0 < speck_size[0] <= speck_size[1] <= the image side, "
                         f"got {speck_size}")
    for name, (a, b) in (("rod_length", rod_length), ("rod_width", rod_width)):
        if not (is_int(a) and is_int(b) and 1 <= a <= b <= min(height, width)):
            raise ValueError(f"small_objects_image: {name} must be two ints 1 <= a <= b <= the image side, "
                             f"got {(a, b)}")

    background = rng.uniform(0, 1, size=3)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = background
    colours = [background]
    taken = np.zeros((height, width), dtype=bool)  # pixels of earlier objects, grown by the gap
    masks, labels = [], []
    for _ in range(int(rng.integers(1, max_instances + 1))):
        label = int(rng.integers(len(KINDS)))
        for _ in range(_PLACEMENT_TRIES):
            if KINDS[label] == "speck":
                size = rng.uniform(lo, hi)
                r = size / 2
                center = (rng.uniform(r, width - r), rng.uniform(r, height - r))
                mask = draw_mask("circle", center, size, height, width)
            else:
                length = int(rng.integers(rod_length[0], rod_length[1] + 1))
                thick = int(rng.integers(rod_width[0], rod_width[1] + 1))
                w, h = (length, thick) if rng.uniform() < 0.5 else (thick, length)
                x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                mask = np.zeros((height, width), dtype=bool)
                mask[y0:y0 + h, x0:x0 + w] = True
            if mask.any() and not (mask & taken).any():
                break
        else:
            continue  # no free place: leave this one out
        colour = _distinct_colour(rng, np.stack(colours), min_contrast)
        image[mask] = colour
        colours.append(colour)
        masks.append(mask)
        labels.append(label + 1)
        ys, xs = np.nonzero(mask)  # the gap: block the mask's box grown by _GAP on every side
        taken[max(0, ys.min() - _GAP):ys.max() + 1 + _GAP, max(0, xs.min() - _GAP):xs.max() + 1 + _GAP] = True
    masks_out = np.zeros((len(masks), height, width), dtype=bool)  # (K, H, W)
    for k, m in enumerate(masks):
        masks_out[k] = m
    return image, masks_out, np.asarray(labels, dtype=np.int64)


def small_objects_coco(n: int, seed=0, height: int = 128, width: int = 128, max_instances: int = 6,
                       **kwargs) -> tuple[dict, dict]:
    """``n`` images of :func:`small_objects_image` -> (COCO dict, ``{image_id: uint8 (H, W, 3)}``); image ``i``
    from ``np.random.default_rng([seed, i])`` (a prefix property as :func:`.shapes.shapes_coco`), category
    ids 1 ("speck") and 2 ("rod"); ``kwargs`` go to :func:`small_objects_image`."""
    def draw(rng):
        return small_objects_image(rng, height, width, max_instances, **kwargs)

    return seeded_coco("small_objects_coco", draw, n, seed, CATEGORIES,
                       f"mrcnn-np specks and rods, seed {seed}, {n} images of {height}x{width}")


def write_small_objects_dataset(out_dir, n: int, seed=0, height: int = 128, width: int = 128,
                                max_instances: int = 6, progress: bool = False, **kwargs):
    """Write :func:`small_objects_coco` to ``out_dir/images/*.png`` and ``out_dir/annotations.json``;
    returns the JSON path."""
    coco, arrays = small_objects_coco(n, seed, height, width, max_instances, **kwargs)
    return write_coco(out_dir, coco, arrays, progress, desc="write specks and rods")


def small_objects_dataset(n: int, seed=0, height: int = 128, width: int = 128, max_instances: int = 6, **kwargs):
    """The images of :func:`small_objects_coco` in memory, as a :class:`~mrcnn_np.data.coco.CocoDataset`."""
    from .coco import CocoDataset

    coco, arrays = small_objects_coco(n, seed, height, width, max_instances, **kwargs)
    return CocoDataset(coco, images=arrays, name=f"<specks and rods seed={seed}>")
