"""Random box sets for kernel tests: clustered (so NMS has work), with exact duplicates,
zero-area boxes and tied scores mixed in."""

from __future__ import annotations

import numpy as np


def box_set(seed: int, n: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 200, (max(1, n // 8), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 5, (n, 2))
    wh = rng.uniform(0, 40, (n, 2))
    wh[rng.random(n) < 0.05] = 0  # zero-area boxes
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n > 3:
        boxes[1] = boxes[0]  # an exact duplicate
    scores = rng.random(n)
    scores[rng.random(n) < 0.3] = 0.5  # ties
    return boxes.astype(dtype), scores.astype(dtype)
