"""Assign each prediction (anchor or proposal) to a ground-truth box, or to none.

In:  an IoU matrix (M ground truths, N predictions).
Out: matches (N,) int64: the matched ground-truth index, or
     ``BELOW_LOW_THRESHOLD = -1`` (background) / ``BETWEEN_THRESHOLDS = -2`` (ignored).

A prediction matches its best ground truth when that IoU >= ``high_threshold``; below
``low_threshold`` it is background; in between, ignored. With
``allow_low_quality_matches``, every ground truth also keeps the predictions that overlap it
best (all of them, on ties), even below the threshold -- otherwise a small or oddly shaped
object may get no positive anchor at all.

Ren et al., "Faster R-CNN" (2015), sec. 3.1.2; torchvision ``models/detection/_utils.py``
(``Matcher``). Ties go to the lowest ground-truth index, as ``torch.max`` gives.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..checks import as_array_arg, check_bool, check_number, check_real_array, is_trusted


class Matcher:
    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False):
        high = check_number("Matcher", "high_threshold", high_threshold, finite=False)
        low = check_number("Matcher", "low_threshold", low_threshold, finite=False)
        check_bool("Matcher", "allow_low_quality_matches", allow_low_quality_matches)
        if low > high:
            raise ValueError(f"low_threshold {low_threshold} must be <= high_threshold {high_threshold}")
        self.high_threshold, self.low_threshold = high_threshold, low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix):
        """(M, N) -> (N,) int64 matches; M = 0 or N = 0 raise ValueError, as torchvision does."""
        match_quality_matrix = as_array_arg(match_quality_matrix, "match_quality_matrix")
        xp = get_array_module(match_quality_matrix)
        if match_quality_matrix.ndim != 2:
            raise ValueError(f"expected an (M, N) IoU matrix, got match_quality_matrix of shape "
                             f"{tuple(match_quality_matrix.shape)}")
        check_real_array("Matcher", "match_quality_matrix", match_quality_matrix)
        if match_quality_matrix.shape[0] == 0:
            raise ValueError("No ground-truth boxes available for one of the images during training")
        if match_quality_matrix.shape[1] == 0:
            raise ValueError("No proposal boxes available for one of the images during training")
        matches = match_quality_matrix.argmax(axis=0).astype(np.int64)  # first maximum on ties
        matched_vals = match_quality_matrix.max(axis=0)
        if not is_trusted() and bool((matched_vals != matched_vals).any()):  # NaN: false with both thresholds
            n = int((matched_vals != matched_vals).argmax())
            raise ValueError(f"match_quality_matrix[:, {n}] holds NaN; expected IoU values")
        all_matches = matches.copy()
        matches[matched_vals < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_for_each_gt = match_quality_matrix.max(axis=1)  # (M,)
            _, preds = xp.nonzero(match_quality_matrix == best_for_each_gt[:, None])
            matches[preds] = all_matches[preds]
        return matches


def labels_of_matches(matches, gt_labels):
    """(N,) matches and the ground truths' labels (G,) -> (N,) labels: the matched box's label,
    0 for background, -1 for ignored (the convention the samplers read). The RPN passes ones
    (object / not object), the RoI heads the class labels."""
    matches, gt_labels = as_array_arg(matches, "matches"), as_array_arg(gt_labels, "gt_labels")
    if matches.ndim != 1 or getattr(matches.dtype, "kind", None) not in ("i", "u"):
        raise TypeError(f"labels_of_matches: matches must be an (N,) integer array (a Matcher's output), got "
                        f"dtype {matches.dtype} and shape {tuple(matches.shape)}")
    if gt_labels.ndim != 1:
        raise ValueError(f"labels_of_matches: gt_labels must have shape (G,), got {tuple(gt_labels.shape)}")
    check_real_array("labels_of_matches", "gt_labels", gt_labels)
    bad = (matches < Matcher.BETWEEN_THRESHOLDS) | (matches >= len(gt_labels))
    if len(matches) and not is_trusted() and bool(bad.any()):
        n = int(bad.argmax())
        raise ValueError(f"labels_of_matches: matches[{n}] = {int(matches[n])}, but gt_labels holds {len(gt_labels)} "
                         f"label(s); expected a ground-truth index in 0..{len(gt_labels) - 1}, -1 or -2")
    xp = get_array_module(matches)
    labels = gt_labels[xp.maximum(matches, 0)]  # a copy: written below
    labels[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
    labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1
    return labels
