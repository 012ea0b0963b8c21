"""Moving arrays into numba.cuda kernels: CuPy arrays are shared zero-copy, host arrays copied."""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..backend import get_array_module


def to_cuda(x):
    """A numba device array for a NumPy or CuPy array (C-contiguous)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    return cuda.to_device(x) if xp is np else cuda.as_cuda_array(x)


def from_cuda(d, like):
    """A device array back as the kind of ``like``: NumPy (copied to host) or CuPy (shared)."""
    xp = get_array_module(like)
    return d.copy_to_host() if xp is np else xp.asarray(d)
