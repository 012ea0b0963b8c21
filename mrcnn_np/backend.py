"""Array backend: which array module an array belongs to, device moves, kernel choice.

Every stage of mrcnn-np is written against an *array module* ``xp`` that is either
``numpy`` (host) or ``cupy`` (GPU). Functions ask the array they were given which module
it belongs to (:func:`get_array_module`) instead of importing one, so the same code runs
on both. CuPy is optional: importing :mod:`mrcnn_np` never imports it, and nothing here
needs a GPU.

Hot kernels (NMS, IoU, RoIAlign, ...) exist in several implementations selected with an
``impl`` argument, resolved against each op's :class:`KernelTable`:

``"numpy"``  the readable reference, the specification;
``"numba"``  a compiled CPU kernel (numba ``@njit``);
``"cuda"``   a numba.cuda GPU kernel (runs in the CUDA simulator where no GPU exists);
``"auto"``   ``"cuda"`` for CuPy arrays (when numba.cuda sees a GPU), otherwise ``"numba"``
             -- where the op has that kernel and numba imports; otherwise ``"numpy"``,
             which runs on either array module.

``with default_impl("numpy"):`` makes ``"auto"`` mean the NumPy reference everywhere (the
model then runs the readable specification of every kernel, on the host or the device).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
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


@cache
def cuda_kernels_usable() -> bool:
    """True when numba.cuda kernels can run on CuPy arrays: numba imports, sees a real GPU, and
    is not the simulator (which works on host arrays only). Checked once."""
    if not numba_available() or cuda_simulator_enabled():
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # a broken CUDA install: no kernels, the NumPy reference still runs
        return False


_DEFAULT_IMPL = ["auto", None]  # what "auto" means when not "auto", and for which ops (None: all): default_impl()


@contextlib.contextmanager
def default_impl(impl: str, ops=None):
    """Within the block, ``impl="auto"`` resolves to ``impl`` (e.g. ``"numpy"``: the reference
    of every kernel) where the op has it; with ``ops`` (op names, e.g. ``("batch_norm",)``) only
    for those, the other ops resolving ``"auto"`` as they would outside any block. The innermost
    block decides."""
    if impl not in IMPLS:
        raise ValueError(f"default_impl: impl must be one of {IMPLS}, got {impl!r}")
    if ops is not None:
        if not isinstance(ops, (list, tuple, set, frozenset)) or not all(isinstance(op, str) for op in ops):
            raise TypeError(f"default_impl: ops must be None or a sequence of op names, got {ops!r}")
        ops = frozenset(ops)
    before = list(_DEFAULT_IMPL)
    _DEFAULT_IMPL[:] = [impl, ops]
    try:
        yield
    finally:
        _DEFAULT_IMPL[:] = before


def is_cupy_array(x) -> bool:
    """True for a ``cupy.ndarray`` (without importing CuPy when it is not loaded)."""
    return type(x).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays) -> ModuleType:
    """``cupy`` if any argument is a CuPy array, else ``numpy``.

    Tensors of :mod:`mrcnn_np.autograd` are looked through to their ``.data``.
    """
    if any(is_cupy_array(as_array(a)) for a in arrays):
        return _cupy()
    return np


def as_array(x):
    """The array inside an autograd Tensor, or ``x`` itself (an array, a number, None).

    The one way library code looks through a Tensor to its data; it never copies."""
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
    return "cuda" if is_cupy_array(as_array(x)) else "cpu"


DEVICES = ("cpu", "cuda")


def check_device(device, op: str = "device") -> str:
    """``device`` as ``"cpu"`` or ``"cuda"`` (``"gpu"`` is read as ``"cuda"``); anything else is refused
    by name. Does not check that a GPU is there (:func:`to_device` does, when something moves)."""
    if not isinstance(device, str):
        raise TypeError(f"{op}: device must be 'cpu' or 'cuda', got {type(device).__name__}")
    device = "cuda" if device == "gpu" else device
    if device not in DEVICES:
        raise ValueError(f"{op}: unknown device {device!r}; expected 'cpu' or 'cuda'")
    return device


@dataclass(frozen=True)
class KernelTable:
    """One op's table of implementations, and the one place an ``impl`` argument is resolved.

    ``numpy`` is the reference implementation itself; ``numba`` and ``cuda`` (where the op
    has them) are *loaders*: functions of no arguments that import the kernel module and
    return the implementation, so that numba is imported on first use, not with mrcnn_np.
    An implementation is what the op calls: a function, or for a differentiable op a
    ``(forward, backward)`` pair. ::

        NMS = KernelTable("nms", numpy=nms_numpy, numba=lambda: _kernels().nms_numba)
        keep = NMS.select(impl, boxes, scores)(boxes, scores, iou_threshold)
    """

    op: str
    numpy: object
    numba: Callable[[], object] | None = None
    cuda: Callable[[], object] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The implementations this op has, e.g. ``("numpy", "numba", "cuda")``."""
        return tuple(name for name in IMPLS[1:] if getattr(self, name) is not None)

    def resolve(self, impl: str, *arrays) -> str:
        """Turn ``impl`` into one of :attr:`names` for these ``arrays``.

        ``"auto"`` picks ``"cuda"`` for CuPy arrays, else ``"numba"`` when numba imports, else
        ``"numpy"`` (the NumPy reference runs on either array module); an implementation the
        op lacks is skipped. An explicit choice is checked: one the op lacks is a ValueError
        naming the ones it has, ``"numba"`` on CuPy arrays is refused (it would silently copy
        to the host), and ``"numba"`` / ``"cuda"`` without numba is a RuntimeError.
        """
        if impl not in IMPLS:
            raise ValueError(f"{self.op}: impl must be one of {IMPLS}, got {impl!r}")
        on_gpu = any(is_cupy_array(as_array(a)) for a in arrays)
        default, ops = _DEFAULT_IMPL
        if impl == "auto" and default != "auto" and default in self.names and (ops is None or self.op in ops):
            impl = default
            if impl == "numba" and on_gpu:
                impl = "auto"  # a host kernel never runs on device arrays
        if impl == "auto":
            if on_gpu:
                return "cuda" if "cuda" in self.names and cuda_kernels_usable() else "numpy"
            return "numba" if "numba" in self.names and numba_available() else "numpy"
        if impl not in self.names:
            raise ValueError(f"{self.op} has no impl={impl!r}; it has {self.names} (or 'auto')")
        if impl == "numba" and on_gpu:
            raise ValueError(f"{self.op}: impl='numba' runs on host arrays; got CuPy arrays (use 'cuda' or 'numpy')")
        if impl != "numpy" and not numba_available():
            raise RuntimeError(f"{self.op}: impl={impl!r} needs numba installed")
        return impl

    def select(self, impl: str, *arrays):
        """The implementation to call for ``impl`` on ``arrays`` (see :meth:`resolve`)."""
        name = self.resolve(impl, *arrays)
        return self.numpy if name == "numpy" else getattr(self, name)()
