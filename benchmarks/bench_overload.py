"""Overload: open-loop load from half to twice the highest rate the server sustains within its SLO.

    python -m benchmarks.bench_overload [--quick] [--model churn_mlp] [--slo-ms 10]

The model runs with `latency_slo_ms` set; the server is pinned to core 0 and the generator (benchmarks/loadgen.py,
Poisson arrivals, latency from the intended send time) to core 1. First the highest rate with p99 within the SLO and
under 0.1% errors (the peak); then runs at 0.5x, 1x, 1.5x, 2x and 4x that rate, reporting goodput, the p99 of admitted
requests, the share refused (429/503 with Retry-After) and how soon refusals come back, lost requests (no answer),
the server's CPU and resident memory; then 0.5x again at once, to show recovery. The server CPU a served request and
a refusal cost are fitted (least squares, no intercept) to the CPU used by the runs from 1x up: a served request
costs less as load grows and batches fill, so the fit is an average over those loads.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, machine, pin_self, start_fastserve, write_results
from benchmarks.loadgen import max_rate, open_loop


def _requests(model: str) -> list[bytes]:
    rows = np.load(ROOT / "models" / model / "1" / "validation.npz")["inputs"].astype(np.float32)
    return [Client.build("POST", f"/v1/models/{model}/predict", orjson.dumps({"inputs": [row.tolist()]}))
            for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="churn_mlp")
    parser.add_argument("--slo-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    duration = 2.0 if args.quick else 5.0
    raws = _requests(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / args.model
        shutil.copytree(ROOT / "models" / args.model, target)
        config = (target / "fastserve.toml").read_text()
        (target / "fastserve.toml").write_text(config + f"\n[batching]\nlatency_slo_ms = {args.slo_ms:g}\n")
        server = start_fastserve(Path(tmp), 0)
        pin_self(1)
        try:
            print(f"{args.model}, latency_slo_ms = {args.slo_ms:g}: highest rate within the SLO")
            peak, _ = max_rate(server.port, raws, args.slo_ms, duration_s=duration / 2, refine=2 if args.quick else 3)
            runs = []
            rss_start = server.rss_bytes()
            for factor in (0.5, 1.0, 1.5, 2.0, 4.0, 0.5):
                before = server.cpu_seconds()
                s = open_loop(server.port, raws, max(50.0, peak * factor), duration, seed=len(runs)).summary()
                s.update(factor=factor, server_cpu_s=server.cpu_seconds() - before,
                         rss_mib=server.rss_bytes() / 2**20)
                s["lost"] = s["errors"] - s["shed"]
                runs.append(s)
                print(f"  {factor:.1f}x  rate {s['rate']:7.0f}/s  goodput {s['goodput']:7.0f}/s  admitted p99 "
                      f"{s['p99_ms']:7.2f} ms  refused {s['shed'] / max(1, s['sent']):6.1%} "
                      f"(p99 {s['refused_p99_ms']:.2f} ms)  lost {s['lost']}  "
                      f"server CPU {s['server_cpu_s'] / duration:.0%}  RSS {s['rss_mib']:.0f} MiB")
        finally:
            server.stop()
    full, over = runs[1], runs[3]
    loaded = runs[1:5]
    (served_cpu, refusal_cpu), *_ = np.linalg.lstsq(np.array([[r["ok"], r["shed"]] for r in loaded], dtype=float),
                                                    np.array([r["server_cpu_s"] for r in loaded]), rcond=None)
    summary = {
        "peak_rate": peak,
        "goodput_2x_over_peak": over["goodput"] / peak,
        "goodput_2x_over_1x": over["goodput"] / max(1.0, full["goodput"]),
        "admitted_p99_ms": {f"{r['factor']:g}x": r["p99_ms"] for r in runs[:5]},
        "refused_p99_2x_ms": over["refused_p99_ms"],
        "server_cpu_us_per_served_request": served_cpu * 1e6,
        "server_cpu_us_per_refusal": refusal_cpu * 1e6,
        "rss_growth_mib": runs[-1]["rss_mib"] - rss_start / 2**20,
        "recovery_p99_ms": runs[-1]["p99_ms"],
        "recovery_errors": runs[-1]["errors"],
    }
    print(f"goodput at 2x: {summary['goodput_2x_over_peak']:.2f}x the peak rate, {summary['goodput_2x_over_1x']:.2f}x "
          f"the goodput at 1x; admitted p99 at 2x {over['p99_ms']:.2f} ms (SLO {args.slo_ms:g}); refusals back within "
          f"{summary['refused_p99_2x_ms']:.2f} ms (p99); fitted server CPU: "
          f"{summary['server_cpu_us_per_refusal']:.0f} us a refusal, "
          f"{summary['server_cpu_us_per_served_request']:.0f} us a served request; back at 0.5x: p99 "
          f"{summary['recovery_p99_ms']:.2f} ms, {summary['recovery_errors']} errors")
    path = write_results("overload", {"machine": machine(), "model": args.model, "slo_ms": args.slo_ms,
                                      "runs": runs, "summary": summary})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
