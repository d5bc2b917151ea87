"""Good traffic's latency beside hostile traffic.

    python -m benchmarks.bench_hostile [--quick] [--rate 1000] [--slow 1000] [--no-door-process]

The bundled `churn` model, one-row JSON requests from the open-loop generator (benchmarks/loadgen.py) at a fixed
rate, the server on core 0 and the generator on core 1. In alternating rounds: good traffic alone; with 10% of the
requests replaced by bad ones (malformed or truncated JSON and msgpack, deep nesting, ragged rows, strings and nulls
where numbers go, too many rows, invalid UTF-8, huge declared lengths, ext types, an unknown model), each of which
must get a 4xx; the same without the one bad request heavier than any good one (5,000 rows: as much to read and
parse as the largest valid body); and with `--slow` connections sending their headers one byte a second (slowloris,
from a process of their own), which the header deadline closes every 10 s and which reconnect; and, as a control,
the same slow clients against a socket that never accepts (their own cost on the server's core, without the server's
work on them). Reported: the good requests' p50/p99 in each condition and the ratio to good traffic alone, the slow
condition's p99 over the control's, the bad requests' status codes, and how many slow connections the server closed.
"""

from __future__ import annotations

import argparse
import collections
import resource
import socket

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, machine, pin_self, start_fastserve, write_results
from benchmarks._hostile import SlowClients, bad_requests
from benchmarks.loadgen import Run, open_loop

CONTROL = "slow clients, control: a socket that never accepts"


def _good_summary(run: Run, good: np.ndarray) -> dict[str, float]:
    mask = good[np.arange(run.sent) % len(good)]
    ok = mask & (run.statuses == 200)
    lat = run.latencies_us[ok]
    return {"good_sent": int(mask.sum()), "good_ok": int(ok.sum()),
            "p50_ms": float(np.percentile(lat, 50) / 1e3), "p99_ms": float(np.percentile(lat, 99) / 1e3),
            "send_lag_p99_us": float(np.percentile(run.send_lag_us, 99))}


def _mix(good: list[bytes], bad: list[bytes]) -> tuple[list[bytes], np.ndarray]:
    """Every tenth request a bad one, every kind in turn; and which are good."""
    mixed = [bad[(i // 10) % len(bad)] if i % 10 == 9 else raw for i, raw in enumerate(good * len(bad))]
    return mixed, np.array([i % 10 != 9 for i in range(len(mixed))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--slow", type=int, default=1000, help="slow connections (default 1000)")
    parser.add_argument("--no-door-process", action="store_true",
                        help="the server accepts connections itself (fastserve serve --no-door-process)")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rounds, seconds = (1, 3.0) if args.quick else (5, 6.0)
    rows = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"].astype(np.float32)
    good_raws = [Client.build("POST", "/v1/models/churn/predict", orjson.dumps({"inputs": [r.tolist()]}))
                 for r in rows]
    mixes = {name: _mix(good_raws, bad_requests("churn", rows.shape[1], heavy))
             for name, heavy in (("10% bad requests", True), ("10% bad, none heavier than a good one", False))}
    all_good = np.ones(len(good_raws), dtype=bool)
    server = start_fastserve(ROOT / "models", 0, *(["--no-door-process"] if args.no_door_process else []))
    pin_self(1)
    results: dict[str, list[dict]] = collections.defaultdict(list)
    bad_codes: collections.Counter[int] = collections.Counter()
    closed = 0
    try:
        for r in range(rounds):
            run = open_loop(server.port, good_raws, args.rate, seconds, seed=r)
            results["alone"].append(_good_summary(run, all_good))
            for name, (mixed, is_good) in mixes.items():
                run = open_loop(server.port, mixed, args.rate, seconds, seed=r)
                results[name].append(_good_summary(run, is_good))
                mask = ~is_good[np.arange(run.sent) % len(mixed)]
                bad_codes.update(run.statuses[mask].tolist())
            with SlowClients(server.port, args.slow, core=0) as slow:  # 12 s: the header deadline (10 s) closes them
                run = open_loop(server.port, good_raws, args.rate, max(seconds, 12.0), seed=r)
            closed += slow.closed_by_server
            results[f"{args.slow} slow connections"].append(_good_summary(run, all_good))
            # The slow clients connect in the first second and, closed at their deadline, reconnect after the
            # tenth: between the two, what they cost is their bytes and the sweep, not a thousand accepts.
            steady = (run.intended_s > 1.5) & (run.intended_s < 9.5)
            results[f"{args.slow} slow connections, between connection storms"].append(
                _good_summary(run, steady))
            # Control: the same clients against a socket that never accepts. Their process shares the server's core
            # and the kernel handles their packets there; only the server's work on them is missing.
            with socket.create_server(("127.0.0.1", 0), backlog=2 * args.slow) as sink, \
                    SlowClients(sink.getsockname()[1], args.slow, core=0):
                run = open_loop(server.port, good_raws, args.rate, max(seconds, 12.0), seed=r)
            results[CONTROL].append(_good_summary(run, all_good))
    finally:
        server.stop()
    base = float(np.median([s["p99_ms"] for s in results["alone"]]))
    table = {}
    for name, runs in results.items():
        p99 = float(np.median([s["p99_ms"] for s in runs]))
        table[name] = {"p50_ms": float(np.median([s["p50_ms"] for s in runs])), "p99_ms": p99,
                       "p99_over_alone": p99 / base, "good_lost": int(sum(s["good_sent"] - s["good_ok"] for s in runs)),
                       "rounds": runs}
        print(f"{name:>24}: good p50 {table[name]['p50_ms']:.2f} ms, p99 {p99:.2f} ms ({p99 / base:.2f}x alone), "
              f"good requests not answered 200: {table[name]['good_lost']}, generator send lag p99 "
              f"{np.median([s['send_lag_p99_us'] for s in runs]):.0f} us")
    server_share = table[f"{args.slow} slow connections"]["p99_ms"] / table[CONTROL]["p99_ms"]
    print(f"good p99 with the slow connections over the control: {server_share:.2f}x (the server's share)")
    print(f"bad requests' answers: {dict(sorted(bad_codes.items()))}; slow connections closed by the server: {closed}")
    path = write_results("hostile", {"machine": machine(), "rate": args.rate, "seconds": seconds, "rounds": rounds,
                                     "conditions": table, "slow_over_control": server_share,
                                     "bad_statuses": dict(bad_codes), "slow_closed": closed,
                                     "door_process": not args.no_door_process})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
