"""Compiled kernels: Numba (CPU) and numba.cuda (GPU; the CUDA simulator without one).

Each module implements loops whose readable NumPy specification lives in
:mod:`mrcnn_np.ops`; the tests run every kernel against that specification. Kernels are
leaves: they import numpy, numba, each other and the device helpers (:mod:`.device`,
:func:`mrcnn_np.backend.get_array_module`), never ``ops``, ``nn`` or ``model``. The ops
import these modules lazily, through their :class:`~mrcnn_np.backend.KernelTable`, so
importing mrcnn_np does not import numba.
"""
