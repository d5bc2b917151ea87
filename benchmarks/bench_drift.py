"""Drift monitoring's cost: the sketch update per value, the monitor per batch, and its share of request time.

    python -m benchmarks.bench_drift [--quick]

1. In-process: `BinnedSketch.update` on a 64-row x 64-column float32 batch with 32 bins per column, against numpy
   (`searchsorted` + `bincount` per column); the whole `DriftMonitor.observe` (inputs and predictions) on the bundled
   churn model's profile, for batches of 1 and 64 rows; memory per column.
2. Through HTTP: the bundled churn model with drift on and off (`[drift] enabled = false`), one server each, in
   alternating rounds at the same open-loop rate of one-row JSON requests: the server's CPU time per request
   (utime + stime from /proc) and p50/p99, and drift's share as the ratio of CPU per request.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._harness import ROOT, machine, pin_self, start_fastserve, time_cases, write_results
from benchmarks.loadgen import open_loop
from fastserve._core.sketch import BinnedSketch
from fastserve.drift.monitor import DriftMonitor, DriftOptions
from fastserve.drift.profile import read_profile


def _per_call_ns(fn: Callable[[], object], repeats: int, seconds: float) -> float:
    """Median over `repeats` of the mean time per call."""
    return float(np.median(time_cases({"call": lambda: fn}, repeats, seconds)["call"]))


def in_process(repeats: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50_000, 64))
    edges = [np.quantile(ref[:, j], np.linspace(0, 1, 33)[1:-1]) for j in range(64)]
    sketch = BinnedSketch(edges, ref.min(axis=0), ref.max(axis=0))
    batch = rng.normal(size=(64, 64)).astype(np.float32)
    counts = np.zeros((64, 32), dtype=np.int64)

    def numpy_update() -> None:
        for j in range(64):
            counts[j] += np.bincount(np.searchsorted(edges[j], batch[:, j], side="right"), minlength=32)

    sketch_ns = _per_call_ns(lambda: sketch.update(batch), repeats, seconds) / batch.size
    numpy_ns = _per_call_ns(numpy_update, repeats, seconds) / batch.size

    profile = read_profile(ROOT / "models" / "churn" / "1")
    monitor = DriftMonitor(profile, DriftOptions(window_rows=10**9, window_seconds=0), "churn v1")
    golden = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")
    observe = {}
    for rows in (1, 64):
        x = np.ascontiguousarray(golden["inputs"][:rows])
        outputs = {"label": golden["label"][:rows], "probabilities": golden["probabilities"][:rows]}
        observe[rows] = _per_call_ns(lambda x=x, outputs=outputs: monitor.observe(x, outputs), repeats, seconds)
    close_ns = _per_call_ns(monitor.close_window, 3, seconds)
    return {
        "sketch_ns_per_value_64x64": sketch_ns,
        "numpy_ns_per_value_64x64": numpy_ns,
        "numpy_over_sketch": numpy_ns / sketch_ns,
        "observe_us_1_row": observe[1] / 1e3,
        "observe_us_64_rows": observe[64] / 1e3,
        "observe_ns_per_value_64_rows": observe[64] / (64 * 24),
        "close_window_us_churn": close_ns / 1e3,
        "bytes_per_column": sketch.nbytes / 64,
    }


def through_http(rate: float, seconds: float, rounds: int) -> dict:
    golden = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")
    from benchmarks._harness import Client

    raws = [Client.build("POST", "/v1/models/churn/predict", json.dumps({"inputs": [row.tolist()]}).encode())
            for row in golden["inputs"]]
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for name, config in (("on", ""), ("off", "[drift]\nenabled = false\n")):
            folder = Path(tmp) / name
            shutil.copytree(ROOT / "models" / "churn", folder / "churn")
            (folder / "churn" / "fastserve.toml").write_text(config)
            servers[name] = start_fastserve(folder, 0)
        pin_self(1)
        cpu = {"on": [], "off": []}
        runs: dict[str, list[dict]] = {"on": [], "off": []}
        try:
            for _ in range(rounds):
                for name, server in servers.items():
                    before = server.cpu_seconds()
                    run = open_loop(server.port, raws, rate, seconds)
                    summary = run.summary()
                    cpu[name].append((server.cpu_seconds() - before) / max(1, summary["ok"]) * 1e6)
                    runs[name].append(summary)
        finally:
            for server in servers.values():
                server.stop()
    out: dict = {"rate": rate, "seconds_per_round": seconds, "rounds": rounds}
    for name in ("on", "off"):
        out[name] = {"cpu_us_per_request": float(np.median(cpu[name])),
                     "p50_ms": float(np.median([r["p50_ms"] for r in runs[name]])),
                     "p99_ms": float(np.median([r["p99_ms"] for r in runs[name]])),
                     "ok": int(sum(r["ok"] for r in runs[name])), "sent": int(sum(r["sent"] for r in runs[name]))}
    out["cpu_ratio_on_over_off"] = out["on"]["cpu_us_per_request"] / out["off"]["cpu_us_per_request"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=1500.0, help="one-row requests per second (default 1500)")
    args = parser.parse_args(argv)
    repeats, seconds, rounds, run_s = (3, 0.1, 2, 2.0) if args.quick else (7, 0.3, 5, 4.0)
    local = in_process(repeats, seconds)
    print(f"sketch update, 64x64 float32, 32 bins: {local['sketch_ns_per_value_64x64']:.1f} ns/value "
          f"(numpy searchsorted+bincount: {local['numpy_ns_per_value_64x64']:.1f} ns, "
          f"{local['numpy_over_sketch']:.1f}x)")
    print(f"DriftMonitor.observe on churn (22 inputs + 2 prediction columns): {local['observe_us_1_row']:.2f} us "
          f"for 1 row, {local['observe_us_64_rows']:.2f} us for 64 rows "
          f"({local['observe_ns_per_value_64_rows']:.1f} ns/value); closing a window "
          f"{local['close_window_us_churn']:.0f} us; {local['bytes_per_column']:.0f} bytes per column")
    http = through_http(args.rate, run_s, rounds)
    for name in ("on", "off"):
        h = http[name]
        print(f"drift {name:>3}: {h['cpu_us_per_request']:.1f} us CPU per request, p50 {h['p50_ms']:.2f} ms, "
              f"p99 {h['p99_ms']:.2f} ms ({h['ok']}/{h['sent']} ok)")
    print(f"CPU per request, drift on / off: {http['cpu_ratio_on_over_off']:.3f}")
    path = write_results("drift", {"machine": machine(), "in_process": local, "http": http})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
