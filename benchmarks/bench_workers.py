"""Worker processes (`fastserve serve --workers N`): what each added worker gives, and a hot swap under load.

1. Scaling. For each N in `--workers` (default 1,2): `fastserve serve models --workers N` (N = 1 is the single
   process, no supervisor), one-row JSON to `churn` from the compiled generator (`fastserve bench`'s engine):
   - saturation over 64 connections (an offered rate no server here reaches): requests/s and server CPU (every
     process: supervisor, door, workers), as requests per server-CPU-second; the efficiency of N workers is that
     figure over one worker's;
   - the same at a fixed open-loop rate (`--fixed-rate`, 15,000/s): the cost of the same traffic split over N;
   - the highest open-loop rate whose p99 stays within 10 ms with under 0.1% errors (loadgen.max_rate).
   The server gets the cores in `--server-cores`, the generator those in `--generator-cores` (on a 2-core machine
   they share: the figures there are efficiency figures, not capacities).
2. Hot swap under load (`--swap`, 2 workers): 32 connections calling `m` while a client promotes its versions 1 and
   2 in turn through the admin API; every answer's version is checked against the last promote that returned before
   the request was sent: none may come from the old version, and none may fail.

    python -m benchmarks.bench_workers [--quick] [--workers 1,2] [--server-cores 0,1] [--generator-cores 1]

Writes benchmarks/results/workers.json. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, Process, _wait, free_port, write_results
from benchmarks.loadgen import LOOPBACK, max_rate
from fastserve.bench.engine import run_trial

SLO_MS = 10.0


def _cores(text: str) -> set[int]:
    return {int(c) for c in text.split(",") if c}


def start(workers: int, cores: set[int], models: Path = ROOT / "models", *args: str) -> Process:
    port = free_port()
    cmd = [sys.executable, "-m", "fastserve", "serve", str(models), "--port", str(port), "--log-level", "warning",
           "--poll-interval", "0", "--workers", str(workers), *args]
    if cores and hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", ",".join(map(str, sorted(cores))), *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _wait(port, "/readyz")
    server = Process(proc, port)
    _wait_serving(server, workers)
    return server


def _wait_serving(server: Process, workers: int, timeout: float = 60.0) -> None:
    """Until every worker takes connections (readiness is the first worker's)."""
    if workers == 1:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Client(server.port) as client:
            text = client.request("GET", "/metrics")[1].decode()
        if f'fastserve_workers{{state="serving"}} {float(workers)}' in text:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{workers} workers not serving within {timeout} s")


def cpu_seconds(server: Process) -> float:
    """The server's CPU: every process of its tree (supervisor, door, workers), all threads (Linux)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree, grew = {server.proc.pid}, True
    while grew:
        grew = False
        for pid, fields in stats.items():
            if pid not in tree and int(fields[1]) in tree:
                tree.add(pid)
                grew = True
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in tree if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def scaling(workers: int, balance: str, args: argparse.Namespace, raw: bytes) -> dict[str, Any]:
    server = start(workers, _cores(args.server_cores), ROOT / "models", "--balance", balance)
    try:
        run_trial(LOOPBACK, server.port, [raw], 2000, 1.0, connections=64)  # warm every worker
        seconds = 1.0 if args.quick else 3.0
        rounds = []
        for _ in range(args.rounds):
            cpu0 = cpu_seconds(server)
            t = run_trial(LOOPBACK, server.port, [raw], 400_000.0, seconds, connections=64, poisson=False,
                          max_in_flight=128, timeout_ms=5_000)
            cpu = cpu_seconds(server) - cpu0
            answered = t.statuses.get(200, 0)
            rounds.append({"rps": answered / t.elapsed_s, "cpu_s": cpu, "answered": answered,
                           "per_cpu_second": answered / cpu if cpu else float("nan")})
        cpu0 = cpu_seconds(server)
        t = run_trial(LOOPBACK, server.port, [raw], args.fixed_rate, seconds, connections=64)
        fixed = {"rate": args.fixed_rate, "answered": t.statuses.get(200, 0),
                 "per_cpu_second": t.statuses.get(200, 0) / max(cpu_seconds(server) - cpu0, 1e-9)}
        rate, _ = max_rate(server.port, [raw], SLO_MS, start=2000.0, limit=400_000.0,
                                duration_s=1.0 if args.quick else 2.0, log=lambda *_: None)
    finally:
        server.stop()
    return {"workers": workers, "balance": balance, "rounds": rounds, "fixed_rate": fixed,
            "rps": float(np.median([r["rps"] for r in rounds])),
            "per_cpu_second": float(np.median([r["per_cpu_second"] for r in rounds])),
            "max_rate_p99_10ms": rate}


async def _calls(port: int, body: bytes, stop: threading.Event, log: list[tuple[float, int, int]]) -> None:
    head = (f"POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        while not stop.is_set():
            sent = time.monotonic()
            writer.write(head + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.split(b": ", 1) for line in answer.split(b"\r\n")[1:] if b": " in line)
            await reader.readexactly(int(headers[b"content-length"]))
            log.append((sent, int(answer[9:12]), int(headers.get(b"x-model-version", b"0"))))
    finally:
        writer.close()


def hot_swap(args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fastserve-bench-workers-"))
    try:
        model = tmp / "m"
        model.mkdir()
        (model / "fastserve.toml").write_text('[versions]\npolicy = "all"\n')
        for number in (1, 2):
            shutil.copytree(ROOT / "models" / "churn" / "1", model / str(number))
        token = secrets.token_hex(16)
        (tmp / "token").write_text(token)
        server = start(2, _cores(args.server_cores), tmp, "--admin-token-file", str(tmp / "token"))
        calls: list[tuple[float, int, int]] = []
        promotes: list[tuple[float, float, int]] = []
        stop = threading.Event()

        def traffic() -> None:
            async def run() -> None:
                await asyncio.gather(*(_calls(server.port, body, stop, calls) for _ in range(32)))
            asyncio.run(run())

        thread = threading.Thread(target=traffic)
        try:
            thread.start()
            time.sleep(0.5)
            auth = {"Authorization": f"Bearer {token}"}
            with Client(server.port) as admin:
                for i in range(10 if args.quick else 40):
                    number = 1 + i % 2
                    raw = Client.build("POST", f"/v1/admin/models/m/versions/{number}/promote", headers=auth)
                    issued = time.monotonic()
                    status, _ = admin.send_raw(raw)
                    if status != 200:
                        raise RuntimeError(f"promote answered {status}")
                    promotes.append((issued, time.monotonic(), number))
                    time.sleep(0.2)
            stop.set()
            thread.join(30)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = sum(1 for _, status, _ in calls if status != 200)
    # A request sent after promote i returned and before promote i + 1 was issued must get promote i's version;
    # one sent while a promote is under way may get either.
    stale = 0
    returned = [r for _, r, _ in promotes]
    for sent, status, version in calls:
        i = int(np.searchsorted(returned, sent)) - 1
        settled = i >= 0 and (i + 1 == len(promotes) or sent < promotes[i + 1][0])
        if settled and status == 200 and version != promotes[i][2]:
            stale += 1
    return {"requests": len(calls), "promotes": len(promotes), "failed": failed, "old_version_after_promote": stale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--balances", default="connections,requests",
                        help="the door's choices of worker to compare, with more than one worker")
    parser.add_argument("--server-cores", default="")
    parser.add_argument("--generator-cores", default="")
    parser.add_argument("--fixed-rate", type=float, default=15_000.0,
                        help="open-loop rate at which requests per server-CPU-second are also measured")
    parser.add_argument("--no-swap", dest="swap", action="store_false")
    args = parser.parse_args(argv)
    if args.generator_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, _cores(args.generator_cores))
    row = [float(v) for v in np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"][0]]
    body = orjson.dumps({"inputs": [row]})
    raw = Client.build("POST", "/v1/models/churn/predict", body)
    results: dict[str, Any] = {"scaling": [], "cores": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M"),
                               "server_cores": args.server_cores, "generator_cores": args.generator_cores}
    for n in [int(w) for w in args.workers.split(",") if w]:
        for balance in args.balances.split(",") if n > 1 else ["connections"]:
            fig = scaling(n, balance, args, raw)
            results["scaling"].append(fig)
            print(f"{n} worker(s), by {balance:<11}: {fig['rps']:>9,.0f} requests/s over 64 connections, "
                  f"{fig['per_cpu_second']:>8,.0f} requests per server-CPU-second, max rate p99<=10ms "
                  f"{fig['max_rate_p99_10ms']:>9,.0f}/s", flush=True)
    one = results["scaling"][0]
    for fig in results["scaling"]:
        fig["efficiency_vs_1"] = fig["per_cpu_second"] / one["per_cpu_second"]
        fig["efficiency_at_fixed_rate_vs_1"] = fig["fixed_rate"]["per_cpu_second"] / one["fixed_rate"]["per_cpu_second"]
        fig["max_rate_vs_1"] = fig["max_rate_p99_10ms"] / one["max_rate_p99_10ms"]
        print(f"  {fig['workers']} worker(s), by {fig['balance']:<11}: efficiency {fig['efficiency_vs_1']:.2f}x one "
              f"worker's at saturation, {fig['efficiency_at_fixed_rate_vs_1']:.2f}x at {args.fixed_rate:,.0f}/s; max "
              f"rate {fig['max_rate_vs_1']:.2f}x")
    if args.swap:
        swap = results["hot_swap"] = hot_swap(args, body)
        print(f"hot swap, 2 workers: {swap['promotes']} promotes under {swap['requests']:,} requests: "
              f"{swap['failed']} failed, {swap['old_version_after_promote']} answered by the old version after the "
              "promote returned")
    path = write_results("workers_quick" if args.quick else "workers", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
