"""Timing helper shared by the benchmarks: interleaved best-of-N wall times."""

from __future__ import annotations

import time


def best_times(fns, repeats: int) -> list[float]:
    """Best-of-``repeats`` wall time of each function, calls interleaved (a b a b ...) so
    that every contender sees the same machine load; one warm-up call each first."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]
