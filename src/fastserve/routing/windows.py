"""Sliding windows of counts, in one-second buckets: bounded memory whatever the traffic, and totals kept apart."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Latency histogram: 96 log-spaced bounds from 10 µs to ~100 s (each 1.18x the last): a p99 read from it is within
# 18% of the true one.
LATENCY_BOUNDS_S = np.geomspace(1e-5, 100.0, 96)


def _empty_histogram() -> np.ndarray:
    return np.zeros(len(LATENCY_BOUNDS_S) + 1, dtype=np.int64)


@dataclass(slots=True)
class Bucket:
    """One second's counts; a worker's travel to its supervisor as they are (`Window.take`, `Window.merge`)."""

    sums: collections.defaultdict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    maxima: dict[str, float] = field(default_factory=dict)
    latency: np.ndarray = field(default_factory=_empty_histogram)
    labels: collections.Counter[Any] = field(default_factory=collections.Counter)


@dataclass(frozen=True, slots=True)
class Reading:
    """A window's sums (with each maximum as `max_<key>`), latency histogram and label counts."""

    sums: dict[str, float]
    latency: np.ndarray
    labels: collections.Counter[Any]


class Window:
    """Named sums and maxima, a latency histogram and label counts, per second, over the last `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._buckets: collections.deque[tuple[int, Bucket]] = collections.deque()
        self.total: dict[str, float] = collections.defaultdict(float)

    def _bucket(self, now: float) -> Bucket:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, Bucket()))
            self._expire(now)
        return self._buckets[-1][1]

    def _expire(self, now: float) -> None:
        oldest = int(now - self.seconds)
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()

    def add(self, counts: dict[str, float], now: float | None = None, *, latency_s: float | None = None,
            labels: Iterable[Any] = (), maxima: dict[str, float] | None = None) -> None:
        bucket = self._bucket(time.monotonic() if now is None else now)
        for key, value in counts.items():
            bucket.sums[key] += value
            self.total[key] += value
        for key, value in (maxima or {}).items():
            bucket.maxima[key] = max(bucket.maxima.get(key, -math.inf), value)
            self.total[f"max_{key}"] = max(self.total.get(f"max_{key}", -math.inf), value)
        if latency_s is not None:
            bucket.latency[np.searchsorted(LATENCY_BOUNDS_S, latency_s)] += 1
        if labels:
            bucket.labels.update(labels)

    def take(self) -> list[tuple[int, Bucket]]:
        """The buckets kept so far, handed over and forgotten: a worker's, for its supervisor's `merge`."""
        buckets = list(self._buckets)
        self._buckets.clear()
        self.total.clear()
        return buckets

    def merge(self, buckets: list[tuple[int, Bucket]], now: float | None = None) -> None:
        """Add another process's `take()`: seconds are the same in every process (the monotonic clock is the
        machine's), so a second's counts add into that second's bucket."""
        for second, theirs in buckets:
            mine = None
            for i in range(len(self._buckets) - 1, -1, -1):  # (they are usually the newest seconds)
                if self._buckets[i][0] == second:
                    mine = self._buckets[i][1]
                    break
                if self._buckets[i][0] < second:
                    break
            if mine is None:
                mine = Bucket()
                self._buckets.append((second, mine))
                self._buckets = collections.deque(sorted(self._buckets, key=lambda b: b[0]))
            for key, value in theirs.sums.items():
                mine.sums[key] += value
                self.total[key] += value
            for key, value in theirs.maxima.items():
                mine.maxima[key] = max(mine.maxima.get(key, -math.inf), value)
                self.total[f"max_{key}"] = max(self.total.get(f"max_{key}", -math.inf), value)
            mine.latency += theirs.latency
            mine.labels.update(theirs.labels)
        self._expire(time.monotonic() if now is None else now)

    def read(self, now: float | None = None) -> Reading:
        self._expire(time.monotonic() if now is None else now)
        sums: dict[str, float] = collections.defaultdict(float)
        latency = _empty_histogram()
        labels: collections.Counter[Any] = collections.Counter()
        for _, bucket in self._buckets:
            for key, value in bucket.sums.items():
                sums[key] += value
            for key, value in bucket.maxima.items():
                sums[f"max_{key}"] = max(sums.get(f"max_{key}", -math.inf), value)
            latency += bucket.latency
            labels.update(bucket.labels)
        return Reading(dict(sums), latency, labels)


def quantile_s(histogram: np.ndarray, q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` of a latency histogram, None when empty."""
    n = int(histogram.sum())
    if n == 0:
        return None
    index = int(np.searchsorted(np.cumsum(histogram), math.ceil(q * n)))
    return float(LATENCY_BOUNDS_S[min(index, len(LATENCY_BOUNDS_S) - 1)])


def _side_by_side(a: collections.Counter[Any], b: collections.Counter[Any]) -> np.ndarray:
    """Two label counts as the rows of one array, a column per label seen on either side."""
    keys = sorted(set(a) | set(b), key=repr)
    return np.array([[a.get(k, 0) for k in keys], [b.get(k, 0) for k in keys]], dtype=np.float64)


def js_divergence(a: collections.Counter[Any], b: collections.Counter[Any]) -> float:
    """Jensen-Shannon divergence (base 2, between 0 and 1) of two label distributions given as counts."""
    p, r = _side_by_side(a, b)
    if p.sum() == 0 or r.sum() == 0:
        return 0.0
    p, r = p / p.sum(), r / r.sum()
    m = (p + r) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, (kl(p) + kl(r)) / 2)


# The guard looks again every 32 answers: a rule that trips at the usual 5% would trip on a good canary by chance
# over a day's looks. At 0.1% a real difference still shows within a few hundred answers.
GUARD_ALPHA = 1e-3
_Z_ALPHA = 3.0902  # the standard normal's quantile at 1 - GUARD_ALPHA


def differ_by_chance(a: collections.Counter[Any], b: collections.Counter[Any], requests: float) -> bool:
    """Whether two samples of categories (predicted labels, answers over a latency) could come from one
    distribution: a G-test of independence between category and sample, kept (True) unless p < GUARD_ALPHA. Two
    small samples of one model's labels often differ past a divergence limit; this tells that apart from a real
    change. The rows of one request are not independent draws (one client, one moment), so the statistic is scaled
    down to the `requests` the counts came from: as if each request were one label, however many rows it held."""
    return _g_test_keeps(_side_by_side(a, b), requests)


def _g_test_keeps(observed: np.ndarray, requests: float) -> bool:
    """The G-test of `differ_by_chance` on a table of counts: a row per sample, a column per category."""
    labels = observed.shape[1]
    if labels < 2 or observed.sum(axis=1).min() == 0:
        return True  # one label, or an empty sample: nothing to tell apart
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    seen = observed > 0
    g = 2.0 * float((observed[seen] * np.log(observed[seen] / expected[seen])).sum())
    g *= min(1.0, requests / observed.sum())
    df = labels - 1  # the chi-squared quantile by Wilson and Hilferty (3% high at df = 1, closer above)
    limit = df * (1 - 2 / (9 * df) + _Z_ALPHA * math.sqrt(2 / (9 * df))) ** 3
    return bool(g <= limit)


def slower_than_chance(canary: np.ndarray, primary: np.ndarray, threshold_s: float) -> bool:
    """Whether the canary's share of answers over `threshold_s` is higher than the primary's by more than chance
    (latency histograms). A p99 over a hundred answers is their second slowest: two unlucky answers would set it.
    Whole latency buckets are compared, the one holding the threshold counted under it."""
    over = int(np.searchsorted(LATENCY_BOUNDS_S, threshold_s)) + 1
    k_c, k_p = int(canary[over:].sum()), int(primary[over:].sum())
    n_c, n_p = int(canary.sum()), int(primary.sum())
    if k_c * n_p <= k_p * n_c:
        return False  # no larger a share than the primary's: nothing to test
    return not _g_test_keeps(np.array([[k_c, n_c - k_c], [k_p, n_p - k_p]], dtype=np.float64), n_c + n_p)
