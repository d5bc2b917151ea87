"""Rate search, sweeps and comparisons, on fake trials: a fake server whose latency or errors jump past a knee."""

from collections.abc import Callable

import pytest

from fastserve.bench import search
from fastserve.bench.histogram import Histogram
from fastserve.bench.results import Result

CRITERIA = search.Criteria({"p99": 10.0}, max_error_ratio=0.001)


def trial(rate: float, latency_ms: float, errors: int = 0, sent: int = 1000) -> Result:
    latency, lag = Histogram(), Histogram()
    for _ in range(sent - errors):
        latency.record(int(latency_ms * 1e6))
    lag.record(5_000)
    return Result(rate, 1.0, sent, sent, {200: sent - errors, **({503: errors} if errors else {})}, {},
                  latency, lag, 1.0, 0.1)


def fake_server(knee: float, *, slow_ms: float = 50.0, errors_past: float | None = None
                ) -> tuple[Callable[[float], Result], list[float]]:
    calls: list[float] = []

    def run(rate: float) -> Result:
        calls.append(rate)
        if errors_past is not None:
            return trial(rate, 1.0, errors=5 if rate > errors_past else 0)
        return trial(rate, 1.0 if rate <= knee else slow_ms)

    return run, calls


def test_search_doubles_then_bisects_to_the_knee():
    run, calls = fake_server(knee=1000)
    s = search.search(run, CRITERIA, start=100, precision=0.05)
    assert 950 <= s.good <= 1000 < s.bad <= s.good * 1.06
    assert calls[:10] == [100, 100, 200, 200, 400, 400, 800, 800, 1600, 1600]  # doubling, each rate twice
    assert s.confirmed(s.good) and all(passed for r, _, passed in s.trials if r == s.good)


def test_each_verdict_is_confirmed_and_a_disagreement_goes_to_a_third_run():
    hiccups = {400: 1}  # the first trial at 400/s is slow: a noisy neighbour

    def run(rate: float) -> Result:
        if hiccups.get(rate):
            hiccups[rate] -= 1
            return trial(rate, 80.0)
        return trial(rate, 1.0 if rate <= 1000 else 50.0)

    s = search.search(run, CRITERIA, start=100)
    at_400 = [passed for r, _, passed in s.trials if r == 400]
    assert at_400 == [False, True, True]  # the hiccup did not end the search
    assert 950 <= s.good <= 1000
    for rate in {r for r, _, _ in s.trials}:
        assert len([r for r, _, _ in s.trials if r == rate]) >= 2


def test_search_respects_the_error_budget():
    run, _ = fake_server(knee=float("inf"), errors_past=600)  # fast throughout, 0.5% errors past 600/s
    s = search.search(run, CRITERIA, start=100)
    assert 570 <= s.good <= 600
    loose = search.search(run, search.Criteria({"p99": 10.0}, max_error_ratio=0.01), start=100, limit=12_800)
    assert loose.good == 12_800 and loose.bad is None  # within a 1% budget up to the limit


def test_search_gives_up_below_the_floor():
    run, _ = fake_server(knee=0.5)
    s = search.search(run, CRITERIA, start=8, floor=1.0)
    assert s.good == 0 and s.rate is None and s.bad == 1.0


def test_compare_alternates_the_order_of_the_servers_each_round():
    order: list[str] = []

    def runner(name: str) -> Callable[[float], Result]:
        def run(rate: float) -> Result:
            order.append(name)
            return trial(rate, 1.0)
        return run

    out = search.compare_rates({"a": runner("a"), "b": runner("b"), "c": runner("c")}, [100.0, 200.0], rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"] * 2
    assert [(rate, len(trials)) for rate, trials in out["b"]] == [(100.0, 3), (200.0, 3)]


def test_compare_search_takes_turns_until_every_search_is_done():
    slow_run, slow_calls = fake_server(knee=400)
    fast_run, fast_calls = fake_server(knee=3000)
    searches = search.compare_search({"slow": slow_run, "fast": fast_run}, CRITERIA, start=100)
    assert 380 <= searches["slow"].good <= 400 and 2850 <= searches["fast"].good <= 3000
    assert slow_calls[:4] == fast_calls[:4] == [100, 100, 200, 200]
    assert search.ratios({"slow": searches["slow"].good, "fast": searches["fast"].good})["fast"] > 7


def test_sweep_runs_each_rate_in_order():
    run, calls = fake_server(knee=1000)
    assert [r for r, _ in search.sweep(run, [300, 100, 2000])] == calls == [300, 100, 2000]


def test_criteria_say_what_failed():
    assert CRITERIA.failures(trial(100, 1.0)) == []
    assert CRITERIA.failures(trial(100, 20.0, errors=10)) == ["p99 20 ms > 10 ms", "errors 1.000% > 0.100%"]


@pytest.mark.parametrize(("text", "expected"), [("p99=10ms", {"p99": 10.0}), ("p99=500us,p999=1s,max=2s",
                                                {"p99": 0.5, "p999": 1000.0, "max": 2000.0})])
def test_slo_parsed(text, expected):
    assert search.parse_slo(text) == expected


@pytest.mark.parametrize("text", ["p99", "p98=10ms", "p99=10", "p99=-1ms", "p99=fast"])
def test_bad_slo_refused(text):
    with pytest.raises(ValueError, match="expected PERCENTILE=TIME"):
        search.parse_slo(text)


def test_error_budget_parsed():
    assert search.parse_ratio("0.1%") == pytest.approx(0.001)
    assert search.parse_ratio("0.02") == 0.02
    for bad in ("100%", "-1%", "lots"):
        with pytest.raises(ValueError):
            search.parse_ratio(bad)
