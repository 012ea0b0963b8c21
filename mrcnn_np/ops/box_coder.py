"""Box regression targets: the (dx, dy, dw, dh) that move a reference box onto a target.

encode: reference boxes P (R, 4) and target boxes G (R, 4) -> deltas (R, 4)::

    dx = wx * (Gx - Px) / Pw      dw = ww * log(Gw / Pw)      (x, y: centres; w, h: sizes)
    dy = wy * (Gy - Py) / Ph      dh = wh * log(Gh / Ph)

decode: deltas (R, 4K) and reference boxes (R, 4) -> boxes (R, K, 4), the inverse, with
dw and dh clamped at ``log(1000 / 16)`` so that ``exp`` cannot explode.

Girshick et al., "Rich feature hierarchies..." (R-CNN, 2014), appendix C; torchvision
``models/detection/_utils.py`` (``BoxCoder``, ``encode_boxes``). Operations and their order
follow torchvision's; results agree to the last bit except where NumPy's ``exp`` / ``log``
round differently from torch's (one ulp: ~1e-7 relative in float32, ~1e-16 in float64).
The RPN uses weights (1, 1, 1, 1); the box head (10, 10, 5, 5).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module
from ..checks import as_array_arg, as_boxes_arg, check_float, check_number, check_numbers, check_real_array, check_shape

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip: float = BBOX_XFORM_CLIP):
        """``weights`` (wx, wy, ww, wh): four positive numbers; ``bbox_xform_clip``: the clamp of
        dw and dh, a positive number (``math.inf``: no clamp)."""
        self.weights = check_numbers("BoxCoder", "weights", weights, 4, 0, lo_open=True)
        check_number("BoxCoder", "bbox_xform_clip", bbox_xform_clip, 0, lo_open=True, finite=False)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes, proposals):
        """Deltas (R, 4) that take each ``proposals`` box onto its ``reference_boxes`` box
        (torchvision's argument names: the reference is the ground truth). Lists are taken as
        float64 arrays."""
        reference_boxes = as_boxes_arg(reference_boxes, "reference_boxes")
        proposals = as_boxes_arg(proposals, "proposals")
        for name, arr in (("reference_boxes", reference_boxes), ("proposals", proposals)):
            check_shape("encode", name, arr, "(R, 4)", ndim=2, dims={1: 4})
            check_real_array("encode", name, arr)
        xp = get_array_module(reference_boxes, proposals)
        if reference_boxes.shape != proposals.shape:
            raise ValueError(f"encode: reference_boxes and proposals must pair up (one reference box per proposal), "
                             f"got shapes {tuple(reference_boxes.shape)} and {tuple(proposals.shape)}")
        wx, wy, ww, wh = (proposals.dtype.type(w) for w in self.weights)
        ex_widths = proposals[:, 2] - proposals[:, 0]
        ex_heights = proposals[:, 3] - proposals[:, 1]
        ex_ctr_x = proposals[:, 0] + 0.5 * ex_widths
        ex_ctr_y = proposals[:, 1] + 0.5 * ex_heights
        gt_widths = reference_boxes[:, 2] - reference_boxes[:, 0]
        gt_heights = reference_boxes[:, 3] - reference_boxes[:, 1]
        gt_ctr_x = reference_boxes[:, 0] + 0.5 * gt_widths
        gt_ctr_y = reference_boxes[:, 1] + 0.5 * gt_heights
        return xp.stack([
            wx * (gt_ctr_x - ex_ctr_x) / ex_widths,
            wy * (gt_ctr_y - ex_ctr_y) / ex_heights,
            ww * xp.log(gt_widths / ex_widths),
            wh * xp.log(gt_heights / ex_heights),
        ], axis=1)

    def decode(self, rel_codes, boxes):
        """Deltas (R, 4K) applied to reference ``boxes`` (R, 4) -> predicted boxes (R, K, 4).
        Lists are taken as float64 arrays."""
        rel_codes, boxes = as_array_arg(rel_codes, "rel_codes", np.float64), as_boxes_arg(boxes)
        check_shape("decode", "boxes", boxes, "(R, 4)", ndim=2, dims={1: 4})
        check_real_array("decode", "boxes", boxes)
        if getattr(rel_codes, "ndim", 0) < 2:
            raise ValueError(f"decode: expected rel_codes of shape (R, 4K), got shape {tuple(rel_codes.shape)}")
        check_float("decode", "rel_codes", rel_codes)
        xp = get_array_module(rel_codes, boxes)
        R = boxes.shape[0]
        if rel_codes.shape[0] != R or (R and rel_codes.size % (4 * R)):
            raise ValueError(f"decode: expected deltas of shape ({R}, 4K) for {R} boxes, got rel_codes of shape "
                             f"{tuple(rel_codes.shape)}")
        if R == 0:  # no boxes (e.g. an image without proposals): no predictions, of the right shape
            return xp.zeros((0, rel_codes.shape[-1] // 4, 4), dtype=rel_codes.dtype)
        rel_codes = rel_codes.reshape(R, -1)  # (R, ..., 4K) -> (R, 4K)
        boxes = boxes.astype(rel_codes.dtype, copy=False)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = xp.minimum(rel_codes[:, 2::4] / ww, self.bbox_xform_clip)
        dh = xp.minimum(rel_codes[:, 3::4] / wh, self.bbox_xform_clip)
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (xp.exp(dw) * widths[:, None])
        half_h = 0.5 * (xp.exp(dh) * heights[:, None])
        pred = xp.stack([pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h], axis=2)
        return pred.reshape(R, -1, 4)  # (R, K, 4)
