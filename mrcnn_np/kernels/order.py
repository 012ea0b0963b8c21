"""The order greedy NMS visits boxes in, shared by the NumPy reference and the kernels.

Plain array code (importing it does not import numba); runs on NumPy and CuPy arrays.
"""

from __future__ import annotations

from ..backend import get_array_module


def score_order(scores):
    """Indices by decreasing score; equal scores keep their index order (stable)."""
    xp = get_array_module(scores)
    return xp.argsort(-scores, kind="stable")
