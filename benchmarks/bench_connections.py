"""What the door process costs a client that opens a connection per request.

    python -m benchmarks.bench_connections [--quick] [--requests 1000]

The bundled `churn` model, one-row JSON requests, each on a new connection (`Connection: close`), one at a time: the
time from connect to the answer's end. Two servers side by side, one with the door process (the default), one with
`--no-door-process`, in alternating rounds, either both on core 0 with this client on core 1 (`pinned`, as the other
benchmarks run) or free to run on any core (`free`). Reported: p50/p99 of each and the door's over no door's, as
ratios and differences. A client that keeps its connection alive pays the door's hop once, not per request.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, pin_self, start_fastserve, write_results

VARIANTS = {"door process": (), "no door process": ("--no-door-process",)}


def _one(port: int, raw: bytes) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"expected a 200, got {answer[:200]!r}")
    return time.perf_counter() - started


def _measure(placement: str, raw: bytes, rounds: int, requests: int) -> dict[str, dict[str, float]]:
    core = 0 if placement == "pinned" else None
    servers = {name: start_fastserve(ROOT / "models", core, *args) for name, args in VARIANTS.items()}
    if core is not None:
        pin_self(1)
    elif hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    seconds: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():  # warm-up
            for _ in range(requests // 4):
                _one(server.port, raw)
        for _ in range(rounds):
            for name, server in servers.items():
                seconds[name] += [_one(server.port, raw) for _ in range(requests)]
    finally:
        for server in servers.values():
            server.stop()
    return {name: {"p50_us": float(np.percentile(s, 50) * 1e6), "p99_us": float(np.percentile(s, 99) * 1e6),
                   "requests": len(s)} for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--requests", type=int, default=1000, help="requests per server per round (default 1000)")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else 5
    row = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"][0].tolist()
    raw = Client.build("POST", "/v1/models/churn/predict", orjson.dumps({"inputs": [row]}))
    raw = raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1)
    results = {}
    for placement in ("pinned", "free"):
        table = _measure(placement, raw, rounds, args.requests)
        door, plain = table["door process"], table["no door process"]
        for name, figures in table.items():
            print(f"{placement:>6}, {name:>15}: p50 {figures['p50_us']:.0f} us, p99 {figures['p99_us']:.0f} us")
        print(f"{placement:>6}: the door adds {door['p50_us'] - plain['p50_us']:.0f} us at p50 "
              f"({door['p50_us'] / plain['p50_us']:.2f}x), {door['p99_us'] - plain['p99_us']:.0f} us at p99 "
              f"({door['p99_us'] / plain['p99_us']:.2f}x)")
        results[placement] = {**table, "p50_ratio": door["p50_us"] / plain["p50_us"],
                              "p99_ratio": door["p99_us"] / plain["p99_us"]}
    path = write_results("connections", {"rounds": rounds, "requests": args.requests, "results": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
