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

``roi_pooler`` picks the op each level pools with (the Mask R-CNN paper's Table 2c ablation): "align"
(RoIAlign, torchvision's and the default), "warp" (RoIWarp: RoIAlign of the box rounded to the
feature grid, :mod:`mrcnn_np.ops.roi_warp`) or "pool" (RoIPool, :mod:`mrcnn_np.ops.roi_pool`; it
reads no ``sampling_ratio``). The level of a box is chosen the same way for all three.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..autograd import concat
from ..backend import IMPLS, as_array, get_array_module
from ..checks import (
    as_boxes_arg,
    check_boxes,
    check_float,
    check_int,
    check_number,
    check_output_size,
    check_shape,
    check_size_hw,
    describe,
)
from .boxes import box_area
from .roi_align import convert_boxes_to_roi_format, roi_align
from .roi_pool import roi_pool
from .roi_warp import roi_warp

ROI_POOLERS = ("align", "warp", "pool")  # RoIAlign, RoIWarp, RoIPool (Mask R-CNN paper, Table 2c)


def infer_scale(feature_size: int, image_size: int) -> float:
    """``2 ** round(log2(feature_size / image_size))``, the log taken in float32 as torchvision does."""
    check_number("infer_scale", "feature_size", feature_size, 0, lo_open=True)
    check_number("infer_scale", "image_size", image_size, 0, lo_open=True)
    approx = np.float32(feature_size / image_size)
    return float(2 ** float(np.round(np.log2(approx))))


class LevelMapper:
    """Box -> pyramid level index (0 for ``k_min``), from the FPN paper's eq. 1."""

    def __init__(self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4,
                 eps: float = 1e-6):
        check_int("LevelMapper", "k_min", k_min)
        check_int("LevelMapper", "k_max", k_max)
        if k_min > k_max:
            raise ValueError(f"LevelMapper: k_min {k_min} must be <= k_max {k_max}")
        check_number("LevelMapper", "canonical_scale", canonical_scale, 0, lo_open=True)
        check_int("LevelMapper", "canonical_level", canonical_level)
        check_number("LevelMapper", "eps", eps)
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxlists: list):
        """Per-image (R_i, 4) boxes -> (sum R_i,) int64 level indices (0 for ``k_min``)."""
        return self._levels(_check_box_lists("LevelMapper", "boxlists", boxlists))

    def _levels(self, boxlists: list):
        """:meth:`__call__` without the checks, for boxes already checked (by the pooler)."""
        xp = get_array_module(*boxlists)
        s = xp.sqrt(xp.concatenate([box_area(b) for b in boxlists]))
        dt = s.dtype.type
        target = xp.floor(dt(self.lvl0) + xp.log2(s / dt(self.s0)) + dt(self.eps))
        return (xp.clip(target, self.k_min, self.k_max) - self.k_min).astype(np.int64)


class MultiScaleRoIAlign:
    """``MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)``; callable as
    ``pooler(features, boxes, image_shapes)``. No parameters. ``roi_pooler`` "warp" or "pool" pools
    each level with RoIWarp or RoIPool instead of RoIAlign (an ablation; torchvision has only "align")."""

    def __init__(self, featmap_names, output_size, sampling_ratio: int, canonical_scale: int = 224,
                 canonical_level: int = 4, impl: str = "auto", roi_pooler: str = "align"):
        op = "MultiScaleRoIAlign"
        if not isinstance(featmap_names, (list, tuple)) or not all(isinstance(n, str) for n in featmap_names):
            raise TypeError(f"{op}: featmap_names must be a list of feature-map names (str), e.g. ['0', '1', '2', "
                            f"'3'], got {featmap_names!r}")
        if not featmap_names:
            raise ValueError(f"{op}: featmap_names is empty; name at least one feature map to pool from")
        self.output_size = check_output_size(output_size, op)
        check_int(op, "sampling_ratio", sampling_ratio)
        check_number(op, "canonical_scale", canonical_scale, 0, lo_open=True)
        check_int(op, "canonical_level", canonical_level)
        if impl not in IMPLS or not isinstance(impl, str):
            raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")
        if not isinstance(roi_pooler, str) or roi_pooler not in ROI_POOLERS:
            raise (ValueError if isinstance(roi_pooler, str) else TypeError)(
                f"{op}: roi_pooler must be one of {ROI_POOLERS}, got {describe(roi_pooler)}")
        self.roi_pooler = roi_pooler
        self.featmap_names = list(featmap_names)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level
        self.impl = impl

    def setup_scales(self, features: list, image_shapes: list):
        """Spatial scale of every level and the level mapper for these image sizes."""
        _check_image_shapes(image_shapes)
        max_h = max(s[0] for s in image_shapes)
        scales = [infer_scale(as_array(f).shape[-2], max_h) for f in features]
        k_min = int(-np.log2(np.float32(scales[0])))
        k_max = int(-np.log2(np.float32(scales[-1])))
        return scales, LevelMapper(k_min, k_max, self.canonical_scale, self.canonical_level)

    def __call__(self, features: dict, boxes: list, image_shapes: list):
        """``features`` {name: (N, C, h, w)}, ``boxes`` a list of (R_i, 4) per image, ``image_shapes``
        the (h_i, w_i) of each image -> (sum R_i, C, ph, pw)."""
        op = "MultiScaleRoIAlign"
        if not isinstance(features, Mapping):
            raise TypeError(f"{op}: features must be a dict {{name: (N, C, H, W) map}}, got {describe(features)}")
        missing = [k for k in self.featmap_names if k not in features]
        if missing:
            raise ValueError(f"features lack the levels {missing}; have {list(features)}")
        maps = [features[k] for k in self.featmap_names]
        for k, m in zip(self.featmap_names, maps, strict=True):
            check_shape(op, f"features[{k!r}]", as_array(m), "(N, C, H, W)", ndim=4)
            check_float(op, f"features[{k!r}]", as_array(m))
        boxes = _check_box_lists(op, "boxes", boxes, check_values=False)  # values: convert_boxes_to_roi_format
        _check_image_shapes(image_shapes)
        if len(boxes) != len(image_shapes):
            raise ValueError(f"{op}: got boxes for {len(boxes)} image(s) but image_shapes for {len(image_shapes)}; "
                             f"expected one (R_i, 4) array and one (h, w) per image")
        first = as_array(maps[0])
        xp = get_array_module(first)
        scales, mapper = self.setup_scales(maps, image_shapes)
        rois = convert_boxes_to_roi_format(boxes, first.dtype)
        if len(maps) == 1 or len(rois) == 0:  # one level, or nothing to pool: no level mapping
            return self._pool_level(maps[0], rois, scales[0])
        levels = mapper._levels(boxes)
        outputs, order = [], []
        for level, (feature, scale) in enumerate(zip(maps, scales, strict=True)):
            idx = xp.nonzero(levels == level)[0]
            if len(idx) == 0:
                continue
            outputs.append(self._pool_level(feature, rois[idx], scale))
            order.append(idx)
        order = xp.concatenate(order)
        inverse = xp.empty_like(order)
        inverse[order] = xp.arange(len(order))
        return concat(outputs, axis=0)[inverse]  # back to the boxes' order


    def _pool_level(self, feature, rois, scale: float):
        """One level's (N, C, h, w) map and (R, 5) rois -> (R, C, ph, pw), by ``self.roi_pooler``."""
        if self.roi_pooler == "pool":
            return roi_pool(feature, rois, self.output_size, scale)
        pool = roi_warp if self.roi_pooler == "warp" else roi_align
        return pool(feature, rois, self.output_size, scale, self.sampling_ratio, impl=self.impl)


def level_of_boxes(boxes: list, k_min: int = 2, k_max: int = 5) -> np.ndarray:
    """The FPN level k (k_min..k_max) each box is pooled from, for teaching and plots; ``boxes`` is
    a list of (R_i, 4) arrays, one per image."""
    mapper = LevelMapper(k_min, k_max)
    return mapper._levels(_check_box_lists("level_of_boxes", "boxes", boxes)) + k_min


def _check_box_lists(op: str, name: str, boxlists, check_values: bool = True) -> list:
    """A non-empty list of (R_i, 4) box arrays, one per image (lists of numbers converted); each
    checked by :func:`~mrcnn_np.checks.check_boxes` unless ``check_values=False``."""
    if not isinstance(boxlists, (list, tuple)):
        raise TypeError(f"{op}: {name} must be a list of (R_i, 4) box arrays, one per image, got "
                        f"{describe(boxlists)}" + (": pass [boxes]" if hasattr(boxlists, "shape") else ""))
    if not boxlists:
        raise ValueError(f"{op}: {name} is an empty list; expected one (R_i, 4) box array per image")
    out = []
    for i, b in enumerate(boxlists):
        b = as_boxes_arg(as_array(b), f"{name}[{i}]")
        if check_values:
            check_boxes(b, f"{name}[{i}]")
        out.append(b)
    return out


def _check_image_shapes(image_shapes) -> None:
    """A non-empty list of (h, w) image sizes, both positive."""
    if not isinstance(image_shapes, (list, tuple)):
        raise TypeError(f"image_shapes must be a list of (height, width), one per image, got {describe(image_shapes)}")
    if not image_shapes:
        raise ValueError("image_shapes is empty: give the (h, w) of every image")
    for i, size in enumerate(image_shapes):
        check_size_hw(None, f"image_shapes[{i}]", size, positive=True)
