"""`fastserve bench --self-test`: the generator's own ceiling on this machine, measured against the compiled sink.

The sink runs in a subprocess pinned to one core and the generator in this process pinned to another (where there
are two cores or more), so the figure is one generator core's. The highest rate that passes is found by doubling from
`start_rps` until a rate fails, then by bisection; a rate passes when its trial answers at least 99% of the offered
rate with no error and the generator's send lag p99 stays under the bound (50 µs). A failed trial is run once more
before it counts, so that one hiccup of a shared machine does not end the search. Every trial is reported, with how
long the generator and the sink waited for their cores (other processes there make the figure the machine's).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
LAG_BOUND_US = 50.0
MIN_ACHIEVED = 0.99


def one_row_request(features: int = 22) -> bytes:
    """A one-row JSON predict request, as a tabular model gets them."""
    body = json.dumps({"inputs": [[round(0.1 * (i + 1) - 1.0, 6) for i in range(features)]]}).encode()
    return (f"POST /v1/models/churn/predict HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _cores() -> tuple[int, int] | None:
    """(generator core, sink core), or None where this process cannot be pinned to two cores."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _sched(path: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a task so far (Linux's schedstat): the wait is
    what other processes on its core took from it."""
    try:
        run, wait = Path(path).read_text().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run) / 1e9, int(wait) / 1e9


@contextlib.contextmanager
def running_sink(core: int | None, body: bytes = b'{"ok":true}', busy_poll: bool = False
                 ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The compiled sink in a subprocess (pinned to `core`) and the loopback port it listens on."""
    port = _free_port()
    code = f"from fastserve.bench.sink import sink; sink({LOOPBACK!r}, {port}, {body!r}, busy_poll={busy_poll})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        if core is not None:
            os.sched_setaffinity(proc.pid, {core})
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the sink exited with {proc.returncode}")
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the sink did not listen on port {port} within 10 s") from None
                time.sleep(0.02)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _pinned(core: int | None) -> Iterator[None]:
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def self_test(seconds: float = 3.0, *, start_rps: float = 25_000.0, limit_rps: float = 3_200_000.0,
              bisections: int = 4, lag_bound_us: float = LAG_BOUND_US, connections: int = 64,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The generator's ceiling against the compiled sink: {ceiling_rps, send_lag_p99_us, cpu_per_request_us, ...}
    (at the ceiling), and every trial run. `seconds` per trial."""
    from fastserve.bench.engine import machine_gaps, run_trial

    cores = _cores()
    gen_core, sink_core = cores if cores else (None, None)
    requests = [one_row_request()]
    trials: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    # The sink never sleeps, so that the generator's writes never pay for waking it: what is measured is the
    # generator's own cost.
    with running_sink(sink_core, busy_poll=True) as (proc, port), _pinned(gen_core):
        sink_stat = f"/proc/{proc.pid}/schedstat"
        gaps = machine_gaps(1.0)
        if log is not None:
            log(f"  this core, spinning: {gaps['share']:.2%} of the time lost in {gaps['per_s']:,.0f} gaps/s over "
                f"10 µs (p50 {gaps['p50_us']:.0f} µs, p99 {gaps['p99_us']:.0f} µs, max {gaps['max_us']:.0f} µs)")

        def attempt(rate: float) -> dict[str, Any]:
            sink0, t0 = _sched(sink_stat), time.monotonic()
            t = run_trial(LOOPBACK, port, requests, rate, seconds, connections=connections)
            sink1, wall = _sched(sink_stat), time.monotonic() - t0
            lag_p99 = t.send_lag.percentile(99) / 1e3
            achieved = t.achieved_rate()
            errors = sum(t.errors.values())
            row = {
                "offered_rps": rate,
                "achieved_rps": round(achieved, 1),
                "sent": t.sent,
                "errors": errors,
                "send_lag_p50_us": t.send_lag.percentile(50) / 1e3,
                "send_lag_p99_us": lag_p99,
                "send_lag_max_us": t.send_lag.max / 1e3,
                "latency_p50_us": t.latency.percentile(50) / 1e3,
                "latency_p99_us": t.latency.percentile(99) / 1e3,
                "cpu_per_request_us": t.cpu_s / t.answered * 1e6 if t.answered else float("nan"),
                "busy_cpu_per_request_us": t.busy_cpu_s() / t.answered * 1e6 if t.answered else float("nan"),
                "generator_cpu_share": t.cpu_s / t.elapsed_s if t.elapsed_s else 0.0,
                "sink_cpu_share": (sink1[0] - sink0[0]) / wall,
                # time each spent runnable but waiting for its core: other processes on a shared machine
                "generator_wait_share": t.cpu_wait_s / t.elapsed_s if t.elapsed_s else 0.0,
                "sink_wait_share": (sink1[1] - sink0[1]) / wall,
                "pass": achieved >= MIN_ACHIEVED * rate and errors == 0 and lag_p99 < lag_bound_us,
            }
            trials.append(row)
            if log is not None:
                log(f"  {rate:>10,.0f}/s  achieved {achieved:>10,.0f}/s  send lag p99 {lag_p99:6.1f} µs  "
                    f"latency p99 {row['latency_p99_us']:9.1f} µs  generator CPU {row['busy_cpu_per_request_us']:.2f}"
                    f" µs/request  waits for a CPU: generator {row['generator_wait_share']:.0%} sink "
                    f"{row['sink_wait_share']:.0%}  {'ok' if row['pass'] else 'FAIL'}")
            return row

        def passes(rate: float) -> bool:
            nonlocal best
            for _ in range(2):
                row = attempt(rate)
                if row["pass"]:
                    if best is None or rate > best["offered_rps"]:
                        best = row
                    return True
            return False

        run_trial(LOOPBACK, port, requests, start_rps, min(seconds, 0.5), connections=connections)  # warm-up
        good, bad = 0.0, None
        rate = start_rps
        while rate <= limit_rps and passes(rate):
            good, rate = rate, rate * 2
        if rate <= limit_rps:
            bad = rate
            for _ in range(bisections):
                rate = (good + bad) / 2 if good else bad / 2
                if passes(rate):
                    good = rate
                else:
                    bad = rate
    at = best or {}
    return {
        "ceiling_rps": good,
        "send_lag_p99_us": at.get("send_lag_p99_us"),
        "send_lag_p50_us": at.get("send_lag_p50_us"),
        "cpu_per_request_us": at.get("cpu_per_request_us"),
        "busy_cpu_per_request_us": at.get("busy_cpu_per_request_us"),
        "latency_p50_us": at.get("latency_p50_us"),
        "latency_p99_us": at.get("latency_p99_us"),
        "sink_cpu_share": at.get("sink_cpu_share"),
        # above a few percent, other processes shared the cores and the ceiling is this machine's at that moment
        "generator_wait_share": at.get("generator_wait_share"),
        "sink_wait_share": at.get("sink_wait_share"),
        "max_wait_share": max((t["generator_wait_share"] for t in trials), default=0.0),
        "lag_bound_us": lag_bound_us,
        "first_failing_rps": bad,
        "seconds_per_trial": seconds,
        "connections": connections,
        "generator_core": gen_core,
        "sink_core": sink_core,
        "pinned": cores is not None,
        "request_bytes": len(requests[0]),
        # what the machine takes from a thread that does nothing but spin on the clock on the generator's core: the
        # requests due during a gap, and while the generator catches up after it, are sent late whatever it does
        "core_gaps": gaps,
        "trials": trials,
    }


def main() -> None:  # pragma: no cover - `python -m fastserve.bench.selftest`
    result = self_test(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0, log=lambda line: print(line, flush=True))
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
