"""RoIAlign: a fixed-size feature grid for every box, by bilinear sampling (no rounding).

In:  features (N, C, H, W); boxes as an (R, 5) array of ``batch_index, x1, y1, x2, y2`` or a
     list of per-image (R_i, 4) arrays, in image pixels; ``spatial_scale`` = feature size /
     image size (1/4 for P2); ``output_size`` (ph, pw).
Out: (R, C, ph, pw).

Each box is scaled to the feature map (shifted by -0.5 pixel when ``aligned``; the original
Mask R-CNN, and torchvision's default, is ``aligned=False``) and cut into ph x pw bins. Each
bin averages a g_h x g_w grid of points (``sampling_ratio`` per axis, or
``ceil(box size / bins)`` when it is <= 0), each point read by bilinear interpolation of its
four neighbouring feature pixels. Points more than one pixel outside the map read 0.

The computation is separable: a point's weight on pixel (y, x) is (weight of y) * (weight of
x), and a point is dropped when y *or* x is out of range -- so for one box

    out[c] = W_y @ features[b, c] @ W_x.T / (g_h * g_w)

with W_y (ph, H) and W_x (pw, W) holding, per bin, the summed interpolation weights of its
sample rows / columns. :func:`sampling_plan` computes those taps for all boxes (exactly as
torchvision's ``roi_align_kernel.cpp`` computes its ``pre_calc``, in the input's dtype);
:func:`roi_align_numpy` is the readable specification built on it (on NumPy or CuPy arrays);
the Numba and numba.cuda kernels in :mod:`mrcnn_np.kernels.roi_align` consume the same plan.
``impl=`` is resolved against the table ``ROI_ALIGN`` of (forward, backward) pairs.

He et al., "Mask R-CNN" (2017), sec. 3 "RoIAlign"; torchvision ``ops/roi_align.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..autograd import apply
from ..backend import KernelTable, as_array, get_array_module
from ..checks import (
    as_array_arg,
    as_boxes_arg,
    check_batch_indices,
    check_bool,
    check_boxes,
    check_float,
    check_int,
    check_number,
    check_output_size,
    check_shape,
    pair,
)

# adaptive sampling (sampling_ratio <= 0) reads ceil(box size / bins) points per bin and axis; a
# box larger than this many points (e.g. at 1e20) is an error rather than a loop without end
MAX_ADAPTIVE_GRID = 1 << 16


class AxisTaps(NamedTuple):
    """Bilinear taps of the sample points along one axis, for every box: arrays (R, bins, G).

    Point i of bin p of box r reads ``w_low * f[low] + w_high * f[high]``; both weights are 0
    for points outside the map (and for the padding points beyond a box's own grid size).
    """

    low: object
    high: object
    w_low: object
    w_high: object


class SamplingPlan(NamedTuple):
    batch: object  # (R,) int64 image of each box
    y: AxisTaps
    x: AxisTaps
    count: object  # (R,) number of points per bin, g_h * g_w (at least 1), in the features' dtype


def convert_boxes_to_roi_format(boxes, dtype=None):
    """A list of (R_i, 4) arrays -> (R, 5) ``batch_index, x1, y1, x2, y2``; an (R, 5) array is
    checked and returned. A nested list of numbers where an array is meant is converted.
    ``dtype``: None (keep the boxes'), float32 or float64."""
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"convert_boxes_to_roi_format: dtype must be None, float32 or float64, got {dtype!r}") \
                from None
        if dtype.kind != "f" or dtype.itemsize not in (4, 8):
            raise TypeError(f"convert_boxes_to_roi_format: dtype must be None, float32 or float64, got {dtype}")
    if isinstance(boxes, (list, tuple)):
        parts = []
        boxes = [as_boxes_arg(b, f"boxes[{i}]", dtype or np.float32) for i, b in enumerate(boxes)]
        xp = get_array_module(*boxes) if boxes else np
        for i, b in enumerate(boxes):
            check_boxes(b, f"boxes[{i}]")
            parts.append(xp.concatenate([xp.full((len(b), 1), i, dtype=b.dtype), b], axis=1))
        rois = xp.concatenate(parts, axis=0) if parts else np.zeros((0, 5), dtype=dtype or np.float32)
    else:
        rois = as_array_arg(boxes, "boxes")
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(f"boxes must be an (R, 5) array (batch index, x1, y1, x2, y2) or a list of (R_i, 4) "
                             f"arrays; got shape {tuple(rois.shape)}")
        check_boxes(rois[:, 1:], "boxes")
    return rois if dtype is None else rois.astype(dtype, copy=False)


def _axis_taps(start, bin_size, grid, bins, size, g_max, xp, dt):
    """Taps (R, bins, g_max) along one axis of length ``size``; torchvision's arithmetic."""
    p = xp.arange(bins, dtype=dt)[None, :, None]
    i_half = xp.arange(g_max, dtype=dt)[None, None, :] + dt.type(0.5)
    grid_t = xp.maximum(grid, 1).astype(dt)[:, None, None]  # a zero-size box has no points (all masked below)
    pos = start[:, None, None] + p * bin_size[:, None, None] + i_half * bin_size[:, None, None] / grid_t
    inside = (xp.arange(g_max)[None, None, :] < grid[:, None, None]) & (pos >= -1) & (pos <= size)
    pos = xp.minimum(xp.maximum(pos, 0), size)  # the upper clamp only moves points already outside
    low = xp.minimum(pos.astype(np.int64), size - 1)  # (so a box at 1e20 casts to a sane index)
    at_edge = low >= size - 1
    pos = xp.where(at_edge, low.astype(dt), pos)
    high = xp.where(at_edge, low, low + 1)
    frac = pos - low.astype(dt)  # "ly" / "lx"
    w_high = xp.where(inside, frac, 0).astype(dt)
    w_low = xp.where(inside, dt.type(1) - frac, 0).astype(dt)
    return AxisTaps(low, high, w_low, w_high)


def sampling_plan(rois, spatial_scale, output_size, sampling_ratio, aligned, height, width, dtype) -> SamplingPlan:
    """Where every sample point of every bin of every box reads, and with which weights."""
    xp = get_array_module(rois)
    dt = np.dtype(dtype)
    ph, pw = pair(output_size)
    rois = rois.astype(dt, copy=False)
    offset = dt.type(0.5 if aligned else 0.0)
    scale = dt.type(spatial_scale)
    x1, y1, x2, y2 = (rois[:, k] * scale - offset for k in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # force malformed boxes to be 1x1
        roi_w, roi_h = xp.maximum(roi_w, 1), xp.maximum(roi_h, 1)
    bin_h, bin_w = roi_h / dt.type(ph), roi_w / dt.type(pw)
    if sampling_ratio > 0:
        grid_h = xp.full(len(rois), sampling_ratio, dtype=np.int64)
        grid_w = grid_h
        g_h = g_w = int(sampling_ratio)  # known on the host: no read of the device arrays
    else:
        grid_h, grid_w = xp.ceil(roi_h / dt.type(ph)), xp.ceil(roi_w / dt.type(pw))
        too_many = xp.maximum(grid_h, grid_w) > MAX_ADAPTIVE_GRID
        if len(rois) and bool(too_many.any()):
            r = int(too_many.argmax())
            raise ValueError(f"roi_align: box {r} = {rois[r, 1:].tolist()} spans {float(roi_w[r]):g} x "
                             f"{float(roi_h[r]):g} feature pixels; with sampling_ratio <= 0 that is more than "
                             f"{MAX_ADAPTIVE_GRID} sample points per bin and axis: pass sampling_ratio > 0")
        grid_h, grid_w = grid_h.astype(np.int64), grid_w.astype(np.int64)
        g_h = max(int(grid_h.max()), 1) if len(rois) else 1  # the widest grid sets the taps' width
        g_w = max(int(grid_w.max()), 1) if len(rois) else 1
    count = xp.maximum(grid_h * grid_w, 1).astype(dt)
    y = _axis_taps(y1, bin_h, grid_h, ph, height, g_h, xp, dt)
    x = _axis_taps(x1, bin_w, grid_w, pw, width, g_w, xp, dt)
    return SamplingPlan(rois[:, 0].astype(np.int64), y, x, count)


def axis_matrix(taps: AxisTaps, r: int, size: int):
    """The (bins, size) interpolation matrix of box ``r`` along one axis (taps summed per bin)."""
    xp = get_array_module(taps.low)
    bins, g = taps.low.shape[1:]
    M = xp.zeros((bins, size), dtype=taps.w_low.dtype)
    rows = xp.repeat(xp.arange(bins), g)
    xp.add.at(M, (rows, taps.low[r].reshape(-1)), taps.w_low[r].reshape(-1))
    xp.add.at(M, (rows, taps.high[r].reshape(-1)), taps.w_high[r].reshape(-1))
    return M


def _band(M):
    """The column range [a, b) where the interpolation matrix is non-zero."""
    cols = get_array_module(M).flatnonzero(M.any(axis=0))
    return (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 0)


def roi_align_numpy(features, plan: SamplingPlan, output_size):
    """The specification: per box, ``W_y @ features[b] @ W_x.T / count`` (on the band of the
    map the box reads). Runs on NumPy or CuPy arrays; ``output_size`` is a (ph, pw) pair."""
    xp = get_array_module(features)
    R, (_, C, H, W) = len(plan.batch), features.shape
    out = xp.zeros((R, C, *output_size), dtype=features.dtype)
    for r in range(R):
        Wy, Wx = axis_matrix(plan.y, r, H), axis_matrix(plan.x, r, W)
        (y0, y1), (x0, x1) = _band(Wy), _band(Wx)
        window = features[plan.batch[r], :, y0:y1, x0:x1]  # (C, h, w)
        out[r] = Wy[:, y0:y1] @ window @ Wx[:, x0:x1].T / plan.count[r]  # (ph, h) @ (C, h, w) @ (w, pw)
    return out


def roi_align_backward_numpy(grad_out, plan: SamplingPlan, input_shape):
    """The adjoint: per box, ``features_grad[b] += W_y.T @ grad @ W_x / count``."""
    xp = get_array_module(grad_out)
    N, C, H, W = input_shape
    grad_in = xp.zeros(input_shape, dtype=grad_out.dtype)
    for r in range(len(plan.batch)):
        Wy, Wx = axis_matrix(plan.y, r, H), axis_matrix(plan.x, r, W)
        (y0, y1), (x0, x1) = _band(Wy), _band(Wx)
        grad_in[plan.batch[r], :, y0:y1, x0:x1] += Wy[:, y0:y1].T @ grad_out[r] @ Wx[:, x0:x1] / plan.count[r]
    return grad_in


def _kernels():
    from ..kernels import roi_align  # imports numba: on first use only

    return roi_align


# implementations are (forward, backward) pairs
ROI_ALIGN = KernelTable("roi_align", numpy=(roi_align_numpy, roi_align_backward_numpy),
                        numba=lambda: _kernels().IMPLS["numba"], cuda=lambda: _kernels().IMPLS["cuda"])


def roi_align(input, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False, impl: str = "auto"):
    """``torchvision.ops.roi_align``: (N, C, H, W) features, boxes (R, 5) or [(R_i, 4)] ->
    (R, C, ph, pw), differentiable with respect to the features. ``impl``: numpy | numba |
    cuda | auto."""
    x = as_array(input)
    check_shape("roi_align", "input", x, "(N, C, H, W)", ndim=4)
    check_float("roi_align", "input", x)
    xp = get_array_module(x)
    rois = convert_boxes_to_roi_format(boxes, x.dtype)
    check_batch_indices("roi_align", rois, x.shape[0])
    ph, pw = check_output_size(output_size, "roi_align")
    check_number("roi_align", "spatial_scale", spatial_scale, 0, lo_open=True)  # checked, used as given
    check_int("roi_align", "sampling_ratio", sampling_ratio)
    check_bool("roi_align", "aligned", aligned)
    forward, backward = ROI_ALIGN.select(impl, x)
    N, C, H, W = x.shape
    if len(rois) == 0:
        return apply(xp.zeros((0, C, ph, pw), dtype=x.dtype), (input,), lambda g: (xp.zeros_like(x),))
    plan = sampling_plan(rois, spatial_scale, (ph, pw), sampling_ratio, aligned, H, W, x.dtype)
    out = forward(x, plan, (ph, pw))
    return apply(out, (input,), lambda g: (backward(g, plan, x.shape),))
