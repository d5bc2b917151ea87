"""Many small models in one server: start-up, memory, threads, idle cost, scrapes, and a Zipf load within a budget.

For each count in `--models` (default 100,1000): that many copies of the bundled `spend` (136 KB each), one version
each (hard links: the repository costs no disk), served with `--max-loaded-versions` (`--budget`, default 100):
- time from start to ready, resident memory (every process), threads, idle CPU over 5 s (the repository watched
  every `--poll-interval` s, the server's default 2);
- `/metrics`: its size and the time to scrape it (median of 5);
- a Zipf-distributed load (exponent `--zipf`, 1.1: a few hot models, a long tail), one-row JSON over 16 connections
  at `--rate` for `--seconds`: p50/p99 of requests to the 10 hottest models and of the rest, errors, and the
  evictions and loads per second (the server's counters before and after).

    python -m benchmarks.bench_many_models [--quick] [--models 100,1000] [--budget 100] [--workers 1]
        [--connections 16] [--no-state-dir]

The server gets `--state-dir` (a folder beside the repository, `_state`: not a model name), so a version loaded
again after its eviction is not gated again.

Writes benchmarks/results/many_models.json. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, Process, start_fastserve, write_results
from benchmarks.bench_workers import cpu_seconds
from benchmarks.loadgen import LOOPBACK
from fastserve.bench.engine import run_trial


def repository(dest: Path, n: int) -> None:
    source = ROOT / "models" / "spend"
    for i in range(n):
        shutil.copytree(source, dest / f"m{i:05d}", copy_function=os.link)


def rss_and_threads(server: Process) -> tuple[int, int]:
    rss = threads = 0
    for pid in server.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except OSError:
            continue
    return rss, threads


def counter(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def scrape_effect(server: Process, n: int, seconds: float) -> dict[str, Any]:
    """One client sending one-row predicts one after another to 50 models in turn, for `seconds` without scrapes,
    then as long with `/metrics` scraped every second from another thread: each predict's latency."""
    import threading

    row = [float(v) for v in np.load(ROOT / "models" / "spend" / "1" / "validation.npz")["inputs"][0]]
    body = orjson.dumps({"inputs": [row]})
    raws = [Client.build("POST", f"/v1/models/m{i % n:05d}/predict", body) for i in range(50)]
    out: dict[str, Any] = {}
    with Client(server.port) as client:
        for raw in raws:  # every one of the 50 loaded
            client.send_raw(raw)
        for label, scraping in (("without", False), ("with", True)):
            stop = threading.Event()
            scrapes: list[float] = []

            def scrape(stop: threading.Event = stop, scrapes: list[float] = scrapes) -> None:
                with Client(server.port) as other:
                    while not stop.wait(1.0):
                        t0 = time.perf_counter()
                        other.request("GET", "/metrics")
                        scrapes.append(time.perf_counter() - t0)

            thread = threading.Thread(target=scrape)
            if scraping:
                thread.start()
            latencies = []
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                t0 = time.perf_counter()
                status, _ = client.send_raw(raws[i % 50])
                latencies.append(time.perf_counter() - t0)
                i += 1
                if status != 200:
                    raise RuntimeError(f"predict answered {status}")
            stop.set()
            if scraping:
                thread.join()
            ms = np.array(latencies) * 1e3
            out[label] = {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                          "max_ms": float(ms.max()), "scrapes": len(scrapes),
                          "scrape_ms": float(np.median(scrapes) * 1e3) if scrapes else None}
    return out


def one_count(n: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fastserve-bench-many-"))
    try:
        repository(tmp, n)
        started = time.monotonic()
        state = ("--state-dir", str(tmp / "_state")) if args.state_dir else ()
        server = start_fastserve(tmp, None, "--poll-interval", str(args.poll_interval), "--max-loaded-versions",
                                 str(args.budget), "--workers", str(args.workers), *state)
        ready_s = time.monotonic() - started
        try:
            time.sleep(1.0)
            cpu0 = cpu_seconds(server)
            time.sleep(5.0)
            idle = (cpu_seconds(server) - cpu0) / 5.0
            rss, threads = rss_and_threads(server)
            scrapes = []
            with Client(server.port) as client:
                for _ in range(5):
                    t0 = time.perf_counter()
                    _, text_bytes = client.request("GET", "/metrics")
                    scrapes.append(time.perf_counter() - t0)
            before = text_bytes.decode()
            scraped = scrape_effect(server, n, 5.0 if args.quick else 20.0)
            row = [float(v) for v in np.load(ROOT / "models" / "spend" / "1" / "validation.npz")["inputs"][0]]
            body = orjson.dumps({"inputs": [row]})
            rng = np.random.default_rng(0)
            ranks = np.minimum(rng.zipf(args.zipf, 20_000), n) - 1
            order = rng.permutation(n)  # the models by popularity: order[0] the hottest
            models = order[ranks]
            raws = [Client.build("POST", f"/v1/models/m{int(m):05d}/predict", body) for m in models]
            hot = set(int(m) for m in order[:10])
            t = run_trial(LOOPBACK, server.port, raws, args.rate, args.seconds, connections=args.connections,
                          record=int(args.rate * args.seconds) + 1000, timeout_ms=30_000)
            with Client(server.port) as client:
                after = client.request("GET", "/metrics")[1].decode()
            rss_after, threads_after = rss_and_threads(server)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    records = t.records
    assert records is not None
    index = np.arange(len(records["status"])) % len(raws)
    is_hot = np.array([int(models[i]) in hot for i in index])
    ok = records["status"] == 200
    lat = records["latency_ns"] / 1e6

    def pct(mask: np.ndarray) -> dict[str, float]:
        values = lat[mask & ok]
        return {"n": int(values.size), "p50_ms": float(np.percentile(values, 50)) if values.size else float("nan"),
                "p99_ms": float(np.percentile(values, 99)) if values.size else float("nan")}

    evictions = counter(after, "fastserve_model_evictions_total") - counter(before, "fastserve_model_evictions_total")
    return {"models": n, "budget": args.budget, "workers": args.workers, "state_dir": args.state_dir,
            "connections": args.connections, "ready_s": ready_s,
            "rss_mb": rss / 2**20, "threads": threads, "idle_cpu_share": idle,
            "metrics_kb": len(before) / 1024, "scrape_ms": statistics.median(scrapes) * 1e3, "scrape_effect": scraped,
            "load": {"rate": args.rate, "seconds": args.seconds, "answered": t.answered,
                     "statuses": {str(k): v for k, v in t.statuses.items()}, "errors": dict(t.errors),
                     "hot": pct(is_hot), "cold": pct(~is_hot), "evictions_per_s": evictions / t.elapsed_s,
                     "rss_mb_after": rss_after / 2**20, "threads_after": threads_after}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", default="100,1000")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the server's look at the repository "
                        "(its default): the idle cost includes it")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16, help="the Zipf load's connections: a request waits "
                        "for a free one, so a hot model's requests wait behind cold ones' loads when they are few")
    parser.add_argument("--no-state-dir", dest="state_dir", action="store_false",
                        help="without --state-dir: a version loaded again is gated again")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 3.0
    results = []
    for n in [int(x) for x in args.models.split(",") if x]:
        fig = one_count(n, args)
        results.append(fig)
        load = fig["load"]
        print(f"{n:>6} models (budget {args.budget}, {args.workers} worker(s)): ready {fig['ready_s']:.1f} s, "
              f"{fig['rss_mb']:.0f} MB, "
              f"{fig['threads']} threads, idle {fig['idle_cpu_share']:.1%} of a core, /metrics "
              f"{fig['metrics_kb']:.0f} KB in {fig['scrape_ms']:.0f} ms; Zipf load {load['rate']:.0f}/s: hot p50 "
              f"{load['hot']['p50_ms']:.2f} p99 {load['hot']['p99_ms']:.2f} ms, rest p50 {load['cold']['p50_ms']:.2f} "
              f"p99 {load['cold']['p99_ms']:.2f} ms, {load['evictions_per_s']:.1f} evictions/s, statuses "
              f"{load['statuses']}, errors {load['errors']}, after: {load['rss_mb_after']:.0f} MB, "
              f"{load['threads_after']} threads", flush=True)
        effect = fig["scrape_effect"]
        print(f"        predicts one after another over 50 models: p99 {effect['without']['p99_ms']:.2f} ms (max "
              f"{effect['without']['max_ms']:.1f}) without scrapes, {effect['with']['p99_ms']:.2f} ms (max "
              f"{effect['with']['max_ms']:.1f}) with /metrics every second ({effect['with']['scrape_ms']:.0f} ms "
              "each)", flush=True)
    path = write_results("many_models_quick" if args.quick else "many_models",
                         {"results": results, "time": time.strftime("%Y-%m-%d %H:%M")})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
