"""Where a request's time goes before any model runs: three transports answering a one-row JSON echo, beside
fastserve answering the same row with `churn`, each server pinned to core 0, the compiled generator on core 1.

- `asgi`: the bare ASGI echo (`benchmarks/echo_app.py`) on uvicorn + uvloop + httptools, as fastserve serves today;
- `rsgi`: the same echo on granian's RSGI interface (`benchmarks/echo_rsgi.py`; granian's Rust HTTP stack, one
  worker, one runtime thread, uvloop);
- `compiled`: a connection protocol of our own in Cython on uvloop, httptools (llhttp) parsing, the answer written
  from the parser's last callback (`benchmarks/echo_protocol.pyx`, built here on first use with Cython);
- `fastserve`: `fastserve serve models` answering the row with `churn` (the reference: what a real request costs);
  `fastserve-compiled` the same on its compiled protocol (`--http compiled`).

Per server, in alternating rounds: (1) saturation over 32 connections (every connection always busy: 32 closed-loop
clients), its requests/s and the server's CPU per request (user + system, all threads and children); (2) the highest
open-loop rate whose p99 stays within 10 ms with under 0.1% errors (loadgen.max_rate: doubling from 2,000/s, then
three bisections); (3) one client sending each request once the last is answered: p50 and p99 from write to
answer.

    python -m benchmarks.bench_echo [--quick] [--rounds 3] [--servers asgi,rsgi,compiled,fastserve]

Writes benchmarks/results/echo.json. Loopback only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import (
    ROOT,
    Client,
    Process,
    _pinned,
    _wait,
    free_port,
    pin_self,
    start_echo,
    start_fastserve,
    write_results,
)
from benchmarks.loadgen import LOOPBACK, max_rate
from fastserve.bench.engine import run_trial

SERVER_CORE, GENERATOR_CORE = 0, 1
SLO_MS = 10.0
SERVERS = ("asgi", "rsgi", "compiled", "fastserve", "fastserve-compiled")
BUILD = Path("/tmp/fastserve-bench-echo")


def _row() -> list[float]:
    return [float(v) for v in np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"][0]]


def build_compiled() -> Path:
    """benchmarks/echo_protocol.pyx compiled in place under BUILD; the folder to put on sys.path."""
    BUILD.mkdir(parents=True, exist_ok=True)
    src = ROOT / "benchmarks" / "echo_protocol.pyx"
    target = BUILD / "echo_protocol.pyx"
    built = BUILD / f"echo_protocol{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not built.exists() or not target.exists() or target.read_bytes() != src.read_bytes():
        built.unlink(missing_ok=True)
        target.write_bytes(src.read_bytes())
        subprocess.run([sys.executable, "-m", "cython", "-3", "echo_protocol.pyx"], cwd=BUILD, check=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", "echo_protocol.c",
                        "-o", built.name], cwd=BUILD, check=True)
    return BUILD


def start(name: str) -> Process:
    if name == "asgi":
        return start_echo(SERVER_CORE)
    if name.startswith("fastserve"):
        http = "compiled" if name == "fastserve-compiled" else "asgi"
        return start_fastserve(ROOT / "models", SERVER_CORE, "--poll-interval", "0", "--http", http)
    port = free_port()
    if name == "rsgi":
        cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--host", LOOPBACK, "--port", str(port),
               "--workers", "1", "--runtime-threads", "1", "--runtime-mode", "st", "--loop", "uvloop", "--no-ws",
               "--log-level", "warning", "--backlog", "2048", "benchmarks.echo_rsgi:app"]
    else:
        code = (f"import sys; sys.path.insert(0, {str(build_compiled())!r}); "
                f"from echo_protocol import serve; serve({LOOPBACK!r}, {port})")
        cmd = [sys.executable, "-c", code]
    proc = subprocess.Popen(_pinned(cmd, SERVER_CORE), cwd=ROOT)
    _wait(port, "/")
    return Process(proc, port)


def saturation(server: Process, raw: bytes, seconds: float) -> dict[str, float]:
    """32 connections always busy (an offered rate no server here reaches): requests/s and server CPU each."""
    cpu0 = server.cpu_seconds()
    t = run_trial(LOOPBACK, server.port, [raw], 400_000.0, seconds, connections=32, poisson=False,
                  max_in_flight=64, timeout_ms=5_000)
    cpu = server.cpu_seconds() - cpu0
    answered = t.statuses.get(200, 0)
    return {"rps": answered / t.elapsed_s if t.elapsed_s else 0.0,
            "cpu_us_per_request": cpu / answered * 1e6 if answered else float("nan"), "answered": answered}


def one_client(server: Process, raw: bytes, seconds: float) -> dict[str, float]:
    """One client sending each request as the last is answered (a closed loop: one connection, offered more than
    it can take, the excess dropped): each request's time from its write to its answer."""
    t = run_trial(LOOPBACK, server.port, [raw], 100_000.0, seconds, connections=1, max_in_flight=1,
                  record=int(100_000 * seconds) + 1000)
    r = t.records
    assert r is not None
    sent = (r["status"] == 200) & (r["send_lag_ns"] >= 0)
    us = (r["latency_ns"][sent] - r["send_lag_ns"][sent]) / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "n": int(us.size),
            "errors": sum(v for k, v in t.errors.items() if k != "dropped") + t.answered - t.statuses.get(200, 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    seconds = 1.0 if args.quick else 3.0
    pin_self(GENERATOR_CORE)
    body = orjson.dumps({"inputs": [_row()]})
    raw = Client.build("POST", "/v1/models/churn/predict", body)
    results: dict[str, dict[str, list[Any]]] = {n: {"saturation": [], "max_rate": [], "one_client": []}
                                                for n in names}
    servers = {n: start(n) for n in names}
    try:
        for n, s in servers.items():  # each answers the row, and warms up
            with Client(s.port) as client:
                status, answer = client.request("POST", "/v1/models/churn/predict", body)
            assert status == 200, (n, status, answer[:200])
            run_trial(LOOPBACK, s.port, [raw], 2000, 0.5, connections=32)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                s = servers[n]
                sat = saturation(s, raw, seconds)
                one = one_client(s, raw, seconds)
                rate, _ = max_rate(s.port, [raw], SLO_MS, start=2000.0, limit=400_000.0,
                                   duration_s=1.0 if args.quick else 2.0, log=lambda *_: None)
                results[n]["saturation"].append(sat)
                results[n]["one_client"].append(one)
                results[n]["max_rate"].append(rate)
                print(f"round {r + 1} {n:<10} 32 connections {sat['rps']:>9,.0f}/s  CPU "
                      f"{sat['cpu_us_per_request']:6.1f} µs/request   max rate p99<=10ms {rate:>9,.0f}/s   one "
                      f"client p50 {one['p50_us']:6.1f} µs p99 {one['p99_us']:7.1f} µs", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    summary = {}
    for n, res in results.items():
        summary[n] = {
            "rps_32": float(np.median([x["rps"] for x in res["saturation"]])),
            "cpu_us_per_request": float(np.median([x["cpu_us_per_request"] for x in res["saturation"]])),
            "max_rate_p99_10ms": float(np.median(res["max_rate"])),
            "one_client_p50_us": float(np.median([x["p50_us"] for x in res["one_client"]])),
            "one_client_p99_us": float(np.median([x["p99_us"] for x in res["one_client"]])),
        }
    base = summary.get("asgi")
    print(f"\n{'server':<10}{'CPU µs/req':>12}{'x asgi':>8}{'req/s, 32':>12}{'max rate':>12}{'x asgi':>8}"
          f"{'1 client p50':>14}{'p99':>9}")
    for n, fig in summary.items():
        cpu_ratio = fig["cpu_us_per_request"] / base["cpu_us_per_request"] if base else float("nan")
        rate_ratio = fig["max_rate_p99_10ms"] / base["max_rate_p99_10ms"] if base else float("nan")
        fig["cpu_vs_asgi"], fig["max_rate_vs_asgi"] = cpu_ratio, rate_ratio
        print(f"{n:<10}{fig['cpu_us_per_request']:>12.1f}{cpu_ratio:>7.2f}x{fig['rps_32']:>12,.0f}"
              f"{fig['max_rate_p99_10ms']:>12,.0f}{rate_ratio:>7.2f}x{fig['one_client_p50_us']:>12.1f} µs"
              f"{fig['one_client_p99_us']:>7.0f} µs")
    path = write_results("echo", {"rounds": args.rounds, "seconds": seconds, "summary": summary,
                                  "raw": results, "time": time.strftime("%Y-%m-%d %H:%M")})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
