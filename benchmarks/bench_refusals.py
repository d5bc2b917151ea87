"""Early answers and shutdowns, as real client libraries see them.

    python -m benchmarks.bench_refusals [--quick] [--tries 20] [--runs 20] [--no-door-process]

The client matrix: urllib, requests, httpx (blocking and asyncio) and aiohttp each POST JSON bodies of 11 MB and
100 MB `--tries` times, for three answers the server sends before it has read the body: 413 (over the 8 MiB limit,
refused from the Content-Length), 503 at the headers from admission (a model with a latency SLO whose places are
all held, tests/realclients.py's `Crowd`), and 503 past the connection limit (`--max-connections 2`, two
connections held). Each try's outcome is counted: the answer and its error code, or the exception the library
raised (a reset that took the answer with it). With `--no-door-process` the matrix's servers accept connections
themselves.

The shutdown runs: `--runs` times with the door process and as many without, a fresh server, 600 one-row predicts
from 100 aiohttp tasks over one pool of 100 connections, SIGTERM after the 300th answer. Each request is answered
(any status), refused at connect (the listener closed: fine), or lost (anything else: a reset, a disconnection);
answers to requests sent once the server has said `Connection: close` must say it too; the server must exit 0.

Loopback only; the servers are not pinned (a long run of the SLO model and the server's reads share the machine).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.realclients import (
    CLIENTS,
    OVERLOADED,
    PREDICT,
    SLO_CONFIG,
    SLO_MODEL,
    SLO_PREDICT,
    TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    Crowd,
    hold_connections,
    json_body,
    outcome,
    shutdown_run,
)

from benchmarks._harness import ROOT, Process, start_fastserve, write_results

SIZES = {"11MB": 11_000_000, "100MB": 100_000_000}


def _models(folder: Path) -> Path:
    shutil.copytree(ROOT / "models" / "churn", folder / "churn")
    shutil.copytree(ROOT / "models" / "churn", folder / SLO_MODEL)
    (folder / SLO_MODEL / "fastserve.toml").write_text(SLO_CONFIG)
    return folder


def _cell(refusal: str, expected: str, size: str, client: str, tries: int, url: str, body: bytes,
          before: Any = None) -> dict[str, Any]:
    outcomes: collections.Counter[str] = collections.Counter()
    seconds = []
    for _ in range(tries):
        held = before() if before is not None else None
        started = time.perf_counter()
        outcomes[outcome(CLIENTS[client], url, body)] += 1
        seconds.append(time.perf_counter() - started)
        for s in held or ():
            s.close()
    row = {"refusal": refusal, "size": size, "client": client, "tries": tries, "answered": outcomes[expected],
           "outcomes": dict(outcomes), "median_s": statistics.median(seconds), "max_s": max(seconds)}
    print(f"{refusal:>24} {size:>6} {client:>12}: {outcomes[expected]:>3}/{tries} answered, median "
          f"{row['median_s']:.2f} s, max {row['max_s']:.2f} s; {dict(outcomes)}", flush=True)
    return row


def _matrix(models: Path, tries: int, acceptor: tuple[str, ...]) -> list[dict[str, Any]]:
    bodies = {size: json_body(n) for size, n in SIZES.items()}
    rows = []
    server = start_fastserve(models, None, *acceptor)
    crowd = Crowd(f"http://127.0.0.1:{server.port}", server.port)
    try:
        url = f"http://127.0.0.1:{server.port}"
        for size, body in bodies.items():
            for client in CLIENTS:
                rows.append(_cell("413 from Content-Length", TOO_LARGE, size, client, tries, url + PREDICT, body))
        for size, body in bodies.items():
            for client in CLIENTS:
                rows.append(_cell("503 at headers, admission", OVERLOADED, size, client, tries, url + SLO_PREDICT,
                                  body, crowd.ensure_full))
    finally:
        crowd.release()
        server.stop()
    server = start_fastserve(models, None, "--max-connections", "2", *acceptor)
    try:
        url = f"http://127.0.0.1:{server.port}"
        for size, body in bodies.items():
            for client in CLIENTS:
                rows.append(_cell("503 past max connections", TOO_MANY_CONNECTIONS, size, client, tries,
                                  url + PREDICT, body, lambda: hold_connections(server.port, 2)))
    finally:
        server.stop()
    return rows


def _shutdowns(models: Path, runs: int) -> dict[str, dict[str, Any]]:
    results = {}
    for name, args in (("door process", ()), ("no door process", ("--no-door-process",))):
        per_run = []
        for _ in range(runs):
            server: Process = start_fastserve(models, None, *args)
            started = time.perf_counter()
            try:
                run = shutdown_run(f"http://127.0.0.1:{server.port}", server.proc)
            finally:
                server.stop()
            lost = run.lost()
            per_run.append({"answered": run.count("answered"), "refused": run.count("refused"), "lost": len(lost),
                            "lost_errors": dict(collections.Counter(r.error for r in lost)),
                            "answers_after_signal": len(run.answered_after_signal()),
                            "closing_answers": len(run.closing()),
                            "kept_open_after_close": len(run.kept_open_after_close()),
                            "exit_code": run.exit_code, "seconds": time.perf_counter() - started})
        summary = {"runs": runs, "lost": sum(r["lost"] for r in per_run),
                   "runs_with_losses": sum(r["lost"] > 0 for r in per_run),
                   "kept_open_after_close": sum(r["kept_open_after_close"] for r in per_run),
                   "runs_without_close": sum(r["closing_answers"] == 0 for r in per_run),
                   "exits_not_0": sum(r["exit_code"] != 0 for r in per_run), "per_run": per_run}
        errors: collections.Counter[str] = collections.Counter()
        for r in per_run:
            errors.update(r["lost_errors"])
        print(f"shutdown, {name:>15}: {summary['lost']} requests lost in {summary['runs_with_losses']}/{runs} runs "
              f"({dict(errors)}); answers without Connection: close once the server had said it: "
              f"{summary['kept_open_after_close']} (runs where it never did: {summary['runs_without_close']}); exits "
              f"other than 0: {summary['exits_not_0']}; answered per "
              f"run {min(r['answered'] for r in per_run)}-{max(r['answered'] for r in per_run)}, refused at "
              f"connect {min(r['refused'] for r in per_run)}-{max(r['refused'] for r in per_run)}", flush=True)
        results[name] = summary
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 tries and 5 runs")
    parser.add_argument("--tries", type=int, default=20, help="tries per client, size and refusal (default 20)")
    parser.add_argument("--runs", type=int, default=20, help="shutdown runs per acceptor (default 20)")
    parser.add_argument("--no-door-process", action="store_true",
                        help="the client matrix's servers accept connections themselves")
    args = parser.parse_args(argv)
    tries, runs = (5, 5) if args.quick else (args.tries, args.runs)
    acceptor = ("--no-door-process",) if args.no_door_process else ()
    with tempfile.TemporaryDirectory() as folder:
        models = _models(Path(folder))
        matrix = _matrix(models, tries, acceptor)
        shutdowns = _shutdowns(models, runs)
    answered = sum(r["answered"] for r in matrix)
    print(f"client matrix: {answered}/{sum(r['tries'] for r in matrix)} tries read their answer")
    path = write_results("refusals", {"tries": tries, "runs": runs, "door_process": not args.no_door_process,
                                      "matrix": matrix, "shutdown": shutdowns})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
