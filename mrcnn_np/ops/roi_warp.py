"""RoIWarp (MNC), kept for comparison with RoIAlign: the box is rounded to whole feature pixels,
as RoIPool rounds it, but its bins are then sampled by bilinear interpolation, as RoIAlign samples
them -- so it is RoIAlign applied to the rounded box, and that is how it is computed here (no
kernel of its own). Only the box's quantisation remains: a bin reads up to half a feature pixel
away from where it lies. The Mask R-CNN paper's Table 2c (ResNet-50-C4): 27.2 mask AP with the max
of each bin's samples, 27.1 with their average (computed here, as RoIAlign averages), against
RoIPool's 26.9 and RoIAlign's 30.3.

In:  features (N, C, H, W), boxes (R, 5) or [(R_i, 4)] in image pixels, output_size,
     spatial_scale, sampling_ratio.
Out: (R, C, ph, pw); differentiable with respect to the features (RoIAlign's backward).

Dai et al., "Instance-aware Semantic Segmentation via Multi-task Network Cascades" (2016), sec. 3.2
("RoI warping layer"); He et al., "Mask R-CNN" (2017), sec. 3 ("RoIAlign") and Table 2c. The
corners are rounded as torchvision's ``roi_pool`` rounds them (half away from zero, after the
scale is applied in the features' dtype; :mod:`mrcnn_np.ops.roi_pool`).
"""

from __future__ import annotations

from ..backend import as_array, get_array_module
from ..checks import check_float, check_number, check_shape
from .roi_align import convert_boxes_to_roi_format, roi_align


def _quantize_rois(rois, spatial_scale: float):
    """(R, 5) ``batch_index, x1, y1, x2, y2`` in image pixels -> the same boxes in *feature* pixels,
    each corner ``round(corner * spatial_scale)`` (half away from zero), in the boxes' dtype."""
    xp = get_array_module(rois)
    dt = rois.dtype.type
    scaled = rois[:, 1:] * dt(spatial_scale)
    rounded = xp.sign(scaled) * xp.floor(xp.abs(scaled) + dt(0.5))  # round half away from zero, as roi_pool
    return xp.concatenate([rois[:, :1], rounded.astype(rois.dtype)], axis=1)  # (R, 1) + (R, 4) -> (R, 5)


def roi_warp(input, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1, impl: str = "auto"):
    """RoIWarp: :func:`~mrcnn_np.ops.roi_align.roi_align` (``aligned=False``) of the boxes rounded to
    the feature grid (:func:`_quantize_rois`). (N, C, H, W) features, boxes (R, 5) or [(R_i, 4)] ->
    (R, C, ph, pw). ``impl`` as for roi_align."""
    x = as_array(input)
    check_shape("roi_warp", "input", x, "(N, C, H, W)", ndim=4)
    check_float("roi_warp", "input", x)
    check_number("roi_warp", "spatial_scale", spatial_scale, 0, lo_open=True)
    rois = convert_boxes_to_roi_format(boxes, x.dtype)
    # the rounded boxes are in feature pixels: spatial scale 1
    return roi_align(input, _quantize_rois(rois, spatial_scale), output_size, 1.0, sampling_ratio, aligned=False,
                     impl=impl)
