"""A trial's outcome in plain form: the engine's `Trial` fields, merged across generator processes (side by side)
or slices of one trial (one after another), carried between processes and into JSON as plain dicts, and summed up
as the numbers a person reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastserve.bench.metrics import combine

# Latency percentiles reported, by name; "max" is the largest.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9, "p99.99": 99.99}
OK = 200


class HistogramLike(Protocol):
    """fastserve.bench.histogram.Histogram, as this module uses it; nanoseconds."""

    @property
    def count(self) -> int: ...
    @property
    def max(self) -> int: ...
    def percentile(self, q: float) -> float: ...
    def merge(self, other: Any) -> None: ...
    def to_dict(self) -> dict[str, Any]: ...
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramLike: ...


@dataclass
class Result:
    offered_rate: float
    duration_s: float
    sent: int
    answered: int
    statuses: dict[int, int]
    errors: dict[str, int]  # refused, timeout, reset, closed, other: requests that got no answer
    latency: HistogramLike  # from each request's intended send time to its answer
    send_lag: HistogramLike  # actual minus intended send time
    elapsed_s: float
    cpu_s: float  # the generator's own CPU
    server_side: dict[str, Any] | None = field(default=None)  # what the server counted meanwhile (metrics.py)
    spin_s: float = 0.0  # of cpu_s, busy-polling before intended sends (where the engine says)

    @property
    def ok(self) -> int:
        return self.statuses.get(OK, 0)

    @property
    def error_count(self) -> int:
        """Requests sent that did not get a 200: other statuses, and no answer at all."""
        return self.sent - self.ok

    @property
    def error_ratio(self) -> float:
        return self.error_count / self.sent if self.sent else 0.0

    def achieved_rate(self) -> float:
        """Answers per second, from the first send to the last answer."""
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, name: str) -> float:
        h = self.latency
        return (h.max if name == "max" else h.percentile(PERCENTILES[name])) / 1e6 if h.count else float("nan")

    def send_lag_us(self, q: float) -> float:
        h = self.send_lag
        return (h.max if q >= 100 else h.percentile(q)) / 1e3 if h.count else 0.0


def from_trial(trial: Any) -> Result:
    """The engine's Trial (or anything with its fields) as a Result."""
    statuses = {int(k): int(v) for k, v in trial.statuses.items()}
    errors = {str(k): int(v) for k, v in trial.errors.items()}
    return Result(float(trial.offered_rate), float(trial.duration_s), int(trial.sent), int(trial.answered),
                  statuses, errors, trial.latency, trial.send_lag, float(trial.elapsed_s), float(trial.cpu_s),
                  spin_s=float(getattr(trial, "spin_s", 0.0)))


def to_dict(result: Result) -> dict[str, Any]:
    return {"offered_rate": result.offered_rate, "duration_s": result.duration_s, "sent": result.sent,
            "answered": result.answered, "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            "errors": dict(sorted(result.errors.items())), "latency": result.latency.to_dict(),
            "send_lag": result.send_lag.to_dict(), "elapsed_s": result.elapsed_s, "cpu_s": result.cpu_s,
            "server_side": result.server_side, "spin_s": result.spin_s}


def from_dict(d: dict[str, Any]) -> Result:
    from fastserve.bench.histogram import Histogram

    return Result(d["offered_rate"], d["duration_s"], d["sent"], d["answered"],
                  {int(k): v for k, v in d["statuses"].items()}, dict(d["errors"]),
                  Histogram.from_dict(d["latency"]), Histogram.from_dict(d["send_lag"]), d["elapsed_s"], d["cpu_s"],
                  d.get("server_side"), d.get("spin_s", 0.0))


def _merged(histograms: Sequence[HistogramLike]) -> HistogramLike:
    """A new histogram holding all of them (a copy of the first, through its dict form, so none is changed)."""
    first = histograms[0]
    out = type(first).from_dict(first.to_dict())
    for h in histograms[1:]:
        out.merge(h)
    return out


def _counts(dicts: Sequence[dict[Any, int]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def merge(results: Sequence[Result], *, side_by_side: bool) -> Result:
    """One Result of several: side by side (generator processes sharing a rate) or one after another (slices)."""
    if len(results) == 1:
        return results[0]
    durations = [r.duration_s for r in results]
    if side_by_side:
        offered, duration, elapsed = sum(r.offered_rate for r in results), max(durations), max(
            r.elapsed_s for r in results)
    else:
        offered = sum(r.offered_rate * r.duration_s for r in results) / sum(durations)
        duration, elapsed = sum(durations), sum(r.elapsed_s for r in results)
    sides = [r.server_side for r in results if r.server_side is not None]
    return Result(offered, duration, sum(r.sent for r in results), sum(r.answered for r in results),
                  _counts([r.statuses for r in results]), _counts([r.errors for r in results]),
                  _merged([r.latency for r in results]), _merged([r.send_lag for r in results]), elapsed,
                  sum(r.cpu_s for r in results), combine(sides) if len(sides) == len(results) else None,
                  sum(r.spin_s for r in results))


def unreliable(result: Result, max_send_lag_us: float) -> bool:
    """Whether the generator fell behind its own schedule: then the latencies measure it as much as the server."""
    return result.send_lag_us(99) > max_send_lag_us


def summary(result: Result, max_send_lag_us: float) -> dict[str, Any]:
    """The figures of one trial, as reported (latencies in ms, send lag in µs)."""
    return {
        "offered_rps": result.offered_rate,
        "achieved_rps": result.achieved_rate(),
        "duration_s": result.duration_s,
        "elapsed_s": result.elapsed_s,
        "sent": result.sent,
        "answered": result.answered,
        "ok": result.ok,
        "errors": result.error_count,
        "error_ratio": result.error_ratio,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "no_answer": dict(sorted(result.errors.items())),
        "latency_ms": {name: result.latency_ms(name) for name in (*PERCENTILES, "max")},
        "send_lag_us": {"p50": result.send_lag_us(50), "p99": result.send_lag_us(99), "max": result.send_lag_us(100)},
        "generator_cpu_s": result.cpu_s,
        "generator_cpu_us_per_request": result.cpu_s / result.sent * 1e6 if result.sent else None,
        "generator_busy_cpu_s": max(0.0, result.cpu_s - result.spin_s),  # less its polling for the next send
        "unreliable": unreliable(result, max_send_lag_us),
        "server_side": result.server_side,
    }
