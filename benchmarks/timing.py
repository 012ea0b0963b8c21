"""Timing helper shared by the benchmarks: interleaved best-of-N wall times."""

from __future__ import annotations

import time

# After a call, idle worker threads keep their cores busy for a while: OpenBLAS's spin up to
# ~2^28 cycles (about 0.1 s) before they sleep, OpenMP's (torch, numba) a shorter time. On a
# 2-core machine the next call -- of the other library -- would share the cores with them, so
# every timed call starts after this pause.
SETTLE_SECONDS = 0.25


def best_times(fns, repeats: int, settle: float = SETTLE_SECONDS) -> list[float]:
    """Best-of-``repeats`` wall time of each function, calls interleaved (a b a b ...) so
    that every contender sees the same machine load; one warm-up call each first, and a pause
    of ``settle`` seconds before every timed call (see SETTLE_SECONDS)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]
