"""The numba.cuda kernels as the CuPy stand-in sees them, for tests of the model's GPU path.

On a GPU, ``impl="auto"`` sends CuPy arrays to the numba.cuda kernels; the stand-in's arrays
cannot enter a numba.cuda kernel (they have no ``__cuda_array_interface__``), so without this
module a stand-in run falls back to the NumPy reference of every kernel, whose per-box loops
would dominate any count of syncs and say nothing about the GPU path.

:func:`installed` replaces each op's ``cuda`` implementation by its numba *CPU* kernel run on
the stand-in arrays' payloads, results handed back as stand-in arrays, and counts the
device-to-host reads the real CUDA wrapper makes (``SYNCS``: NMS copies its overlap bitmask to
the host for the greedy walk; box IoU, RoIAlign and the mask paste make none). The numba CPU and
CUDA kernels agree with the NumPy reference (exactly for box IoU, NMS and the paste, to rounding
for RoIAlign: ``tests/kernels``), so a model run with these stand-in kernels equals the host run with
``impl="auto"`` bit for bit, and its sync count is the GPU path's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib

import numpy as np

from mrcnn_np import backend
from tests import fake_cupy

# device-to-host reads (syncs) per call of each real CUDA wrapper in mrcnn_np/kernels
SYNCS = {"box_iou": 0, "nms": 1, "roi_align": 0, "paste_masks": 0, "conv2d": 0, "conv_transpose2d": 0}
# The convolutions have no CUDA kernel (on a GPU they are the specification: im2col and one cuBLAS
# product, which reads nothing back); they are here so that the stand-in run takes the host's tiled
# convolutions, whose products are summed tile by tile, and so equals the host run bit for bit.
TABLES = (("mrcnn_np.ops.boxes", "BOX_IOU"), ("mrcnn_np.ops.nms", "NMS"), ("mrcnn_np.ops.roi_align", "ROI_ALIGN"),
          ("mrcnn_np.model.transform", "PASTE"), ("mrcnn_np.nn.conv", "CONV2D"),
          ("mrcnn_np.nn.conv", "CONV_TRANSPOSE2D"))


def _payload(x):
    """Stand-in arrays -> their NumPy payload, through tuples, lists and NamedTuples (a RoIAlign plan)."""
    if isinstance(x, fake_cupy.ndarray):
        return x._a
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)._make(_payload(v) for v in x)
    if isinstance(x, (tuple, list)):
        return type(x)(_payload(v) for v in x)
    return x


def _device(x):
    return fake_cupy.ndarray._of(x) if isinstance(x, np.ndarray) else x


def _on_device(op: str, host_kernel):
    """``host_kernel`` (a numba CPU kernel) as a kernel on stand-in arrays, with the real one's syncs."""
    def kernel(*args, **kwargs):
        # a GPU's convolution is the specification (im2col), never Winograd's (which inference on the host may
        # use): the stand-in's tiled one is asked for im2col too
        kwargs.pop("winograd", None)
        out = host_kernel(*(_payload(a) for a in args), **kwargs)
        fake_cupy.counts.syncs += SYNCS[op]
        fake_cupy.counts.to_host += SYNCS[op]
        return tuple(_device(o) for o in out) if isinstance(out, tuple) else _device(out)
    return kernel


@contextlib.contextmanager
def installed():
    """Within the block, CuPy-like arrays take the stand-in kernels (``impl="auto"`` and ``"cuda"``).
    Use together with the installed stand-in (the ``fake_gpu`` fixture does both)."""
    modules = [(importlib.import_module(module), name) for module, name in TABLES]
    saved = [(module, name, getattr(module, name)) for module, name in modules]
    usable = backend.cuda_kernels_usable
    try:
        for module, name, table in saved:
            numba = table.numba()
            if isinstance(numba, tuple):  # (forward, backward)
                cuda = tuple(_on_device(table.op, k) for k in numba)
            else:
                cuda = _on_device(table.op, numba)
            setattr(module, name, dataclasses.replace(table, cuda=lambda cuda=cuda: cuda))
        backend.cuda_kernels_usable = lambda: True
        yield
    finally:
        for module, name, table in saved:
            setattr(module, name, table)
        backend.cuda_kernels_usable = usable
