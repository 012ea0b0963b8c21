"""Batches for training: horizontal flips and a loader whose batches are a pure function of the
seed and the iteration.

In:  a dataset (``len`` and ``[i] -> (image, target)``, e.g. :class:`~mrcnn_np.data.coco.CocoDataset`).
Out: ``DataLoader.batch(t)`` -> ``(images, targets)``, lists of length ``batch_size`` (shorter at
     the end of an epoch), each sample flipped left-right with probability ``flip_prob`` --
     the only augmentation of torchvision's detection reference recipe
     (``references/detection/presets.py``, ``RandomHorizontalFlip(0.5)``).

Random access by iteration is what makes training resumable exactly: nothing random is
carried between iterations, so a run restarted at iteration ``t`` draws what it would have.
"""

from __future__ import annotations

import numpy as np

from ..checks import is_int, is_number
from .coco import DatasetError


def hflip(image: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
    """Mirror left-right: image (H, W, C), boxes (G, 4) ``x1' = W - x2, x2' = W - x1``, masks (G, ..., W).

    Returns new arrays; the other target entries are passed on.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"hflip: image must be (H, W) or (H, W, C), got shape {image.shape}")
    w = image.shape[1]
    out = dict(target)
    if "boxes" in target:
        boxes = np.asarray(target["boxes"])
        out["boxes"] = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)  # (G, 4)
    if "masks" in target:
        out["masks"] = np.asarray(target["masks"])[..., ::-1].copy()  # the last axis is W
    return image[:, ::-1].copy(), out


class DataLoader:
    """Batches of ``(images, targets)`` from a dataset, a pure function of ``(seed, iteration)``.

    Iterations are numbered 0, 1, 2, ... over an endless stream of epochs of
    :attr:`batches_per_epoch` batches each; iteration ``t`` is batch ``j = t % batches_per_epoch``
    of epoch ``e = t // batches_per_epoch``: positions ``j*B .. j*B+B-1`` of that epoch's order
    ``np.random.default_rng([seed, e]).permutation(len(dataset))`` (``arange`` when not
    ``shuffle``). The last batch of an epoch is short when ``B`` does not divide the dataset,
    so every image appears exactly once per epoch. Sample at position ``p`` of epoch ``e`` is
    flipped (:func:`hflip`) when ``np.random.default_rng([seed, e, p, 1]).random() < flip_prob``.
    So ``batch(t)`` needs no state, and training resumes exactly from the iteration number.
    Iterating yields one epoch (iterations ``0 .. batches_per_epoch - 1``).
    """

    def __init__(self, dataset, batch_size: int = 2, *, shuffle: bool = True, flip_prob: float = 0.5, seed: int = 0):
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an int >= 1, got {batch_size!r}")
        if not (is_number(flip_prob) and 0 <= flip_prob <= 1):
            raise ValueError(f"DataLoader: flip_prob must lie in [0, 1], got {flip_prob!r}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative int, got {seed!r}")
        if len(dataset) == 0:
            where = getattr(dataset, "file", type(dataset).__name__)
            raise DatasetError(f"DataLoader: no images to train on in {where}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.flip_prob, self.seed = bool(shuffle), float(flip_prob), int(seed)
        self._order = (-1, None)  # (epoch, its permutation): the last one, cached

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.dataset) // self.batch_size)  # ceil

    def __len__(self) -> int:
        return self.batches_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s dataset indices, int64 (len(dataset),)."""
        if self._order[0] != epoch:
            n = len(self.dataset)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order = (epoch, perm)
        return self._order[1]

    def indices(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """Iteration -> dataset indices int64 (b,) and flips bool (b,) of its samples (b <= batch_size)."""
        if not is_int(iteration) or iteration < 0:
            raise ValueError(f"DataLoader: iteration must be a non-negative int, got {iteration!r}")
        epoch, j = divmod(int(iteration), self.batches_per_epoch)
        positions = range(j * self.batch_size, min((j + 1) * self.batch_size, len(self.dataset)))
        flips = [self.flip_prob > 0 and np.random.default_rng([self.seed, epoch, p, 1]).random() < self.flip_prob
                 for p in positions]
        return self.order(epoch)[list(positions)], np.asarray(flips, dtype=bool)

    def batch(self, iteration: int) -> tuple[list, list]:
        """Iteration -> ``(images, targets)``, two lists of the batch's samples."""
        images, targets = [], []
        for index, flip in zip(*self.indices(iteration), strict=True):
            image, target = self.dataset[int(index)]
            if flip:
                image, target = hflip(image, target)
            images.append(image)
            targets.append(target)
        return images, targets

    def __iter__(self):
        for t in range(self.batches_per_epoch):
            yield self.batch(t)


