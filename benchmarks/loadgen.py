"""Open-loop load generator: Poisson arrivals at a set rate, latency from the intended send time.

Requests are sent when the schedule says, whether or not earlier ones have been answered (open loop), over a pool of
keep-alive connections; when every connection is busy a request waits in the generator, and that wait counts in
its latency, so queueing anywhere cannot hide (no coordinated omission). The generator spins on its own core between
sends for microsecond timing, and reports its own send lag so one can see whether it kept up. Bounded in time and in
request count; loopback only.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from dataclasses import dataclass

import numpy as np

LOOPBACK = "127.0.0.1"


class _Conn(asyncio.Protocol):
    def __init__(self, done: collections.deque[_Conn], on_answer) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._free = done
        self._on_answer = on_answer
        self.index = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, raw: bytes) -> None:
        self.index = index
        self.transport.write(raw)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buf[:end]
            length = 0
            pos = head.lower().find(b"content-length:")
            if pos >= 0:
                line_end = head.find(b"\r\n", pos)
                length = int(head[pos + 15:line_end if line_end >= 0 else len(head)])
            total = end + 4 + length
            if len(self._buf) < total:
                return
            status = int(head[9:12])
            self._buf = self._buf[total:]
            index, self.index = self.index, -1
            self._on_answer(self, index, status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.index >= 0:
            self._on_answer(self, self.index, 0)
        self.transport = None
        if self in self._free:  # closed by the server while idle (keep-alive or header timeout): not reusable
            self._free.remove(self)


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


async def _open_loop(port: int, raws: list[bytes], rate: float, duration_s: float, max_requests: int,
                     connections: int, timeout_s: float, seed: int) -> Run:
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(seed)
    n = min(max_requests, int(rate * duration_s * 1.2) + 10)
    intended = np.cumsum(rng.exponential(1.0 / rate, size=n))
    n = int(np.searchsorted(intended, duration_s))
    intended_ns = (intended[:n] * 1e9).astype(np.int64)
    latency = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.int32)
    lag = np.zeros(n, dtype=np.int64)
    free: collections.deque[_Conn] = collections.deque()
    backlog: collections.deque[int] = collections.deque()
    clock = time.perf_counter_ns
    pending = 0
    t0 = 0

    def send(conn: _Conn, i: int) -> None:
        lag[i] = clock() - t0 - intended_ns[i]
        conn.send(i, raws[i % len(raws)])

    def on_answer(conn: _Conn, i: int, code: int) -> None:
        nonlocal pending
        latency[i] = clock() - t0 - intended_ns[i]
        status[i] = code
        pending -= 1
        if conn.transport is None:
            return
        if backlog:
            send(conn, backlog.popleft())
        else:
            free.append(conn)

    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Conn(free, on_answer), LOOPBACK, port)
        free.append(proto)
    gc.freeze()  # a full collection over everything built so far would be a pause charged to the server
    t0 = clock()
    i = 0
    while i < n:
        now = clock() - t0
        while i < n and intended_ns[i] <= now:
            pending += 1
            if free:
                send(free.popleft(), i)
            else:
                backlog.append(i)
            i += 1
        await asyncio.sleep(0)  # let answers in; spins on this core for precise send times
    deadline = clock() + int(timeout_s * 1e9)
    while pending and clock() < deadline:
        await asyncio.sleep(0.001)
    elapsed = (clock() - t0) / 1e9
    for conn in list(free):
        if conn.transport is not None:
            conn.transport.close()
    gc.unfreeze()
    unanswered = status == 0
    latency[unanswered] = int(timeout_s * 1e9)
    return Run(rate, n, latency / 1e3, status, lag / 1e3, max(duration_s, min(elapsed, duration_s + timeout_s)),
               intended_ns / 1e9)


def open_loop(port: int, raws: list[bytes], rate: float, duration_s: float = 3.0, max_requests: int = 200_000,
              connections: int = 256, timeout_s: float = 5.0, seed: int = 0) -> Run:
    """One open-loop run at `rate` requests/s for `duration_s` (at most `max_requests`)."""
    import uvloop

    return uvloop.run(_open_loop(port, raws, rate, duration_s, max_requests, connections, timeout_s, seed))


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
