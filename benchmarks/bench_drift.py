"""Drift monitoring's cost: the sketch update per value, the monitor per batch, and its share of request time.

    python -m benchmarks.bench_drift [--quick]

1. In-process: `BinnedSketch.update` on a 64-row x 64-column float32 batch with 32 bins per column, against numpy
   (`searchsorted` + `bincount` per column); the whole monitor (`observe` with the predictions and `observe_fields`
   with the 22 raw fields) on the bundled churn model's profile, for batches of 1 and 64 rows; what writing the raw
   field codes adds to the feature transform's pass; memory per column.
2. Detection: on replayed reference data (100 normal columns, a 50,000-row reference, 1,000-row windows) the
   alerts per day of one-minute windows, and the rows of shifted traffic until the shifted column alone alerts
   (from the shift's start, window by window): 0.1, 0.2 and 0.5 sigma mean shifts in one column, and 0.05 of a
   categorical field's shares moved from one category to another; the share of 0.2 sigma shifts flagged within
   1,000 rows is the target's figure; over several seeded references.
3. Through HTTP: the bundled churn model with drift on and off (`[drift] enabled = false`), one server each, in
   alternating rounds at the same open-loop rate of one-row JSON records: the server's CPU time per request
   (utime + stime from /proc) and p50/p99, and drift's share as the ratio of CPU per request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np

from benchmarks._harness import (
    ROOT,
    alternate_configs,
    churn_record_requests,
    machine,
    rate_parser,
    time_cases,
    write_results,
)
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


CATEGORIES = np.array([0.3, 0.25, 0.2, 0.15, 0.1])  # the categorical field's shares; the shift moves 0.05 of them
SHIFTED = np.array([0.25, 0.25, 0.2, 0.15, 0.15])  # from the first category to the last
MAX_WINDOWS = 40  # a trial not flagged within this many windows counts as not flagged


def _close(monitor: DriftMonitor, x: np.ndarray) -> dict:
    monitor.inputs.window.update(np.ascontiguousarray(x, dtype=np.float32))
    return monitor.close_window().as_json()


def _rows_until_flagged(profile: dict, column: str, windows_of: Callable[[], np.ndarray]) -> int | None:
    """Rows of shifted traffic, in 1,000-row windows from the shift's start, until `column` alone alerts."""
    monitor = DriftMonitor(profile, DriftOptions(window_rows=1000), "shift")
    for w in range(MAX_WINDOWS):
        alerts = [c["name"] for c in _close(monitor, windows_of())["inputs"] if c["status"] == "alert"]
        if alerts:
            return (w + 1) * 1000 if alerts == [column] else None
    return None


def _delays(found: list[int | None]) -> dict:
    flagged = np.array([r for r in found if r is not None], dtype=float)
    out: dict = {"trials": len(found), "flagged": len(flagged),
                 "within_1000_rows": sum(1 for r in found if r is not None and r <= 1000) / len(found)}
    for q in (50, 90, 99):  # over all trials: an unflagged one counts as past the last window
        padded = np.array([r if r is not None else np.inf for r in found], dtype=float)
        value = float(np.percentile(padded, q))
        out[f"p{q}_rows"] = value if np.isfinite(value) else None
    out["mean_rows_of_flagged"] = float(flagged.mean()) if len(flagged) else None
    return out


def detection(seeds: int, windows: int, trials: int) -> dict:
    """False alarms and power of the default alert rule, per seeded reference (see the module's docstring), and
    the rows until a shift is flagged: 0.1, 0.2 and 0.5 sigma mean shifts in one of 100 normal columns, and a shift
    of 0.05 of a categorical field's shares (one of 99 normal columns and it)."""
    logging.getLogger("fastserve.drift").setLevel(logging.ERROR)  # status changes are logged; thousands here
    d = 100
    out: dict = {"columns": d, "reference_rows": 50_000, "window_rows": 1000, "windows_per_seed": windows,
                 "trials_per_seed": trials, "seeds": []}
    found: dict[str, list[int | None]] = {"0.1sigma": [], "0.2sigma": [], "0.5sigma": [], "categorical": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        profile = build_profile(rng.normal(size=(50_000, d)), [f"f{j}" for j in range(d)], {})
        mixed = rng.normal(size=(50_000, d))
        mixed[:, 0] = rng.choice(5, 50_000, p=CATEGORIES)
        mixed_profile = build_profile(mixed, [f"f{j}" for j in range(d)], {})
        monitor = DriftMonitor(profile, DriftOptions(window_rows=1000), "replay")
        alerts = sum(_close(monitor, rng.normal(size=(1000, d)))["status"] == "alert" for _ in range(windows))
        for shift in (0.1, 0.2, 0.5):
            def shifted(shift: float = shift, rng: np.random.Generator = rng) -> np.ndarray:
                x = rng.normal(size=(1000, d))
                x[:, 7] += shift
                return x
            found[f"{shift}sigma"] += [_rows_until_flagged(profile, "f7", shifted) for _ in range(trials)]

        def categorical(rng: np.random.Generator = rng) -> np.ndarray:
            x = rng.normal(size=(1000, d))
            x[:, 0] = rng.choice(5, 1000, p=SHIFTED)
            return x
        found["categorical"] += [_rows_until_flagged(mixed_profile, "f0", categorical) for _ in range(trials)]
        out["seeds"].append({"seed": seed, "false_alerts": alerts})
    out["false_alerts_per_day"] = sum(s["false_alerts"] for s in out["seeds"]) / (seeds * windows) * 1440
    out["delays"] = {name: _delays(rows) for name, rows in found.items()}
    out["detected_0.2sigma_1000_rows"] = out["delays"]["0.2sigma"]["within_1000_rows"]
    return out


def through_http(rate: float, seconds: float, rounds: int) -> dict:
    raws = churn_record_requests()
    out = alternate_configs("churn", {"on": "", "off": "[drift]\nenabled = false\n"}, raws, rate, seconds, rounds)
    out["cpu_ratio_on_over_off"] = out["on"]["cpu_us_per_request"] / out["off"]["cpu_us_per_request"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = rate_parser(__doc__).parse_args(argv)
    repeats, seconds, rounds, run_s = (3, 0.1, 2, 2.0) if args.quick else (7, 0.3, 5, 4.0)
    seeds, windows, trials = (1, 500, 50) if args.quick else (5, 5000, 200)
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
          f"{power['detected_0.2sigma_1000_rows']:.1%} of {seeds * trials} trials")
    for name, delay in power["delays"].items():
        def rows(v: float | None) -> str:
            return f"{v:,.0f}" if v is not None else f"> {MAX_WINDOWS * 1000:,}"
        print(f"  {name:>12}: rows until flagged p50 {rows(delay['p50_rows'])}, p90 {rows(delay['p90_rows'])}, "
              f"p99 {rows(delay['p99_rows'])}; flagged {delay['flagged']}/{delay['trials']} (within 1,000 rows: "
              f"{delay['within_1000_rows']:.1%})")
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
