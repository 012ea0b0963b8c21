"""Anchors: reference boxes tiled over every feature-map location of every FPN level.

In:  the padded batch's image size (H, W) and the feature-map sizes [(h_l, w_l)].
Out: anchors (sum_l h_l * w_l * A_l, 4) xyxy, the same for every image, ordered by level,
     then location (row-major), then anchor (ratios outer, sizes inner).

Per level, the A = len(ratios) * len(sizes) *cell anchors* are centred on (0, 0): for an
aspect ratio r = h / w and size s, ``w = s / sqrt(r)``, ``h = s * sqrt(r)``, corners
``round(+-w/2), round(+-h/2)`` (computed in float32, rounded half to even, as torchvision
does). They are shifted by ``(x * stride_w, y * stride_h)`` for every location, with
``stride = image size // feature size`` (integer division). Mask R-CNN with FPN uses one
size per level (32, 64, 128, 256, 512 on P2..P6) and ratios (0.5, 1, 2).

Lin et al., "Feature Pyramid Networks" (2017), sec. 4.1; torchvision
``models/detection/anchor_utils.py`` (``AnchorGenerator``).
"""

from __future__ import annotations

import numpy as np

from ..backend import as_array, get_array_module
from ..config import as_config


def cell_anchors(sizes, aspect_ratios) -> np.ndarray:
    """(len(ratios) * len(sizes), 4) float32 anchors centred on the origin."""
    scales = np.asarray(sizes, dtype=np.float32)
    ratios = np.asarray(aspect_ratios, dtype=np.float32)
    h_ratios = np.sqrt(ratios)
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (ratios, sizes) -> (A,)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2))


class AnchorGenerator:
    """``AnchorGenerator(sizes=, aspect_ratios=)``: one tuple of sizes and one of ratios per level;
    :meth:`from_config` takes them from a :class:`~mrcnn_np.config.MaskRCNNConfig`."""

    def __init__(self, *, sizes, aspect_ratios):
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"one aspect-ratio tuple per level: got {len(sizes)} sizes and "
                             f"{len(aspect_ratios)} ratio tuples")
        self.sizes, self.aspect_ratios = tuple(sizes), tuple(aspect_ratios)
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]
        self._cache = {}  # (image size, feature sizes, dtype, xp) -> the batch's anchors, made once per shape

    @classmethod
    def from_config(cls, config):
        """The anchors of ``config``: ``anchor_sizes`` and ``aspect_ratios``."""
        config = as_config(config, "AnchorGenerator.from_config")
        return cls(sizes=config.anchor_sizes, aspect_ratios=config.aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        return [len(a) for a in self.cell_anchors]

    def grid_anchors(self, image_size, feature_sizes, dtype=np.float32, xp=np) -> list:
        """One (h_l * w_l * A_l, 4) array per level."""
        if len(feature_sizes) != len(self.cell_anchors):
            raise ValueError(f"{len(self.cell_anchors)} levels of anchors configured, got "
                             f"{len(feature_sizes)} feature maps")
        out = []
        for (h, w), base in zip(feature_sizes, self.cell_anchors, strict=True):
            stride_h, stride_w = image_size[0] // h, image_size[1] // w
            shift_y, shift_x = np.meshgrid(np.arange(h) * stride_h, np.arange(w) * stride_w, indexing="ij")
            shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)  # (h*w, 1, 4)
            anchors = (shifts + base.astype(dtype)[None]).reshape(-1, 4)  # (h*w, A, 4) -> (h*w*A, 4)
            out.append(xp.asarray(anchors.astype(dtype)))
        return out

    def __call__(self, image_size, feature_maps) -> list:
        """Anchors for a batch: ``image_size`` (H, W) of the padded batch, ``feature_maps`` a
        list of (N, C, h, w) arrays or Tensors -> N equal arrays (sum_l h_l*w_l*A_l, 4)."""
        first = as_array(feature_maps[0])
        xp = get_array_module(first)
        sizes = tuple(tuple(f.shape[-2:]) for f in feature_maps)
        key = (tuple(image_size), sizes, np.dtype(first.dtype), xp)
        if key not in self._cache:  # on a GPU: computed on the host and copied once per shape
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[key] = xp.concatenate(self.grid_anchors(image_size, sizes, first.dtype, xp), axis=0)
        anchors = self._cache[key].copy()  # the caller's own (a copy on the device is no transfer)
        return [anchors for _ in range(first.shape[0])]
