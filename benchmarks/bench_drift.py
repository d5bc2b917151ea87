"""Drift monitoring's cost: the sketch update per value, the monitor per batch, and its share of request time.

    python -m benchmarks.bench_drift [--quick]

1. In-process: `BinnedSketch.update` on a 64-row x 64-column float32 batch with 32 bins per column, against numpy
   (`searchsorted` + `bincount` per column); the whole monitor (`observe` with the predictions and `observe_fields`
   with the 22 raw fields) on the bundled churn model's profile, for batches of 1 and 64 rows; what writing the raw
   field codes adds to the feature transform's pass; memory per column.
2. Detection: on replayed reference data (100 normal columns, a 50,000-row reference, 1,000-row windows) the
   alerts per day of one-minute windows, and the share of trials in which a 0.2 sigma mean shift in one column is
   flagged within 1,000 rows (and 0.1 sigma within 5,000), on that column alone; over several seeded references.
3. Through HTTP: the bundled churn model with drift on and off (`[drift] enabled = false`), one server each, in
   alternating rounds at the same open-loop rate of one-row JSON records: the server's CPU time per request
   (utime + stime from /proc) and p50/p99, and drift's share as the ratio of CPU per request.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._harness import ROOT, machine, pin_self, start_fastserve, time_cases, write_results
from benchmarks.loadgen import open_loop
from fastserve._core.sketch import BinnedSketch
from fastserve.config import DriftOptions, load_model_config
from fastserve.drift.monitor import DriftMonitor
from fastserve.drift.profile import build_profile, read_profile
from fastserve.features import load_transform


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

    folder = ROOT / "models" / "churn" / "1"
    transform = load_transform(folder, load_model_config(folder.parent).features, strict=False)
    assert transform is not None
    profile = read_profile(folder)
    monitor = DriftMonitor(profile, DriftOptions(window_rows=10**9, window_seconds=0), "churn v1", transform.fields)
    golden = np.load(folder / "validation.npz")
    records = json.loads((folder / "validation_records.json").read_text())
    observe, fill = {}, {}
    for rows in (1, 64):
        x = np.empty((rows, transform.width), dtype=np.float32)
        raw = np.empty((rows, len(transform.fields)))
        batch_records = records[:rows]
        outputs = {"label": golden["label"][:rows], "probabilities": golden["probabilities"][:rows]}

        def both(x=x, raw=raw, outputs=outputs) -> None:
            monitor.observe(x, outputs)
            monitor.observe_fields(raw)
        observe[rows] = _per_call_ns(both, repeats, seconds)
        fill[rows] = {"without": _per_call_ns(lambda r=batch_records, x=x: transform.fill_records(r, x),
                                              repeats, seconds),
                      "with": _per_call_ns(lambda r=batch_records, x=x, raw=raw: transform.fill_records(r, x, raw),
                                           repeats, seconds)}
    close_ns = _per_call_ns(monitor.close_window, 3, seconds)
    return {
        "sketch_ns_per_value_64x64": sketch_ns,
        "numpy_ns_per_value_64x64": numpy_ns,
        "numpy_over_sketch": numpy_ns / sketch_ns,
        "observe_us_1_row": observe[1] / 1e3,
        "observe_us_64_rows": observe[64] / 1e3,
        "observe_ns_per_value_64_rows": observe[64] / (64 * 24),
        "raw_codes_extra_us_1_record": (fill[1]["with"] - fill[1]["without"]) / 1e3,
        "raw_codes_extra_us_64_records": (fill[64]["with"] - fill[64]["without"]) / 1e3,
        "fill_records_us_64_records": fill[64]["without"] / 1e3,
        "close_window_us_churn": close_ns / 1e3,
        "bytes_per_column": sketch.nbytes / 64,
    }


def detection(seeds: int, windows: int, trials: int) -> dict:
    """False alarms and power of the default alert rule, per seeded reference (see the module's docstring)."""
    logging.getLogger("fastserve.drift").setLevel(logging.ERROR)  # status changes are logged; thousands here
    d = 100
    out: dict = {"columns": d, "reference_rows": 50_000, "window_rows": 1000, "windows_per_seed": windows,
                 "trials_per_seed": trials, "seeds": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        profile = build_profile(rng.normal(size=(50_000, d)), [f"f{j}" for j in range(d)], {})

        def close(monitor: DriftMonitor, x: np.ndarray) -> dict:
            monitor.inputs.window.update(np.ascontiguousarray(x, dtype=np.float32))
            return monitor.close_window()
        monitor = DriftMonitor(profile, DriftOptions(window_rows=1000), "replay")
        alerts = sum(close(monitor, rng.normal(size=(1000, d)))["status"] == "alert" for _ in range(windows))
        found = {}
        for shift, rows in ((0.2, 1000), (0.1, 5000)):
            hits = 0
            for _ in range(trials):
                x = rng.normal(size=(rows, d))
                x[:, 7] += shift
                result = close(DriftMonitor(profile, DriftOptions(window_rows=rows), "shift"), x)
                hits += [c["name"] for c in result["inputs"] if c["status"] == "alert"] == ["f7"]
            found[f"{shift}sigma_{rows}_rows"] = hits
        out["seeds"].append({"seed": seed, "false_alerts": alerts, **found})
    total_windows = seeds * windows
    out["false_alerts_per_day"] = sum(s["false_alerts"] for s in out["seeds"]) / total_windows * 1440
    for key in ("0.2sigma_1000_rows", "0.1sigma_5000_rows"):
        out[f"detected_{key}"] = sum(s[key] for s in out["seeds"]) / (seeds * trials)
    return out


def through_http(rate: float, seconds: float, rounds: int) -> dict:
    from benchmarks._harness import Client

    records = json.loads((ROOT / "models" / "churn" / "1" / "validation_records.json").read_text())
    raws = [Client.build("POST", "/v1/models/churn/predict", json.dumps({"records": [record]}).encode())
            for record in records]
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
    seeds, windows, trials = (1, 500, 50) if args.quick else (3, 5000, 200)
    local = in_process(repeats, seconds)
    print(f"sketch update, 64x64 float32, 32 bins: {local['sketch_ns_per_value_64x64']:.1f} ns/value "
          f"(numpy searchsorted+bincount: {local['numpy_ns_per_value_64x64']:.1f} ns, "
          f"{local['numpy_over_sketch']:.1f}x)")
    print(f"DriftMonitor.observe on churn (22 inputs + 2 prediction columns): {local['observe_us_1_row']:.2f} us "
          f"for 1 row, {local['observe_us_64_rows']:.2f} us for 64 rows "
          f"({local['observe_ns_per_value_64_rows']:.1f} ns/value); closing a window "
          f"{local['close_window_us_churn']:.0f} us; {local['bytes_per_column']:.0f} bytes per column")
    print(f"raw field codes in the transform's pass: +{local['raw_codes_extra_us_1_record']:.2f} us for 1 record, "
          f"+{local['raw_codes_extra_us_64_records']:.2f} us for 64 (of {local['fill_records_us_64_records']:.1f} us)")
    power = detection(seeds, windows, trials)
    print(f"false alerts: {power['false_alerts_per_day']:.2f} per day of one-minute windows "
          f"({seeds} references x {windows} windows); 0.2 sigma flagged within 1,000 rows in "
          f"{power['detected_0.2sigma_1000_rows']:.1%}, 0.1 sigma within 5,000 in "
          f"{power['detected_0.1sigma_5000_rows']:.1%} of {seeds * trials} trials")
    http = through_http(args.rate, run_s, rounds)
    for name in ("on", "off"):
        h = http[name]
        print(f"drift {name:>3}: {h['cpu_us_per_request']:.1f} us CPU per request, p50 {h['p50_ms']:.2f} ms, "
              f"p99 {h['p99_ms']:.2f} ms ({h['ok']}/{h['sent']} ok)")
    print(f"CPU per request, drift on / off: {http['cpu_ratio_on_over_off']:.3f}")
    path = write_results("drift", {"machine": machine(), "in_process": local, "detection": power, "http": http})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
