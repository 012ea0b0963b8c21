"""Mask paste kernels; the specification is :func:`mrcnn_np.model.transform.paste_masks_numpy`.

In: ``masks`` (R, Mh, Mw) -- each detection's mask probabilities, already padded -- and
``int_boxes`` (R, 4) int64 ``x1, y1, x2, y2``, inclusive; out: (R, H, W), mask ``r`` resized
bilinearly (``align_corners=False``) to its box's ``h = y2 - y1 + 1`` by ``w = x2 - x1 + 1``
pixels, placed at ``(y1, x1)``, clipped to the image, zero elsewhere.

The specification pastes one mask at a time with ``F.interpolate``: on a GPU that is a dozen
small launches per mask and a read of every box to the host first. These kernels do all masks
in one call, from the boxes where they are. Each evaluates, per output pixel, the
specification's arithmetic term for term, in the masks' dtype (:func:`source_taps`'s rule, then
:func:`_resample_axis`'s sums, width axis first)::

    scale  = float(Mw) / float(w)                              per box and axis, rounded once
    real   = max(scale * ((x - x1) + 0.5) - 0.5, 0)            the source column
    i0     = min(floor(real), Mw - 1);  i1 = i0 + (i0 < Mw - 1)
    lam    = clip(real - i0, 0, 1);     weights 1 - lam, lam
    row(i) = m[i, i0] * (1 - lam) + m[i, i1] * lam             the width pass, at source row i
    out    = row(j0) * (1 - mu) + row(j1) * mu                  the height pass (j0, j1, mu: the same
                                                               rule along y)

so both equal the specification bit for bit, in float32 and float64 (tests/kernels/test_paste.py):
``real - i0`` is exact (the fractional part of a float needs no more bits than the float), and
every product is rounded on its own -- numba's CPU code never contracts ``a * b + c`` into an
FMA without ``fastmath``; on the GPU the products are :func:`~.device.mul_rn`. A pixel depends
only on its own two columns and two rows, so computing just the pixels inside the image gives
the values the specification crops from its full resized mask. Integers become floats with
:func:`_as_float` (of the type of ``zero``, which is passed typed: a float32 kernel never widens
to float64, checked in the PTX); on the GPU the floor of ``real >= 0`` is its truncation
``int64(real)``.

``paste_masks_numba``: boxes in parallel (``prange``, where parallel CPU kernels are on:
:mod:`mrcnn_np.kernels`); per box, the width pass of the visible
columns into an (Mh, visible width) buffer, then each visible row as two reads of it -- the
specification's two passes, without its full-size temporaries, its crop and its per-mask calls.

``paste_masks_cuda``: one thread per output element ``out[r, y, x]``, every element written once
(no zeroing pass: a pixel outside its box writes 0). Blocks of 32 x 8 pixels of one mask, ``x``
fastest: a warp stores 32 neighbouring pixels of a row (one coalesced store), and all threads of a
block read the same box (broadcast loads). The output is the cost -- R x H x W values written,
as torchvision's paste writes them; a pixel inside its box adds four reads of its (Mh, Mw)
mask (a few KB, from L1/L2) and two divisions. The int boxes stay on the device: nothing is
read back, the call is one launch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda, int64, njit, prange
from numba.extending import intrinsic

from . import parallel_cpu
from .device import Launcher, mul_rn


def _cast_codegen(context, builder, sig, args):
    return context.cast(builder, args[0], sig.args[0], sig.return_type)


@intrinsic
def _as_float(typingctx, i, like):
    """``i`` (an integer) as a float of ``like``'s type (numba promotes int64 with float32 to float64)."""
    return like(i, like), _cast_codegen


if config.ENABLE_CUDASIM:
    def _as_float_gpu(i, like):
        """``i`` as a float of ``like``'s type (the simulator computes in NumPy scalars)."""
        return type(like)(i)
else:
    from numba.cuda.extending import intrinsic as cuda_intrinsic

    @cuda_intrinsic
    def _as_float_gpu(typingctx, i, like):
        """``i`` (an integer) as a float of ``like``'s type, on the GPU (``cvt.rn``)."""
        return like(i, like), _cast_codegen


# --- numba, CPU ------------------------------------------------------------------------------------
@njit(cache=True)
def _source(pos, start, extent, m, zero, half):
    """Along one axis: output pixel ``pos`` of a box starting at ``start``, ``extent`` pixels long, reads
    source pixels ``i0`` and ``i1`` of ``m`` with weights ``1 - lam`` and ``lam`` (the docstring's rule)."""
    one = half + half
    real = _as_float(m, zero) / _as_float(extent, zero) * (_as_float(pos - start, zero) + half) - half
    real = real if real > zero else zero
    i0 = min(int(math.floor(real)), m - 1)
    lam = min(max(real - _as_float(i0, zero), zero), one)
    return i0, (i0 + 1 if i0 < m - 1 else i0), one - lam, lam


@njit(parallel=True, cache=True)
def _paste_cpu(masks, boxes, zero, half, out):
    """out[r, y0:y1, x0:x1] = the visible part of mask r resized to its box; ``out`` is zeroed."""
    R, H, W = out.shape
    Mh, Mw = masks.shape[1], masks.shape[2]
    for r in prange(R):
        x1, y1, x2, y2 = boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3]
        x_0, x_1, y_0, y_1 = max(x1, 0), min(x2 + 1, W), max(y1, 0), min(y2 + 1, H)
        if x_1 <= x_0 or y_1 <= y_0:
            continue
        # the width pass, visible columns only: rows[i, x - x_0] = row(i) at column x
        rows = np.empty((Mh, x_1 - x_0), dtype=masks.dtype)
        for x in range(x_0, x_1):
            i0, i1, w0, lam = _source(x, x1, x2 - x1 + 1, Mw, zero, half)
            for i in range(Mh):
                rows[i, x - x_0] = masks[r, i, i0] * w0 + masks[r, i, i1] * lam
        # the height pass
        for y in range(y_0, y_1):
            j0, j1, v0, mu = _source(y, y1, y2 - y1 + 1, Mh, zero, half)
            for x in range(x_0, x_1):
                out[r, y, x] = rows[j0, x - x_0] * v0 + rows[j1, x - x_0] * mu


_paste_cpu_serial = njit(cache=True)(_paste_cpu.py_func)  # prange runs as range (mrcnn_np.kernels.PARALLEL)


def paste_masks_numba(masks, int_boxes, im_h: int, im_w: int):
    """(R, Mh, Mw) padded masks, (R, 4) int64 boxes -> (R, H, W), on the host."""
    out = np.zeros((len(masks), im_h, im_w), dtype=masks.dtype)
    dt = masks.dtype.type
    kernel = _paste_cpu if parallel_cpu() else _paste_cpu_serial
    kernel(np.ascontiguousarray(masks), np.ascontiguousarray(int_boxes, dtype=np.int64), dt(0), dt(0.5), out)
    return out


# --- numba.cuda ------------------------------------------------------------------------------------
@cuda.jit(cache=True)
def _paste_gpu(masks, boxes, zero, half, out):
    """out[r, y, x] = mask r resized to its box, read at (y, x), or 0 outside the box; thread x ->
    column x, thread y -> row y, block z -> mask r (striding over masks past the grid's 65535)."""
    x, y = cuda.grid(2)
    R, H, W = out.shape
    if x >= W or y >= H:
        return
    Mh, Mw = masks.shape[1], masks.shape[2]
    one = half + half
    for r in range(cuda.blockIdx.z, R, cuda.gridDim.z):
        x1, y1, x2, y2 = boxes[r, 0], boxes[r, 1], boxes[r, 2], boxes[r, 3]
        value = zero
        if x1 <= x and x <= x2 and y1 <= y and y <= y2:
            # column taps (source_taps along x)
            real = mul_rn(_as_float_gpu(Mw, zero) / _as_float_gpu(x2 - x1 + 1, zero),
                          _as_float_gpu(x - x1, zero) + half) - half
            real = real if real > zero else zero
            i0 = int64(real)  # real >= 0: truncation is the floor (int() and math.floor are device
            i0 = i0 if i0 < Mw - 1 else Mw - 1  # functions to numba.cuda: compile_ptx needs a GPU for them)
            lam = real - _as_float_gpu(i0, zero)
            lam = zero if lam < zero else (one if lam > one else lam)
            i1 = i0 + 1 if i0 < Mw - 1 else i0
            # row taps (source_taps along y)
            real = mul_rn(_as_float_gpu(Mh, zero) / _as_float_gpu(y2 - y1 + 1, zero),
                          _as_float_gpu(y - y1, zero) + half) - half
            real = real if real > zero else zero
            j0 = int64(real)
            j0 = j0 if j0 < Mh - 1 else Mh - 1
            mu = real - _as_float_gpu(j0, zero)
            mu = zero if mu < zero else (one if mu > one else mu)
            j1 = j0 + 1 if j0 < Mh - 1 else j0
            # width pass at rows j0 and j1, then the height pass (_resample_axis's sums)
            w0 = one - lam
            row0 = mul_rn(masks[r, j0, i0], w0) + mul_rn(masks[r, j0, i1], lam)
            row1 = mul_rn(masks[r, j1, i0], w0) + mul_rn(masks[r, j1, i1], lam)
            value = mul_rn(row0, one - mu) + mul_rn(row1, mu)
        out[r, y, x] = value


THREADS = (32, 8)  # (columns, rows) per block: a warp spans 32 pixels of one image row
MAX_GRID_Z = 65535  # CUDA's limit on gridDim.z; more masks are strided over


def paste_masks_cuda(masks, int_boxes, im_h: int, im_w: int):
    """(R, Mh, Mw) padded masks, (R, 4) int64 boxes -> (R, H, W), an array of the masks' kind (CuPy
    or NumPy); one launch, no sync."""
    run = Launcher(masks, int_boxes)
    R = len(masks)
    out = run.empty((R, im_h, im_w), masks.dtype)  # every element is written
    blocks = (math.ceil(im_w / THREADS[0]), math.ceil(im_h / THREADS[1]), min(R, MAX_GRID_Z))
    dt = masks.dtype.type
    run.launch(_paste_gpu, blocks, THREADS, run.input(masks), run.input(int_boxes), dt(0), dt(0.5), out)
    return run.result(out)


# numba.cuda kernels of this module -> their argument types for a float type f (float32 or
# float64); tests/kernels/test_ptx.py compiles each to PTX for sm_90 in both.
CUDA_KERNELS = {
    "_paste_gpu": lambda f: (f[:, :, ::1], int64[:, ::1], f, f, f[:, :, ::1]),
}
EXACT = {"_paste_gpu"}  # equal to the NumPy reference bit for bit: no FMA in the PTX
