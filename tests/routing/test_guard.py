"""The canary guard's decisions, fed with known figures (no clock, no server)."""

import collections

import pytest

from fastserve.config import CanaryOptions, GuardOptions
from fastserve.routing.canary import Canary, key_point
from fastserve.routing.windows import Window, js_divergence, quantile_s


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
    evidence = c.check(1000.7)
    assert evidence is not None and c.weight == 0 and c.rollbacks == 1
    assert any(r.startswith("p99 ") for r in evidence["reasons"])
    assert evidence["p99_ms"]["canary"] > 5 * evidence["p99_ms"]["primary"]


def test_latency_within_the_slack_does_not_trip():
    c = canary(max_p99_ratio=2.0, p99_slack_ms=2.0)
    feed(c, False, 50, latency_s=0.0002)
    feed(c, True, 50, latency_s=0.0015)  # 7x slower, but only 1.3 ms more
    assert all(c.check(1000.5) is None for _ in range(5)) and c.weight == 0.3


def test_errors_trip_and_too_few_requests_never_do():
    c = canary(max_error_rate_increase=0.05)
    feed(c, False, 50)
    feed(c, True, 19, error=True)
    assert c.check(1000.5) is None  # under min_requests
    feed(c, True, 1, error=True)
    evidence = c.check(1000.5)
    assert evidence is not None and evidence["error_rate"] == {"primary": 0.0, "canary": 1.0}


def test_divergent_labels_trip():
    c = canary(max_divergence=0.05)
    for label in (0, 1):
        feed(c, False, 25, label=label)
    feed(c, True, 50, label=0)
    evidence = c.check(1000.5)
    assert evidence is not None and evidence["divergence"] == pytest.approx(0.311278, abs=1e-5)


def test_old_figures_leave_the_window():
    w = Window(10)
    w.add({"requests": 5}, 100.0, labels=["a"] * 5)
    w.add({"requests": 2}, 105.0)
    assert w.read(108.0)["sums"]["requests"] == 7
    assert w.read(112.0)["sums"]["requests"] == 2 and w.total["requests"] == 7


def test_js_divergence_and_quantiles():
    same = collections.Counter({0: 10, 1: 30})
    assert js_divergence(same, collections.Counter({0: 1, 1: 3})) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(collections.Counter({0: 5}), collections.Counter({1: 5})) == pytest.approx(1.0)
    w = Window(10)
    for ms in range(1, 101):
        w.add({}, 100.0, latency_s=ms / 1e3)
    p99 = quantile_s(w.read(100.0)["latency"], 0.99)
    assert 0.099 <= p99 <= 0.099 * 1.19


def test_key_points_are_stable_and_spread():
    points = [key_point(f"user-{i}") for i in range(10_000)]
    assert key_point("user-1") == points[1]  # the same in every process: a fixed hash, not Python's
    assert abs(sum(p < 0.3 for p in points) / len(points) - 0.3) < 0.02
