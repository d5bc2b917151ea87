"""Timing for the linear-cost tests: a cost at n against its cost at 10n, as a ratio within one run (never a
wall-clock bound)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from math import inf
from time import perf_counter

import numpy as np

LINEAR = 20  # t(10n) / t(n): about 10 for a linear cost, 100 for a quadratic one
CLEARLY = 5 * LINEAR  # a first sample this far over: no need for more
_FLUSH = np.ones(2 * 1024 * 1024)  # 16 MiB, read through before each cold sample: it evicts the body from L2


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cost(work: Callable[[], object], cold: bool, limit: float = inf, repeats: int = 3) -> float:
    """Seconds one call of `work` takes, best of `repeats` samples after a first call (which pays first-use costs).
    Warm, a sample repeats a fast call for 3 ms and takes the mean; cold, it is one call after the caches are
    emptied. A first call over `limit` seconds is the answer, without more samples."""
    started = perf_counter()
    work()
    first = perf_counter() - started
    if first > limit:
        return first
    loops = 1 if cold else max(1, min(10_000, int(0.003 / max(first, 1e-7))))
    best = inf
    for _ in range(repeats):
        if cold:
            _FLUSH.sum()
        started = perf_counter()
        for _ in range(loops):
            work()
        best = min(best, (perf_counter() - started) / loops)
    return best


def ratio(small: Callable[[], object], large: Callable[[], object], cold: bool) -> tuple[float, float]:
    """(seconds at n, seconds at 10n), the pair of the lowest ratio of up to five tries: noise from other work on
    the machine only ever raises a ratio (a super-linear cost stays high in every try; each try of it is cut short
    at CLEARLY times the cost at n)."""
    found: tuple[float, float] | None = None
    with collector_off():
        for _ in range(5):
            at_n = cost(small, cold)
            at_10n = cost(large, cold, limit=CLEARLY * at_n)
            if found is None or at_10n / at_n < found[1] / found[0]:
                found = (at_n, at_10n)
            if at_10n / at_n < LINEAR * 0.8:
                break  # clearly linear
    assert found is not None
    return found


def judge(what: str, small: int, large: int, times: tuple[float, float]) -> None:
    at_n, at_10n = times
    assert at_10n / at_n < LINEAR, (f"{what}: {small} bytes cost {at_n * 1e3:.3f} ms, {large} bytes "
                                    f"{at_10n * 1e3:.3f} ms: x{at_10n / at_n:.1f} for x{large / small:.1f} the size")


