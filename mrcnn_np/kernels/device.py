"""The hand-off between arrays and numba.cuda kernels, in one place for every kernel.

A kernel call makes one :class:`Launcher` for its inputs' array module; every choice of
transfer, allocation and stream below is made there, so the CuPy path and the host path run
the same kernel-calling code::

    run = Launcher(boxes)                          # CuPy or NumPy, from the inputs
    out = run.empty((R1, R2), boxes.dtype)         # an output of that module's kind
    run.launch(kernel, blocks, threads, run.input(boxes), ..., out)
    return run.result(out)

=========  =================================================  ==============================================
step       CuPy arrays (a GPU)                                NumPy arrays (the simulator; impl="cuda" on
                                                              host arrays)
=========  =================================================  ==============================================
inputs     shared, zero copy (``cuda.as_cuda_array``, made    copied to the device (``cuda.to_device``)
           C-contiguous first, which copies only when not)
outputs    CuPy arrays (``cp.empty``; ``cp.zeros``, a memset  numba device arrays (``cuda.device_array``;
           on the stream), shared with the kernel zero copy   zeroed on the device by :func:`_fill_zero`)
stream     CuPy's current stream (``cuda.external_stream``)   numba's default stream (``0``)
results    the CuPy arrays themselves, still being computed   copied to the host (``copy_to_host``, which
           on that stream: later CuPy work is ordered after   waits for the kernel)
=========  =================================================  ==============================================

Why ``as_cuda_array(x, sync=False)``: CuPy exports its current stream in
``__cuda_array_interface__``, and numba, by default, waits on that stream from the host for
every array it imports -- also when a CuPy array is passed to a kernel directly. The kernel is
queued on that very stream, so stream order already puts it after the work that wrote its
inputs: no wait is needed, and a host sync per argument would be a cost (see DESIGN.md,
Devices). CuPy and numba both use the device's primary context, so pointers are shared;
numba's current device must be CuPy's (device 0 unless one is selected: a model lives on
one device).

Where no GPU exists, the simulator (``NUMBA_ENABLE_CUDASIM=1``) runs the host path; it has
neither ``as_cuda_array`` nor ``external_stream``, so the CuPy branch runs on a GPU only
(``tests/kernels/test_cuda_handoff.py`` runs its logic with a stand-in for CuPy).

Also here, for the kernels: :func:`mul_rn`, the product that the compiler cannot fuse into an
FMA (kernels that must equal the NumPy reference bit for bit use it), and ``CUDA_KERNELS``
tables (each kernel module has one) that tests/kernels/test_ptx.py compiles to PTX.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from ..backend import get_array_module, is_cupy_array

THREADS = 128  # threads per block of the 1-D launches (a multiple of the 32-thread warp)


def blocks_for(n: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` threads that cover ``n`` elements, one thread each."""
    return math.ceil(n / threads)


if config.ENABLE_CUDASIM:
    def mul_rn(x, y):
        """``x * y`` (the simulator computes in NumPy scalars: one rounding, no FMA)."""
        return x * y
else:
    from llvmlite import ir
    from numba.cuda.extending import intrinsic

    _MUL_RN = {"float32": "__nv_fmul_rn", "float64": "__nv_dmul_rn"}  # libdevice, linked by numba

    @intrinsic
    def mul_rn(typingctx, x, y):
        """``x * y`` rounded once and never fused into an FMA (CUDA's ``__fmul_rn`` /
        ``__dmul_rn``; PTX ``mul.rn``), for float32 or float64.

        NVVM contracts ``a * b + c`` into one ``fma`` (one rounding instead of two) unless
        told not to, and numba offers no switch for that; a kernel that must equal the NumPy
        reference bit for bit writes every product that feeds an addition with ``mul_rn``.
        """
        if str(x) not in _MUL_RN or str(y) != str(x):
            return None
        name = _MUL_RN[str(x)]

        def codegen(context, builder, sig, args):
            t = context.get_value_type(sig.return_type)
            fn = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(t, [t, t]), name)
            return builder.call(fn, args)

        return x(x, y), codegen


@cuda.jit(cache=True)
def _fill_zero(flat, zero):
    """``flat[i] = 0`` for every i, one thread each: the host path's device-side zeros
    (no host buffer of zeros is built and copied over)."""
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = zero


class Launcher:
    """Transfers, allocations, the stream and the launch of one kernel call (module doc)."""

    def __init__(self, *like):
        self.xp = get_array_module(*like)
        self.on_cupy = self.xp is not np
        # CuPy owns its stream; numba only wraps the handle (no finaliser), for this call
        self.stream = cuda.external_stream(self.xp.cuda.get_current_stream().ptr) if self.on_cupy else 0

    def input(self, x):
        """An input array for a kernel: a C-contiguous CuPy array (shared at launch), or a
        device copy of a host array."""
        x = self.xp.ascontiguousarray(x)
        return x if self.on_cupy else cuda.to_device(x, stream=self.stream)

    def empty(self, shape, dtype):
        """An uninitialised output, for kernels that write every element read back."""
        if self.on_cupy:
            return self.xp.empty(shape, dtype=dtype)
        return cuda.device_array(shape, dtype=dtype, stream=self.stream)

    def zeros(self, shape, dtype):
        """A zeroed output (for kernels that accumulate), zeroed on the device."""
        if self.on_cupy:
            return self.xp.zeros(shape, dtype=dtype)  # a memset queued on CuPy's current stream
        out = self.empty(shape, dtype)
        self.launch(_fill_zero, blocks_for(out.size), THREADS, out.reshape(out.size), np.dtype(dtype).type(0))
        return out

    def launch(self, kernel, blocks, threads, *args):
        """``kernel[blocks, threads, stream](*args)``, CuPy arrays handed over zero copy; a grid
        with no block launches nothing."""
        if math.prod(blocks if isinstance(blocks, tuple) else (blocks,)) == 0:
            return
        args = tuple(cuda.as_cuda_array(a, sync=False) if is_cupy_array(a) else a for a in args)
        kernel[blocks, threads, self.stream](*args)

    def result(self, out):
        """An output as the caller's kind: the CuPy array itself, or a host copy."""
        return out if self.on_cupy else out.copy_to_host(stream=self.stream)

    def to_host(self, out) -> np.ndarray:
        """An output copied to the host (a sync on the GPU: for sequential host work)."""
        return self.xp.asnumpy(out) if self.on_cupy else out.copy_to_host(stream=self.stream)


# numba.cuda kernels of this module -> their argument types for a float type f (float32 or
# float64); tests/kernels/test_ptx.py compiles each to PTX for sm_90 in both.
CUDA_KERNELS = {
    "_fill_zero": lambda f: (f[::1], f),
}
