"""Array backend: which array module an array belongs to, device moves, kernel choice.

Every stage of mrcnn-np is written against an *array module* ``xp`` that is either
``numpy`` (host) or ``cupy`` (GPU). Functions ask the array they were given which module
it belongs to (:func:`get_array_module`) instead of importing one, so the same code runs
on both. CuPy is optional: importing :mod:`mrcnn_np` never imports it, and nothing here
needs a GPU.

Hot kernels (NMS, IoU, RoIAlign, ...) exist in several implementations selected with an
``impl`` argument:

``"numpy"``  the readable reference, the specification;
``"numba"``  a compiled CPU kernel (numba ``@njit``);
``"cuda"``   a numba.cuda GPU kernel (runs in the CUDA simulator where no GPU exists);
``"auto"``   ``"cuda"`` for CuPy arrays, otherwise ``"numba"`` when numba imports,
             otherwise ``"numpy"``.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from types import ModuleType

import numpy as np

IMPLS = ("auto", "numpy", "numba", "cuda")


@cache
def _cupy() -> ModuleType | None:
    """The ``cupy`` module if it imports and sees a GPU, else ``None`` (checked once)."""
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver, no device, broken install: behave as if absent
        return None
    return cupy


def cupy_available() -> bool:
    """True when CuPy is installed and a CUDA device is usable."""
    return _cupy() is not None


@cache
def numba_available() -> bool:
    """True when numba imports (it is a runtime dependency, so normally True)."""
    return importlib.util.find_spec("numba") is not None


def cuda_simulator_enabled() -> bool:
    """True when numba.cuda runs in its simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def is_cupy_array(x) -> bool:
    """True for a ``cupy.ndarray`` (without importing CuPy when it is not loaded)."""
    return type(x).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays) -> ModuleType:
    """``cupy`` if any argument is a CuPy array, else ``numpy``.

    Tensors of :mod:`mrcnn_np.autograd` are looked through to their ``.data``.
    """
    if any(is_cupy_array(_unwrap(a)) for a in arrays):
        return _cupy()
    return np


def _unwrap(x):
    """The array inside an autograd Tensor, or ``x`` itself."""
    return x.data if getattr(x, "_is_tensor", False) else x


def to_numpy(x) -> np.ndarray:
    """A host (NumPy) copy of ``x``; NumPy arrays are returned as they are."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def to_device(x, device: str = "cpu"):
    """Move an array to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy).

    Raises ``RuntimeError`` with a readable message when ``"cuda"`` is asked for and
    CuPy or a GPU is missing.
    """
    if device == "cpu":
        return to_numpy(x)
    if device in ("cuda", "gpu"):
        cp = _cupy()
        if cp is None:
            raise RuntimeError(
                "device='cuda' needs CuPy and a CUDA GPU; install the extra with "
                "`pip install 'mrcnn-np[gpu]'` on a machine with an NVIDIA driver"
            )
        return cp.asarray(x)
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def device_of(x) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if is_cupy_array(_unwrap(x)) else "cpu"


def resolve_impl(impl: str, *arrays) -> str:
    """Turn an ``impl`` argument into a concrete one: ``"numpy"``, ``"numba"`` or ``"cuda"``.

    ``"auto"`` picks ``"cuda"`` for CuPy inputs, else ``"numba"`` if available, else
    ``"numpy"``. An explicit choice is checked: ``"numba"`` on CuPy arrays is refused
    (it would silently copy to the host), and so is ``"cuda"`` without numba.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    on_gpu = any(is_cupy_array(_unwrap(a)) for a in arrays)
    if impl == "auto":
        if on_gpu:
            return "cuda"
        return "numba" if numba_available() else "numpy"
    if impl == "numba":
        if on_gpu:
            raise ValueError("impl='numba' runs on host arrays; got CuPy arrays (use 'cuda')")
        if not numba_available():
            raise RuntimeError("impl='numba' needs numba installed")
    if impl == "cuda" and not numba_available():
        raise RuntimeError("impl='cuda' needs numba (numba.cuda) installed")
    return impl
