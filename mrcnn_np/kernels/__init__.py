"""Compiled kernels: Numba (CPU) and numba.cuda (GPU; the CUDA simulator without one).

Each module implements loops whose readable NumPy specification lives in
:mod:`mrcnn_np.ops`; the tests run every kernel against that specification. Kernels are
leaves: they import numpy, numba, each other and the device helpers (:mod:`.device`,
:func:`mrcnn_np.backend.get_array_module`), never ``ops``, ``nn`` or ``model``. The ops
import these modules lazily, through their :class:`~mrcnn_np.backend.KernelTable`, so
importing mrcnn_np does not import numba.

**Threads on the CPU.** The CPU kernels with a parallel loop (``prange``: RoIAlign, the mask
paste, box IoU) run it **serially** unless :data:`PARALLEL` is True. The model's time is mostly
BLAS products, which are multi-threaded themselves, and after each product OpenBLAS's idle
threads spin on the cores for a while; a numba parallel region that starts then shares the
cores with them (and its own OpenMP threads spin after it, in BLAS's way). Measured on the
2-core machine (a noisy one: medians of alternating runs), with numba's parallel loops on one
thread (``NUMBA_NUM_THREADS=1``) against two: a training iteration of the tiny model 0.30-0.31 s
against 0.42-0.44 s, a ResNet-50-FPN inference at 800x800 2.9 s against 3.2-4.2 s. Set
``mrcnn_np.kernels.PARALLEL = True`` to run those loops on numba's threads (on a machine with
cores to spare, after measuring). The convolutions do use every core: :mod:`.threads` shares a
conv's tiles out over Python threads and holds BLAS to one thread for the process
(``mrcnn_np.kernels.threads.THREADS``: how many; 1 gives BLAS its own threads back), and so do
the fully connected layers' products (:mod:`.linear`, rows shared out) and batch norm in training
(:mod:`.batch_norm`, channels shared out).
"""

PARALLEL = False  # run the CPU kernels' prange loops on numba's threads (see above)


def parallel_cpu() -> bool:
    """True when the CPU kernels should run their parallel versions (:data:`PARALLEL`)."""
    return PARALLEL
