"""Compiled kernels: Numba (CPU) and numba.cuda (GPU; the CUDA simulator without one).

Each module implements loops whose readable NumPy specification lives in
:mod:`mrcnn_np.ops`; the tests run every kernel against that specification. Modules
here import numba lazily (on first use of a kernel), so importing mrcnn_np stays fast.
"""
