"""The canary guard's decisions, fed with known figures (no clock, no server)."""

import collections

import numpy as np
import pytest

from fastserve.config import CanaryOptions, GuardOptions
from fastserve.routing.canary import Canary, Sides, key_position
from fastserve.routing.windows import Window, differ_by_chance, js_divergence, quantile_s, slower_than_chance


def canary(**guard):
    return Canary(CanaryOptions(version=2, weight=0.3), GuardOptions(min_requests=20, **guard))


def feed(c, on_canary, n, latency_s=0.001, error=False, label=0):
    for _ in range(n):
        c.windows[on_canary].add({"requests": 1, "errors": int(error)}, 1000.0, latency_s=latency_s, labels=[label])


def test_slow_canary_trips_on_p99():
    c = canary(max_p99_ratio=2.0, p99_slack_ms=2.0)
    feed(c, False, 50, latency_s=0.001)
    feed(c, True, 50, latency_s=0.010)
    assert c.check(1000.5) is None and c.check(1000.6) is None  # not yet: it must hold on 3 checks in a row
    tripped = c.check(1000.7)
    assert tripped is not None and c.weight == 0 and c.rollbacks == 1
    assert any(r.startswith("p99 ") for r in tripped.reasons)
    assert tripped.evidence.p99_ms.canary > 5 * tripped.evidence.p99_ms.primary


def test_latency_within_the_slack_does_not_trip():
    c = canary(max_p99_ratio=2.0, p99_slack_ms=2.0)
    feed(c, False, 50, latency_s=0.0002)
    feed(c, True, 50, latency_s=0.0015)  # 7x slower, but only 1.3 ms more
    assert all(c.check(1000.5) is None for _ in range(5)) and c.weight == 0.3


def test_a_few_slow_answers_on_a_small_canary_do_not_trip():
    # Two scheduling spikes among 150 answers set the canary's p99 past the margin; the primary, with three times
    # the answers, had none. Chance explains two: the guard keeps the canary, check after check.
    c = canary(max_p99_ratio=2.0, p99_slack_ms=2.0)
    feed(c, False, 450, latency_s=0.001)
    feed(c, True, 148, latency_s=0.001)
    feed(c, True, 2, latency_s=0.012)
    assert all(c.check(1000.5) is None for _ in range(10)) and c.weight == 0.3
    assert c.status()["rollbacks"] == 0
    # Ten more slow ones are past chance: it trips.
    feed(c, True, 10, latency_s=0.012)
    assert [c.check(1000.5) for _ in range(3)][-1] is not None and c.weight == 0


def test_slower_than_chance_compares_shares_over_the_limit():
    def histogram(fast, slow):
        w = Window(60)
        for latency, n in ((0.001, fast), (0.020, slow)):
            for _ in range(n):
                w.add({}, 100.0, latency_s=latency)
        return w.read(100.0).latency

    assert slower_than_chance(histogram(90, 10), histogram(300, 0), 0.005)
    assert not slower_than_chance(histogram(98, 2), histogram(300, 0), 0.005)
    assert not slower_than_chance(histogram(90, 10), histogram(270, 30), 0.005)  # spikes shared alike
    assert not slower_than_chance(histogram(90, 10), histogram(300, 0), 0.020)  # the slow ones are not over it
    assert not slower_than_chance(histogram(100, 0), histogram(290, 10), 0.005)


def test_errors_trip_and_too_few_requests_never_do():
    c = canary(max_error_rate_increase=0.05)
    feed(c, False, 50)
    feed(c, True, 19, error=True)
    assert c.check(1000.5) is None  # under min_requests
    feed(c, True, 1, error=True)
    evidence = c.check(1000.5)
    assert evidence is not None and evidence.evidence.error_rate == Sides(0.0, 1.0)


def test_divergent_labels_trip():
    c = canary(max_divergence=0.05)
    for label in (0, 1):
        feed(c, False, 25, label=label)
    feed(c, True, 50, label=0)
    evidence = c.check(1000.5)
    assert evidence is not None and evidence.evidence.divergence == pytest.approx(0.311278, abs=1e-5)


def test_labels_that_differ_by_chance_do_not_trip():
    """30% against 60% of ones over 30 answers each is past the divergence limit, and happens by chance about once
    in fifty samples of one model (G-test p = 0.02): not a reason to pull the canary back. The same shares over 300
    answers each are not chance."""
    c = canary(max_divergence=0.05)
    for on_canary, ones in ((False, 9), (True, 18)):
        feed(c, on_canary, ones, label=1)
        feed(c, on_canary, 30 - ones, label=0)
    assert c.check(1000.5) is None and c.weight == 0.3
    for on_canary, ones in ((False, 81), (True, 162)):
        feed(c, on_canary, ones, label=1)
        feed(c, on_canary, 270 - ones, label=0)
    evidence = c.check(1000.5)
    assert evidence is not None and 0.05 < evidence.evidence.divergence < 0.1
    assert any("more than chance explains" in r for r in evidence.reasons)


def test_rows_of_one_request_count_as_one_draw():
    """300 labels a side with the shares above are not chance when they are 300 requests; as 30 requests of 10
    rows each (rows of one request move together), they are no more evidence than 30 one-row requests."""
    ones, zeros = collections.Counter({1: 90, 0: 210}), collections.Counter({1: 180, 0: 120})
    assert not differ_by_chance(ones, zeros, requests=600)
    assert differ_by_chance(ones, zeros, requests=60)
    c = canary(max_divergence=0.05)
    for on_canary, n_ones in ((False, 9), (True, 18)):  # 30 requests a side, 10 rows each
        c.windows[on_canary].add({"requests": n_ones, "errors": 0}, 1000.0, labels=[1] * (10 * n_ones))
        c.windows[on_canary].add({"requests": 30 - n_ones, "errors": 0}, 1000.0, labels=[0] * (10 * (30 - n_ones)))
    assert c.check(1000.5) is None and c.weight == 0.3


def test_differ_by_chance_against_the_chi_squared_quantiles():
    """At p = 0.001 the G statistic's limit is 10.83 for two labels and 16.27 for four (tables): a sample just past
    the approximate limit differs, one just under it does not."""
    def g(a, b):
        obs = np.array([[a.get(k, 0) for k in sorted(set(a) | set(b))], [b.get(k, 0) for k in sorted(set(a) | set(b))]],
                       dtype=float)
        exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
        return 2 * float((obs[obs > 0] * np.log(obs[obs > 0] / exp[obs > 0])).sum())

    rng = np.random.default_rng(0)
    for k, table in ((2, 10.83), (4, 16.27)):
        for _ in range(300):
            a = collections.Counter(rng.integers(0, k, size=200).tolist())
            b = collections.Counter(rng.integers(0, k, size=200).tolist())
            b[0] += int(rng.integers(0, 40))
            stat = g(a, b)
            if abs(stat - table) > 0.04 * table:  # the approximation is within 3% of the table
                assert differ_by_chance(a, b, a.total() + b.total()) == (stat < table), (stat, a, b)
    same = collections.Counter({"yes": 40, "no": 60})
    assert differ_by_chance(same, same, 200) and differ_by_chance(collections.Counter(), same, 100)
    assert differ_by_chance(collections.Counter({0: 5}), collections.Counter({0: 9}), 14)  # one label: no test
    assert not differ_by_chance(collections.Counter({0: 50}), collections.Counter({1: 50}), 100)


def test_old_figures_leave_the_window():
    w = Window(10)
    w.add({"requests": 5}, 100.0, labels=["a"] * 5)
    w.add({"requests": 2}, 105.0)
    assert w.read(108.0).sums["requests"] == 7
    assert w.read(112.0).sums["requests"] == 2 and w.total["requests"] == 7


def test_js_divergence_and_quantiles():
    same = collections.Counter({0: 10, 1: 30})
    assert js_divergence(same, collections.Counter({0: 1, 1: 3})) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(collections.Counter({0: 5}), collections.Counter({1: 5})) == pytest.approx(1.0)
    w = Window(10)
    for ms in range(1, 101):
        w.add({}, 100.0, latency_s=ms / 1e3)
    p99 = quantile_s(w.read(100.0).latency, 0.99)
    assert 0.099 <= p99 <= 0.099 * 1.19


def test_key_points_are_stable_and_spread():
    points = [key_position(f"user-{i}") for i in range(10_000)]
    assert key_position("user-1") == points[1]  # the same in every process: a fixed hash, not Python's
    assert abs(sum(p < 0.3 for p in points) / len(points) - 0.3) < 0.02
