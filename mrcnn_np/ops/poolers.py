"""MultiScaleRoIAlign: pool every box from the FPN level that suits its size.

In:  features {"0": P2, ..., "3": P5} (N, C, h_l, w_l); boxes, a list of per-image (R_i, 4)
     xyxy arrays in image pixels; the images' sizes [(h_i, w_i)].
Out: (sum R_i, C, ph, pw), boxes in order.

The level of a box of area ``w * h`` is ``k = floor(4 + log2(sqrt(w h) / 224) + 1e-6)``,
clamped to the levels present (2..5 for P2..P5): a 224x224 box goes to P4, one half that
size to P3 (Lin et al., "Feature Pyramid Networks", eq. 1). Each level's spatial scale is
inferred as ``2 ** round(log2(feature height / image height))`` (1/4 for P2). P6 ("pool") is
never pooled from. Torchvision: ``ops/poolers.py`` (``MultiScaleRoIAlign``, ``LevelMapper``,
``_infer_scale``), whose float32 rounding and epsilon are reproduced here.
"""

from __future__ import annotations

import numpy as np

from ..autograd import concat
from ..backend import as_array, get_array_module
from ..checks import pair
from .boxes import box_area
from .roi_align import convert_boxes_to_roi_format, roi_align


def infer_scale(feature_size: int, image_size: int) -> float:
    """``2 ** round(log2(feature_size / image_size))``, the log taken in float32 as torchvision does."""
    approx = np.float32(feature_size / image_size)
    return float(2 ** float(np.round(np.log2(approx))))


class LevelMapper:
    """Box -> pyramid level index (0 for ``k_min``), from the FPN paper's eq. 1."""

    def __init__(self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4,
                 eps: float = 1e-6):
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxlists: list):
        xp = get_array_module(*boxlists)
        s = xp.sqrt(xp.concatenate([box_area(b) for b in boxlists]))
        dt = s.dtype.type
        target = xp.floor(dt(self.lvl0) + xp.log2(s / dt(self.s0)) + dt(self.eps))
        return (xp.clip(target, self.k_min, self.k_max) - self.k_min).astype(np.int64)


class MultiScaleRoIAlign:
    """``MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)``; callable as
    ``pooler(features, boxes, image_shapes)``. No parameters."""

    def __init__(self, featmap_names, output_size, sampling_ratio: int, canonical_scale: int = 224,
                 canonical_level: int = 4, impl: str = "auto"):
        self.featmap_names = list(featmap_names)
        self.output_size = pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level
        self.impl = impl

    def setup_scales(self, features: list, image_shapes: list):
        """Spatial scale of every level and the level mapper for these image sizes."""
        if not image_shapes:
            raise ValueError("image_shapes is empty: give the (h, w) of every image")
        max_h = max(s[0] for s in image_shapes)
        scales = [infer_scale(as_array(f).shape[-2], max_h) for f in features]
        k_min = int(-np.log2(np.float32(scales[0])))
        k_max = int(-np.log2(np.float32(scales[-1])))
        return scales, LevelMapper(k_min, k_max, self.canonical_scale, self.canonical_level)

    def __call__(self, features: dict, boxes: list, image_shapes: list):
        missing = [k for k in self.featmap_names if k not in features]
        if missing:
            raise ValueError(f"features lack the levels {missing}; have {list(features)}")
        maps = [features[k] for k in self.featmap_names]
        first = as_array(maps[0])
        xp = get_array_module(first)
        scales, mapper = self.setup_scales(maps, image_shapes)
        rois = convert_boxes_to_roi_format(list(boxes), first.dtype)
        if len(maps) == 1 or len(rois) == 0:  # one level, or nothing to pool: no level mapping
            return roi_align(maps[0], rois, self.output_size, scales[0], self.sampling_ratio, impl=self.impl)
        levels = mapper(list(boxes))
        outputs, order = [], []
        for level, (feature, scale) in enumerate(zip(maps, scales, strict=True)):
            idx = xp.nonzero(levels == level)[0]
            if len(idx) == 0:
                continue
            outputs.append(roi_align(feature, rois[idx], self.output_size, scale, self.sampling_ratio,
                                     impl=self.impl))
            order.append(idx)
        order = xp.concatenate(order)
        inverse = xp.empty_like(order)
        inverse[order] = xp.arange(len(order))
        return concat(outputs, axis=0)[inverse]  # back to the boxes' order


def level_of_boxes(boxes: list, k_min: int = 2, k_max: int = 5) -> np.ndarray:
    """The FPN level k (k_min..k_max) each box is pooled from, for teaching and plots."""
    return LevelMapper(k_min, k_max)(boxes) + k_min
