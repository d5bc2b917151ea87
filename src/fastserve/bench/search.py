"""How `fastserve bench` chooses its rates, over any `run(rate) -> trial` callable (pure logic, no I/O): the
highest rate within a latency SLO and an error budget (doubling, then bisection, each verdict confirmed by a second
run), a sweep of given rates, and several servers measured in alternating rounds so that drift in the machine hits
them all alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
# SLO keys as written on the command line, and the percentile each names (100: the largest).
SLO_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "p9999": 99.99, "max": 100.0}
_UNITS_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}


def parse_slo(text: str) -> dict[str, float]:
    """`p99=10ms[,p999=50ms]` as {name: milliseconds}."""
    slo: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        unit = next((u for u in sorted(_UNITS_MS, key=len, reverse=True) if value.endswith(u)), None)
        try:
            ms = float(value[:-len(unit)]) * _UNITS_MS[unit] if unit else float("nan")
        except ValueError:
            ms = float("nan")
        if not sep or name not in SLO_PERCENTILES or not ms > 0:
            raise ValueError(f"expected PERCENTILE=TIME[,...] with PERCENTILE one of {', '.join(SLO_PERCENTILES)} "
                             f"and TIME like 10ms, 500us or 1s, got {part.strip()!r}")
        slo[name] = ms
    return slo


def parse_ratio(text: str) -> float:
    """`0.1%` or `0.001`: a share of the requests, in [0, 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise ValueError(f"expected a share of requests such as 0.1% or 0.001 (at least 0, under 100%), got {text!r}")
    return value


@dataclass(frozen=True)
class Criteria:
    """A trial passes when each SLO percentile is within its bound and errors are within the budget."""

    slo_ms: Mapping[str, float]
    max_error_ratio: float

    def failures(self, trial: Any) -> list[str]:
        """What a trial (a results.Result) breaks, in words; empty when it passes."""
        out = []
        for name, bound in self.slo_ms.items():
            q = SLO_PERCENTILES[name]
            ms = (trial.latency.max if q >= 100 else trial.latency.percentile(q)) / 1e6 if trial.latency.count \
                else float("inf")
            if not ms <= bound:
                out.append(f"{name} {ms:.3g} ms > {bound:g} ms")
        if trial.error_ratio > self.max_error_ratio:
            out.append(f"errors {trial.error_ratio:.3%} > {self.max_error_ratio:.3%}")
        return out

    def passes(self, trial: Any) -> bool:
        return not self.failures(trial)


@dataclass
class Search(Generic[T]):
    """The highest rate that passes, one trial at a time: `rate` is the rate to run next (None when done), `record`
    takes its trial. Rates double from `start` until one fails, then bisect until the bounds are within `precision`
    of each other. Each rate's verdict needs two trials that agree (a third decides when they do not), so one hiccup
    of a shared machine neither ends nor lifts a search. Stepwise, so that searches on several servers can take
    turns."""

    criteria: Criteria
    start: float = 100.0
    limit: float = 1_000_000.0
    precision: float = 0.05
    floor: float = 1.0  # below this rate, give up: nothing passes
    good: float = 0.0  # the highest rate confirmed to pass
    bad: float | None = None  # the lowest rate confirmed to fail
    rate: float | None = None
    trials: list[tuple[float, T, bool]] = field(default_factory=list)  # (rate, trial, passed) in order
    _votes: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rate = min(self.start, self.limit)

    def record(self, trial: T) -> None:
        rate = self.rate
        if rate is None:
            raise RuntimeError("the search is over")
        passed = self.criteria.passes(trial)
        self.trials.append((rate, trial, passed))
        self._votes.append(passed)
        if len(self._votes) < 2 or (len(self._votes) == 2 and self._votes[0] != self._votes[1]):
            return  # run the same rate again
        verdict = sum(self._votes) * 2 > len(self._votes)
        self._votes = []
        if verdict:
            self.good = rate
        else:
            self.bad = rate
        self.rate = self._next(rate)

    def _next(self, rate: float) -> float | None:
        if self.bad is None:  # still doubling
            return None if rate >= self.limit else min(rate * 2, self.limit)
        if self.good <= 0:
            return rate / 2 if rate / 2 >= self.floor else None
        if self.bad - self.good <= self.precision * self.bad:
            return None
        return (self.good + self.bad) / 2

    def confirmed(self, rate: float) -> list[T]:
        """The trials run at `rate`."""
        return [t for r, t, _ in self.trials if r == rate]


def search(run: Callable[[float], T], criteria: Criteria, **options: Any) -> Search[T]:
    """Run a whole search (Search's options) with `run`."""
    s: Search[T] = Search(criteria, **options)
    while s.rate is not None:
        s.record(run(s.rate))
    return s


def sweep(run: Callable[[float], T], rates: Sequence[float]) -> list[tuple[float, T]]:
    return [(rate, run(rate)) for rate in rates]


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """The order of the servers in round `round_`: each goes first in turn."""
    k = round_ % len(names) if names else 0
    return [*names[k:], *names[:k]]


def compare_rates(runs: Mapping[str, Callable[[float], T]], rates: Sequence[float], rounds: int
                  ) -> dict[str, list[tuple[float, list[T]]]]:
    """Every server at each rate, `rounds` times, the servers taking turns in a rotating order."""
    names = list(runs)
    out: dict[str, list[tuple[float, list[T]]]] = {name: [] for name in names}
    for rate in rates:
        trials: dict[str, list[T]] = {name: [] for name in names}
        for r in range(rounds):
            for name in rotated(names, r):
                trials[name].append(runs[name](rate))
        for name in names:
            out[name].append((rate, trials[name]))
    return out


def compare_search(runs: Mapping[str, Callable[[float], T]], criteria: Criteria, **options: Any
                   ) -> dict[str, Search[T]]:
    """A search on each server, one trial of each in turn (rotating order) until every search is done."""
    searches: dict[str, Search[T]] = {name: Search(criteria, **options) for name in runs}
    r = 0
    while True:
        active = [name for name, s in searches.items() if s.rate is not None]
        if not active:
            return searches
        for name in rotated(active, r):
            s = searches[name]
            assert s.rate is not None  # (active: its rate is set)
            s.record(runs[name](s.rate))
        r += 1


def ratios(values: Mapping[str, float], baseline: str | None = None) -> dict[str, float | None]:
    """Each value over the baseline's (the first's by default); None where the baseline is 0."""
    if not values:
        return {}
    base = values[baseline if baseline is not None else next(iter(values))]
    return {name: (v / base if base else None) for name, v in values.items()}
