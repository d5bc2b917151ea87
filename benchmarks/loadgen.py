"""Open-loop load for the benchmarks: Poisson arrivals at a set rate, latency from the intended send time, from
the compiled generator behind `fastserve bench` (fastserve.bench.engine), with each request's outcome kept.

Requests are sent when the schedule says, whether or not earlier ones have been answered (open loop), over a pool of
keep-alive connections; when every connection is busy a request waits in the generator, and that wait counts in
its latency, so queueing anywhere cannot hide (no coordinated omission). The generator reports its own send lag so
one can see whether it kept up. Each connection carries one request before a run begins (not counted): what a server
does once per connection (an accept, a hand-over between processes) would otherwise be paid by the run's first
requests, a share of a short run over many connections large enough to move its p99. Bounded in time and in request
count; loopback only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOOPBACK = "127.0.0.1"


@dataclass
class Run:
    rate: float
    sent: int
    latencies_us: np.ndarray  # per answered request, from its intended send time
    statuses: np.ndarray  # 0 = no answer (connection lost or timed out)
    send_lag_us: np.ndarray  # actual minus intended send time
    duration_s: float
    intended_s: np.ndarray  # each request's intended send time from the start, for timelines

    @classmethod
    def merge(cls, runs: list[Run]) -> Run:
        """Runs one after another as one (at the first one's rate)."""
        starts = np.cumsum([0.0] + [r.duration_s for r in runs[:-1]])
        return cls(runs[0].rate, sum(r.sent for r in runs), np.concatenate([r.latencies_us for r in runs]),
                   np.concatenate([r.statuses for r in runs]), np.concatenate([r.send_lag_us for r in runs]),
                   sum(r.duration_s for r in runs),
                   np.concatenate([r.intended_s + start for r, start in zip(runs, starts, strict=True)]))

    def summary(self) -> dict[str, float]:
        ok = self.statuses == 200
        lat = self.latencies_us[ok] if ok.any() else np.array([np.nan])
        answered = self.statuses > 0
        shed = np.isin(self.statuses, (429, 503))
        shed_lat = self.latencies_us[shed] if shed.any() else np.array([np.nan])
        return {
            "rate": self.rate,
            "sent": self.sent,
            "ok": int(ok.sum()),
            "shed": int(shed.sum()),
            "errors": int((~ok).sum()),
            "error_ratio": float((~ok).mean()) if self.sent else 0.0,
            "goodput": float(ok.sum() / self.duration_s),
            "p50_ms": float(np.percentile(lat, 50) / 1e3),
            "p90_ms": float(np.percentile(lat, 90) / 1e3),
            "p99_ms": float(np.percentile(lat, 99) / 1e3),
            "max_ms": float(lat.max() / 1e3),
            "p99_all_answered_ms": float(np.percentile(self.latencies_us[answered], 99) / 1e3) if answered.any()
            else float("nan"),
            # Refusals, from the intended send time as well: how soon a client learns it should back off.
            "refused_p50_ms": float(np.percentile(shed_lat, 50) / 1e3),
            "refused_p99_ms": float(np.percentile(shed_lat, 99) / 1e3),
            "send_lag_p99_us": float(np.percentile(self.send_lag_us, 99)) if self.sent else 0.0,
        }


def open_loop(port: int, raws: list[bytes], rate: float, duration_s: float = 3.0, max_requests: int = 200_000,
              connections: int = 256, timeout_s: float = 5.0, seed: int = 0) -> Run:
    """One open-loop run at `rate` requests/s for `duration_s` (shortened to hold about `max_requests`); a request
    unanswered after `timeout_s` counts as no answer (status 0)."""
    from fastserve.bench.engine import run_trial

    duration_s = min(duration_s, max_requests / rate)
    expected = rate * duration_s
    record = int(expected + 10 * math.sqrt(expected)) + 100   # Poisson counts never reach past this
    t = run_trial(LOOPBACK, port, raws, rate, duration_s, connections=connections, timeout_ms=timeout_s * 1e3,
                  seed=seed, record=record, warm=True)
    r = t.records
    assert r is not None
    n = len(r["status"])
    latency = np.where(r["latency_ns"] >= 0, r["latency_ns"], int(timeout_s * 1e9))
    lag = np.where(r["send_lag_ns"] >= 0, r["send_lag_ns"], latency)
    return Run(rate, n, latency / 1e3, r["status"].astype(np.int32), lag / 1e3, max(duration_s, t.elapsed_s),
               r["intended_ns"] / 1e9)


class RateSearch:
    """The search for the highest rate within an SLO, one rate at a time: geometric steps up from `start`, then
    `refine` bisections once a rate fails. `rate` is the next rate to try (None when the search is over), `good` the
    highest that passed. Stepwise, so that several searches can take turns on a machine whose load drifts."""

    def __init__(self, start: float, limit: float, refine: int) -> None:
        self.good = 0.0
        self.bad: float | None = None
        self.rate: float | None = start if start <= limit else None
        self._limit = limit
        self._left = refine
        self._bisecting = False

    def record(self, passed: bool) -> None:
        """Note whether `rate` passed, and move on to the next rate to try."""
        rate = self.rate
        if rate is None:
            raise RuntimeError("the search is over")
        if passed:
            self.good = rate
        else:
            self.bad = rate
        if not self._bisecting:
            if passed:
                self.rate = rate * 2 if rate * 2 <= self._limit else None
                return
            self._bisecting = True
        else:
            self._left -= 1
        bad = rate if self.bad is None else self.bad
        self.rate = None if self._left <= 0 else (self.good + bad) / 2 if self.good else bad / 2


def trial(port: int, raws: list[bytes], rate: float, slo_ms: float, *, duration_s: float = 2.0,
          max_error_ratio: float = 0.001, log=print) -> dict[str, float]:
    """One open-loop run of at least `duration_s` and 1,000 requests, judged against the SLO: its p99 (of all
    requests, refusals counted as errors) within `slo_ms`, fewer than `max_error_ratio` errors."""
    s = open_loop(port, raws, rate, max(duration_s, 1000 / rate)).summary()
    s["slo_ms"] = slo_ms
    s["pass"] = s["p99_ms"] <= slo_ms and s["error_ratio"] < max_error_ratio
    log(f"  rate {rate:>8.0f}/s  p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:8.2f} ms  errors "
        f"{s['error_ratio']:.4f}  send lag p99 {s['send_lag_p99_us']:7.0f} us  {'ok' if s['pass'] else 'FAIL'}")
    return s


def passes(port: int, raws: list[bytes], rate: float, slo_ms: float, trials: list[dict[str, float]],
           **options) -> bool:
    """Whether `rate` holds the SLO: a failed trial is run once more before it counts, so that one hiccup of a
    shared machine does not end a search. Every trial's summary is appended to `trials`."""
    for _ in range(2):
        trials.append(trial(port, raws, rate, slo_ms, **options))
        if trials[-1]["pass"]:
            return True
    return False


def max_rate(port: int, raws: list[bytes], slo_ms: float, *, start: float = 200.0, limit: float = 50_000.0,
             duration_s: float = 2.0, max_error_ratio: float = 0.001, refine: int = 3,
             log=print) -> tuple[float, list[dict[str, float]]]:
    """Highest rate whose p99 (of all requests, refusals counted as errors) stays within `slo_ms` with fewer than
    `max_error_ratio` errors (RateSearch, each rate judged by `passes`). Returns (rate, every trial's summary)."""
    trials: list[dict[str, float]] = []
    search = RateSearch(start, limit, refine)
    while search.rate is not None:
        search.record(passes(port, raws, search.rate, slo_ms, trials, duration_s=duration_s,
                             max_error_ratio=max_error_ratio, log=log))
    return search.good, trials
