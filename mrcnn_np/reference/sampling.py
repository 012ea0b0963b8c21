"""Patches that make torchvision's training comparable with ours number for number.

torchvision samples anchors and RoIs with torch's global generator, we with a NumPy Generator:
:func:`replay_sampling` makes torchvision's two samplers return a draw of ours, given as the
``sampled`` dict our training calls return (``model.loss(..., return_sampled=True)``,
``train_step(..., return_sampled=True)``). :func:`float64_labels` removes torchvision's
float32 RPN labels, so that a float64 comparison is float64 throughout. Both patch a
torchvision model in place. Needs the ``reference`` extra.
"""

from __future__ import annotations

import numpy as np

from . import require_torch


def float64_labels(tv_rpn) -> None:
    """Torchvision builds the RPN labels as float32 whatever the model's dtype, and torch then
    evaluates the BCE in float32: a float64 model's objectness loss has float32 precision. Ours
    keeps the model's dtype; to compare float64 arithmetic, make torchvision's RPN ``tv_rpn``
    give labels in the anchors' dtype (in place)."""
    assign = tv_rpn.assign_targets_to_anchors

    def assign_in_anchor_dtype(anchors, targets):
        labels, matched = assign(anchors, targets)
        return [lab.to(anchors[0].dtype) for lab in labels], [m.to(anchors[0].dtype) for m in matched]

    tv_rpn.assign_targets_to_anchors = assign_in_anchor_dtype


def replay_sampling(tv, sampled: dict) -> None:
    """Make torchvision's two samplers return the anchors and RoIs of ``sampled``, the draw one of
    our training calls returned (``{"rpn": (pos_masks, neg_masks), "roi_heads": (pos_masks,
    neg_masks)}``, one boolean mask per image), and its RPN labels float64-exact
    (:func:`float64_labels`). Call after our step, before torchvision's."""
    torch = require_torch()
    float64_labels(tv.rpn)
    rpn_pos, rpn_neg = sampled["rpn"]
    roi_pos, roi_neg = sampled["roi_heads"]
    tv.rpn.fg_bg_sampler = lambda _l: ([torch.from_numpy(p) for p in rpn_pos], [torch.from_numpy(n) for n in rpn_neg])
    tv.roi_heads.fg_bg_sampler = lambda _l: ([torch.from_numpy(p.astype(np.uint8)) for p in roi_pos],
                                             [torch.from_numpy(n.astype(np.uint8)) for n in roi_neg])
