"""One request at a time: fastserve's latency next to what it is made of.

For one-row requests on the bundled churn model, measures p50/p99 of
  - fastserve, JSON rows, msgpack rows and msgpack raw tensor;
  - a bare ASGI echo app on the same uvicorn + uvloop + httptools stack, answering the same bodies (the transport);
  - in-process `session.run` on the same row, with the server's session options (the model);
and reports what fastserve adds over echo + session.run, plus the server's resident memory with the bundled models.
The server runs pinned to core 0, this client on core 1. Loopback only.

    python -m benchmarks.bench_latency [--requests 5000] [--model churn]
"""

from __future__ import annotations

import argparse
import time

import msgpack
import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, pin_self, start_echo, start_fastserve, summarize, write_results

MODELS = ROOT / "models"


def _time_requests(client: Client, raw: bytes, n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        status, body = client.send_raw(raw)
        out.append(clock() - t0)
        if status != 200:
            raise RuntimeError(f"request failed with {status}: {body[:300]!r}")
    return out


def _session_run(model: str, row: np.ndarray, n: int, gap_s: float = 0.0) -> list[int]:
    """session.run back to back, or with `gap_s` of sleep before each call (as a server one request at a time
    sees it: caches and the core's state are colder after each idle gap)."""
    from fastserve.config import load_model_config
    from fastserve.runtime import ModelSession

    config = load_model_config(MODELS / model)
    session = ModelSession(MODELS / model / "1" / "model.onnx", config.runtime, model)
    session.warm_up()
    run = session.run
    for _ in range(1000):
        run(row)
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        t0 = clock()
        run(row)
        out.append(clock() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds the requests are split into")
    parser.add_argument("--model", default="churn")
    args = parser.parse_args(argv)

    pin_self(1)
    row = np.load(MODELS / args.model / "1" / "validation.npz")["inputs"][:1].astype(np.float32)
    path = f"/v1/models/{args.model}/predict"
    bodies = {
        "json": (orjson.dumps({"inputs": row.tolist()}), "application/json"),
        "msgpack": (msgpack.packb({"inputs": row.tolist()}), "application/msgpack"),
        "msgpack_tensor": (msgpack.packb({"inputs": {"dtype": "float32", "shape": list(row.shape),
                                                     "data": row.astype("<f4").tobytes()}}), "application/msgpack"),
    }
    results: dict[str, dict[str, float]] = {}
    model_run = summarize(_session_run(args.model, row, args.requests * 4))
    results["session_run"] = model_run
    results["session_run_paced_200us"] = summarize(_session_run(args.model, row, args.requests, gap_s=200e-6))

    # Both servers on core 0, measured in alternating rounds so that drift in the machine hits them alike.
    echo = start_echo(core=0)
    server = start_fastserve(MODELS, 0)
    samples: dict[str, list[int]] = {}
    try:
        with Client(echo.port) as ce, Client(server.port) as cf:
            cases = [(f"{kind}_{name}", c, Client.build("POST", path, body, ctype))
                     for kind, c in (("echo", ce), ("fastserve", cf)) for name, (body, ctype) in bodies.items()]
            for _, c, raw in cases:
                _time_requests(c, raw, args.warmup)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for case, c, raw in cases:
                    samples.setdefault(case, []).extend(_time_requests(c, raw, per_round))
        rss = server.rss_bytes()
    finally:
        echo.stop()
        server.stop()
    results.update({case: summarize(v) for case, v in samples.items()})

    print(f"one-row requests to {args.model}, {args.requests} each, server on core 0, client on core 1")
    print(f"{'case':<26}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}")
    for name, r in results.items():
        print(f"{name:<26}{r['p50_us']:>10.1f}{r['p90_us']:>10.1f}{r['p99_us']:>10.1f}")
    added = {}
    for name in bodies:
        added[name] = results[f"fastserve_{name}"]["p50_us"] - results[f"echo_{name}"]["p50_us"] - model_run["p50_us"]
        print(f"fastserve adds over echo + session.run ({name}): {added[name]:.1f} us at p50 "
              f"({added[name] + model_run['p50_us'] - results['session_run_paced_200us']['p50_us']:.1f} us over "
              "echo + paced session.run)")
    print(f"server resident memory with the bundled models loaded: {rss / 2**20:.1f} MiB")
    out = write_results("latency", {"model": args.model, "requests": args.requests, "results": results,
                                    "added_over_echo_plus_run_p50_us": added, "server_rss_bytes": rss})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
