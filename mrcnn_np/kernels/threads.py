"""The CPU kernels' threads: a conv's tiles (and RoIAlign's boxes) shared out over the cores.

A tiled convolution (:mod:`.conv`) is a loop of independent tiles, each an im2col copy (NumPy, or
a numba loop for a strided conv) and a product (BLAS). Left to itself, OpenBLAS runs each product
on all cores but the copy on one, and after every product its idle threads spin on the cores for
a while, where they slow the copy that follows (measured on the 2-core machine, the demo's
training iteration: the copies took 64 ms with two BLAS threads against 48 ms with one). So when
:func:`cpu_threads` is more than 1 the tiles themselves are shared out instead, each thread copying
and multiplying its own run of tiles, and BLAS runs on one thread in every thread (set for the whole process, through
threadpoolctl, the first time a kernel asks). NumPy's copies, BLAS and the ``nogil`` numba
kernels release the GIL, so the threads run side by side. RoIAlign's forward (:mod:`.roi_align`)
shares out its boxes the same way (where numba's own threads are off: :data:`mrcnn_np.kernels.PARALLEL`).

The partition depends only on the shapes and the thread count, never on timing, so a run is
reproducible bit for bit on the same machine with the same setting; a different count sums a
conv's weight gradient in a different grouping, which changes its last bits (RoIAlign's
boxes never interact in the forward, and its backward runs on one thread: the same bits on any count).
"""

from __future__ import annotations

import os

import numpy as np

THREADS: int | None = None  # threads of the CPU kernels (None: the cores this process may run on); 1: serial
MIN_PARALLEL_MACS = 1 << 22  # multiply-adds per thread below which a product's rows are not shared out
ROW_BLOCK = 16  # rows of a product shared out together (a multiple of BLAS's register block)
MIN_SHARED_COPY = 1 << 19  # values of a copy below which it is not shared out (a hand-off: ~50 us)


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

_pool = None  # (pid, ThreadPoolExecutor), made at the first call shared out
_blas_limited = None  # threadpoolctl's limiter holding BLAS to one thread, or False where it is missing


def cpu_threads() -> int:
    """The number of threads a kernel's work is shared out over: :data:`THREADS`, or the usable cores
    (:data:`CORES`); 1 where threadpoolctl is missing (BLAS could not be held to one thread). Holds BLAS
    to one thread while this is more than 1, and gives it back its own count when :data:`THREADS` is 1."""
    global _blas_limited
    wanted = CORES if THREADS is None else THREADS
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ValueError(f"mrcnn_np.kernels.threads.THREADS must be a positive int or None, got {THREADS!r}")
    if wanted == 1:
        if _blas_limited:
            _blas_limited.restore_original_limits()
            _blas_limited = None
        return 1
    if _blas_limited is None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            _blas_limited = False
        else:
            _blas_limited = threadpool_limits(limits=1, user_api="blas")
    return wanted if _blas_limited is not False else 1


def in_parallel(work, chunks: list) -> list:
    """``[work(chunk) for chunk in chunks]``, one chunk per thread (the first on the caller's thread)."""
    global _pool
    if len(chunks) <= 1:
        return [work(chunk) for chunk in chunks]
    if _pool is None or _pool[0] != os.getpid() or _pool[1]._max_workers < len(chunks) - 1:
        from concurrent.futures import ThreadPoolExecutor

        _pool = (os.getpid(), ThreadPoolExecutor(len(chunks) - 1, thread_name_prefix="mrcnn_np-cpu"))
    futures = [_pool[1].submit(work, chunk) for chunk in chunks[1:]]
    first = work(chunks[0])
    return [first, *(future.result() for future in futures)]


def split(tiles: list, sizes: list, parts: int) -> list:
    """``tiles`` as at most ``parts`` runs of consecutive tiles of about equal total ``sizes``: each tile
    goes to the part its middle falls in (tiles of 77, 77 and 7 columns over 2 parts: 77 and 84, where
    closing a run once it reached its share gave 154 and 7)."""
    if parts <= 1 or len(tiles) <= 1:
        return [tiles]
    total, parts = sum(sizes), min(parts, len(tiles))
    runs, done = [[] for _ in range(parts)], 0
    for tile, size in zip(tiles, sizes, strict=True):
        runs[min(parts - 1, (2 * done + size) * parts // max(1, 2 * total))].append(tile)  # middle * parts // total
        done += size
    return [run for run in runs if run]


def share_out(run, tiles: list, chunks: list, threads: int) -> list:
    """``run`` a kernel's tiles: a run of tiles per thread when there are enough of them (``chunks``, from
    :func:`split`), otherwise the tiles one after the other on this thread, ``run(tiles, threads)`` sharing
    out each tile's products. Returns ``run``'s results."""
    if len(chunks) >= threads or threads == 1:
        return in_parallel(run, chunks)
    return [run(tiles, threads)]


def copy_parts(values: int, threads: int) -> int:
    """How many of ``threads`` a copy of ``values`` values is shared out over: one per
    :data:`MIN_SHARED_COPY` values, at most ``threads`` (1 or 0: not shared out)."""
    return min(threads, values // MIN_SHARED_COPY)


def shared_copy(target, source, threads: int) -> None:
    """``np.copyto(target, source)``, shared out over ``threads`` when the copy holds at least
    :data:`MIN_SHARED_COPY` values (a padded input, a single tile's im2col gather: otherwise one thread copies
    while the others wait for the product): along the first axis of at least 4 entries per thread (3 planes
    over 2 threads would leave one thread twice the other's copy), else the longest."""
    parts = copy_parts(target.size, threads)
    if parts <= 1 or target.ndim == 0:
        np.copyto(target, source)
        return
    axis = next((a for a, n in enumerate(target.shape) if n >= 4 * parts), int(np.argmax(target.shape)))
    index = (slice(None),) * axis
    in_parallel(lambda b: np.copyto(target[(*index, slice(*b))], source[(*index, slice(*b))]),
                ranges(target.shape[axis], parts))


def ranges(n: int, parts: int, block: int = 1) -> list:
    """``0..n`` as at most ``parts`` consecutive ``(start, stop)`` ranges of whole blocks of ``block``
    (the last may be shorter); ``[(0, n)]`` when ``parts`` <= 1 or ``n`` is 0."""
    if parts <= 1 or n == 0:
        return [(0, n)]
    per_part = -(-n // parts)  # ceil(n / parts)
    width = -(-per_part // block) * block  # rounded up to whole blocks
    return [(start, min(n, start + width)) for start in range(0, n, width)]


def cuts(length: int, most: int, parts: int, copies: int = 1) -> list:
    """Edges ``[0, ..., length]`` of consecutive pieces of at most ``most`` (rows of a map, or images), the
    same for each of ``copies`` (images cut alike). Where the pieces are few (fewer than 8 per one of
    ``parts`` workers, so a run of consecutive ones per worker, :func:`split`, would be uneven), they are
    as many for every worker as the length allows, and differ by at most one, the longer ones spread out
    (so :func:`split`'s runs of them come out even): bands of 12, 12 and 1 rows of a 25-row map left one of
    2 threads 96% of the work, of 7, 7, 7 and 4 rows 56%; of 6, 7, 6 and 6 rows 52%."""
    count = -(-length // most)
    if parts > 1 and 0 < copies * count < 8 * parts:
        count = next((c for c in range(count, length + 1) if (copies * c) % parts == 0), count)
        return [(2 * i * length + count) // (2 * count) for i in range(count + 1)]  # i * length / count, rounded
    return [*range(0, length, most), length]


def bands(N: int, height: int, rows: int, parts: int) -> list:
    """Each of ``N`` images' ``height`` rows (of outputs, or of Winograd tiles) cut into bands of at most
    ``rows`` rows, few of them even over ``parts`` workers (:func:`cuts`): ``[(n, n + 1, r0, r1)]``."""
    edges = cuts(height, rows, parts, N)
    return [(n, n + 1, edges[i], edges[i + 1]) for n in range(N) for i in range(len(edges) - 1)]


def groups(N: int, most: int, rows: int, parts: int) -> list:
    """``N`` whole images of ``rows`` rows in groups of at most ``most``, few of them even over ``parts``
    workers (:func:`cuts`; all images in one group stay one): ``[(n0, n1, 0, rows)]``. 100 RoIs in 5 groups
    of 20 left one of 2 threads 60 of them."""
    edges = cuts(N, max(1, most), parts if most < N else 1)
    return [(edges[i], edges[i + 1], 0, rows) for i in range(len(edges) - 1)]


def rows_product(a, b, out, threads: int, epilogue=None, accumulate: bool = False) -> None:
    """``out (M, T) = a (M, K) @ b (K, T)`` (``+=`` with ``accumulate``), then ``epilogue(m0, m1)`` on the
    rows written: the rows shared out over ``threads`` in blocks of :data:`ROW_BLOCK` when the product
    holds :data:`MIN_PARALLEL_MACS` per thread, otherwise one product on this thread. A conv's few wide
    tiles (a deep layer's small map: 512 channels of 25x25) and the fully connected layers share out
    their products this way."""
    M = a.shape[0]
    parts = min(threads, M // ROW_BLOCK, M * a.shape[1] * b.shape[1] // MIN_PARALLEL_MACS)
    slices = ranges(M, parts, ROW_BLOCK)

    def rows(bounds):
        m0, m1 = bounds
        if accumulate:
            out[m0:m1] += a[m0:m1] @ b
        else:
            np.matmul(a[m0:m1], b, out=out[m0:m1])
        if epilogue is not None:
            epilogue(m0, m1)

    in_parallel(rows, slices)
