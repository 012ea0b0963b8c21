"""Pick a balanced mini-batch of positive and negative training examples per image.

In:  a list of per-image labels (A,) int: ``>= 1`` positive, ``0`` negative, ``-1`` ignored.
Out: two lists of per-image uint8 masks (A,): the sampled positives and negatives.

At most ``batch_size_per_image * positive_fraction`` positives are drawn (all of them if
fewer exist), and negatives fill the rest of the batch. Ignored examples are never
drawn. Torchvision ``models/detection/_utils.py`` (``BalancedPositiveNegativeSampler``);
the draws come from the explicit ``rng`` (torchvision uses ``torch.randperm``).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..checks import check_int, check_label_list, check_number


class BalancedPositiveNegativeSampler:
    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        check_int("BalancedPositiveNegativeSampler", "batch_size_per_image", batch_size_per_image, 1)
        check_number("BalancedPositiveNegativeSampler", "positive_fraction", positive_fraction, 0, 1)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list, rng: np.random.Generator):
        """Per image (N_i,) labels (>= 1 positive, 0 negative, -1 ignored) -> (pos_masks,
        neg_masks), lists of (N_i,) uint8 masks drawn with ``rng``."""
        matched_idxs = check_label_list(matched_idxs)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            xp = get_array_module(labels)
            positive = xp.nonzero(labels >= 1)[0]
            negative = xp.nonzero(labels == 0)[0]
            num_pos = min(len(positive), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(len(negative), self.batch_size_per_image - num_pos)
            pos_pick = positive[xp.asarray(rng.permutation(len(positive))[:num_pos])]
            neg_pick = negative[xp.asarray(rng.permutation(len(negative))[:num_neg])]
            pos_mask, neg_mask = xp.zeros(len(labels), xp.uint8), xp.zeros(len(labels), xp.uint8)
            pos_mask[pos_pick] = 1
            neg_mask[neg_pick] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
