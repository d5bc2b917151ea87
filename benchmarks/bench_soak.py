"""Soak: mixed good and hostile traffic for a long time; resident memory and errors.

    python -m benchmarks.bench_soak [--minutes 3] [--rate 800] [--slow 200]

The bundled models, with one-row JSON requests to `churn` and `churn_mlp` and records to `churn`, 10% of them bad
ones (see benchmarks/_hostile.py), at a fixed open-loop rate, plus `--slow` slowloris connections the whole time.
The run is cut in 20-second slices; after each, the server's resident memory is sampled. Reported: memory growth
from the end of the warm-up (the first third of the run) to the end (target under 5%), good requests not answered
200, bad requests not answered 4xx, and the good p99 per slice. For hours: `--minutes 240`.
"""

from __future__ import annotations

import argparse
import json
import resource

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, machine, pin_self, start_fastserve, write_results
from benchmarks._hostile import SlowClients, bad_requests
from benchmarks.loadgen import open_loop

SLICE_S = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=800.0)
    parser.add_argument("--slow", type=int, default=200)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"].astype(np.float32)
    records = json.loads((ROOT / "models" / "churn" / "1" / "validation_records.json").read_text())
    good = []
    for i, row in enumerate(rows):
        good.append(Client.build("POST", "/v1/models/churn/predict", orjson.dumps({"inputs": [row.tolist()]})))
        good.append(Client.build("POST", "/v1/models/churn_mlp/predict", orjson.dumps({"inputs": [row.tolist()]})))
        good.append(Client.build("POST", "/v1/models/churn/predict", orjson.dumps({"records": [records[i]]})))
    bad = bad_requests("churn", rows.shape[1])
    mixed, is_good = [], []
    for i, raw in enumerate(good * len(bad)):
        bad_turn = i % 10 == 9
        mixed.append(bad[(i // 10) % len(bad)] if bad_turn else raw)
        is_good.append(not bad_turn)
    good_mask = np.array(is_good)
    slices = max(3, int(args.minutes * 60 / SLICE_S))
    server = start_fastserve(ROOT / "models", 0)
    pin_self(1)
    samples = []
    try:
        with SlowClients(server.port, args.slow, core=0) as slow:
            for k in range(slices):
                run = open_loop(server.port, mixed, args.rate, SLICE_S, max_requests=10**7, seed=k)
                mask = good_mask[np.arange(run.sent) % len(mixed)]
                ok = mask & (run.statuses == 200)
                bad_ok = ~mask & (run.statuses >= 400) & (run.statuses < 500)
                samples.append({"slice": k, "rss_mib": server.rss_bytes() / 2**20,
                                "good_sent": int(mask.sum()), "good_not_200": int((mask & ~ok).sum()),
                                "bad_sent": int((~mask).sum()), "bad_not_4xx": int((~mask & ~bad_ok).sum()),
                                "good_p99_ms": float(np.percentile(run.latencies_us[ok], 99) / 1e3)})
                s = samples[-1]
                print(f"  {(k + 1) * SLICE_S / 60:5.1f} min  RSS {s['rss_mib']:6.1f} MiB  good p99 "
                      f"{s['good_p99_ms']:6.2f} ms  good not 200: {s['good_not_200']}  bad not 4xx: {s['bad_not_4xx']}")
        closed = slow.closed_by_server
    finally:
        server.stop()
    warm = samples[len(samples) // 3 - 1]["rss_mib"]
    end = samples[-1]["rss_mib"]
    summary = {"minutes": slices * SLICE_S / 60, "rss_after_warmup_mib": warm, "rss_end_mib": end,
               "rss_growth_after_warmup": end / warm - 1,
               "good_not_200": sum(s["good_not_200"] for s in samples),
               "bad_not_4xx": sum(s["bad_not_4xx"] for s in samples),
               "requests": sum(s["good_sent"] + s["bad_sent"] for s in samples), "slow_closed": closed}
    print(f"RSS {warm:.1f} MiB after warm-up -> {end:.1f} MiB at the end ({summary['rss_growth_after_warmup']:+.1%}); "
          f"{summary['requests']} requests, good not 200: {summary['good_not_200']}, bad not 4xx: "
          f"{summary['bad_not_4xx']}; slow connections closed by the server: {closed}")
    path = write_results("soak", {"machine": machine(), "rate": args.rate, "slow": args.slow, "slices": samples,
                                  "summary": summary})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
