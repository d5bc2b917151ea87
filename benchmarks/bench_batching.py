"""Dynamic batching: throughput at a latency SLO with batching on and off, SLO mode under overload, and the
batcher's own overhead in-process.

One-row JSON requests from an open-loop Poisson generator (benchmarks/loadgen.py) on core 1, the server on core 0.
For the bundled light classifier (`churn`) and the compute-heavier MLP (`churn_mlp`), the highest rate whose p99
stays within 10 ms and within 50 ms with under 0.1% errors, with batching on (the bundled config) and off
(`max_batch_size = 1`: one run per request). The same search against a bare ASGI echo app shows the generator's
headroom. Then `churn_mlp` with `latency_slo_ms = 10` from half to twice its sustainable rate: p99 of the admitted
requests and the share refused.

    python -m benchmarks.bench_batching [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, pin_self, start_echo, start_fastserve, write_results
from benchmarks.loadgen import max_rate, open_loop

MODELS = ROOT / "models"


def _repository(dest: Path, model: str, batching: str) -> Path:
    target = dest / model
    shutil.copytree(MODELS / model, target)
    config = (target / "fastserve.toml").read_text()
    (target / "fastserve.toml").write_text(config + "\n[batching]\n" + batching)
    return dest


def _requests(model: str, path: str) -> list[bytes]:
    rows = np.load(MODELS / model / "1" / "validation.npz")["inputs"].astype(np.float32)
    return [Client.build("POST", path, orjson.dumps({"inputs": [row.tolist()]})) for row in rows]


def batcher_overhead(model: str, inline_us: int, batch: int = 32, rounds: int = 300) -> dict[str, float]:
    """Per request: `Batcher.submit` of `batch` concurrent one-row requests vs `session.run` on the same batches.
    Batches estimated under `inline_us` run on the loop thread (the server's `inline_run_max_us`), others on a
    worker thread."""
    from fastserve.batching import Batcher
    from fastserve.config import BatchingOptions, load_model_config
    from fastserve.runtime import ModelSession

    config = load_model_config(MODELS / model)
    session = ModelSession(MODELS / model / "1" / "model.onnx", config.runtime, model)
    rows = np.load(MODELS / model / "1" / "validation.npz")["inputs"][:batch].astype(np.float32)
    singles = [rows[i:i + 1] for i in range(batch)]
    sizes: list[int] = []

    class Recording:
        """The real session, noting the batch sizes the batcher formed so they can be replayed directly."""

        n_features, input_dtype = session.n_features, session.input_dtype

        @staticmethod
        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            sizes.append(len(x))
            return session.run(x)

    batcher = Batcher(Recording(), BatchingOptions(max_batch_size=batch, max_delay_us=0), model,  # type: ignore[arg-type]
                      warm_up=session.warm_up((1, batch)), inline_max_s=inline_us * 1e-6)

    async def through_batcher() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            # All `batch` requests are queued before the first batch forms: the batcher forms full batches.
            await asyncio.gather(*(batcher.submit(x) for x in singles))
        return time.perf_counter() - started

    import uvloop

    async def asyncio_floor() -> float:
        """What any asyncio server pays to wait on a result: one task and one future per request, resolved together
        from one callback. Not the batcher's cost, so it is subtracted."""
        loop = asyncio.get_running_loop()

        async def wait(fut: asyncio.Future[int]) -> int:
            return await fut

        started = time.perf_counter()
        for _ in range(rounds):
            futs = [loop.create_future() for _ in singles]
            loop.call_soon(lambda fs=futs: [f.set_result(1) for f in fs])
            await asyncio.gather(*(wait(f) for f in futs))
        return time.perf_counter() - started

    uvloop.run(through_batcher())  # warm
    sizes.clear()
    t_batcher = uvloop.run(through_batcher())
    t_floor = uvloop.run(asyncio_floor())
    batcher.close()
    data = np.concatenate(singles)
    started = time.perf_counter()
    for size in sizes:  # the same batches, run directly
        session.run(data[:size])
    t_direct = time.perf_counter() - started
    n = rounds * batch
    return {"requests": n, "burst": batch, "inline_run_max_us": inline_us, "mean_batch_rows": float(np.mean(sizes)),
            "batcher_us_per_request": t_batcher / n * 1e6, "session_run_us_per_request": t_direct / n * 1e6,
            "asyncio_floor_us_per_request": t_floor / n * 1e6,
            "overhead_us_per_request": (t_batcher - t_direct - t_floor) / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter trials, fewer refinements")
    parser.add_argument("--models", default="churn,churn_mlp")
    parser.add_argument("--overhead-only", action="store_true", help="only the in-process batcher overhead")
    args = parser.parse_args(argv)
    if args.overhead_only:
        _print_overhead(_overhead(args.models.split(",")))
        return 0
    duration, refine = (1.0, 2) if args.quick else (2.0, 3)
    pin_self(1)
    results: dict[str, object] = {}

    echo = start_echo(core=0)
    try:
        print("echo (generator headroom), SLO 10 ms:")
        rate, trials = max_rate(echo.port, _requests("churn", "/v1/models/churn/predict"), 10.0, start=1000,
                                duration_s=duration, refine=refine)
        results["echo"] = {"max_rate_p99_10ms": rate, "trials": trials}
    finally:
        echo.stop()

    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            raws = _requests(model, f"/v1/models/{model}/predict")
            for mode, batching in (("on", "max_batch_size = 64\nmax_delay_us = 1000\n"),
                                   ("off", "max_batch_size = 1\n")):
                repo = _repository(Path(tmp) / f"{model}-{mode}", model, batching)
                server = start_fastserve(repo, 0)
                try:
                    entry: dict[str, object] = {}
                    for slo in (10.0, 50.0):
                        print(f"{model}, batching {mode}, p99 <= {slo:g} ms:")
                        rate, trials = max_rate(server.port, raws, slo, duration_s=duration, refine=refine)
                        entry[f"max_rate_p99_{slo:g}ms"] = rate
                        entry[f"trials_{slo:g}ms"] = trials
                    results[f"{model}_batching_{mode}"] = entry
                    table.append((model, mode, entry["max_rate_p99_10ms"], entry["max_rate_p99_50ms"]))
                finally:
                    server.stop()

        slo_model = "churn_mlp" if "churn_mlp" in args.models else args.models.split(",")[0]
        sustainable = float(results[f"{slo_model}_batching_on"]["max_rate_p99_10ms"])  # type: ignore[index]
        repo = _repository(Path(tmp) / "slo", slo_model, "max_batch_size = 64\nmax_delay_us = 1000\n"
                                                            "latency_slo_ms = 10\n")
        server = start_fastserve(repo, 0)
        sweep = []
        try:
            raws = _requests(slo_model, f"/v1/models/{slo_model}/predict")
            print(f"{slo_model} with latency_slo_ms = 10, around its sustainable {sustainable:.0f}/s:")
            for factor in (0.5, 1.0, 1.5, 2.0):
                s = open_loop(server.port, raws, max(50.0, sustainable * factor), duration * 1.5).summary()
                s["factor"] = factor
                sweep.append(s)
                print(f"  {factor:.1f}x  rate {s['rate']:8.0f}/s  goodput {s['goodput']:8.0f}/s  admitted p99 "
                      f"{s['p99_ms']:6.2f} ms  refused {s['shed'] / max(1, s['sent']):.1%}  lost "
                      f"{s['errors'] - s['shed']}")
        finally:
            server.stop()
        results["slo_mode"] = {"model": slo_model, "slo_ms": 10, "sweep": sweep}

    overhead = results["batcher_overhead"] = _overhead(args.models.split(","))

    print("\n| model | batching | max rate, p99 <= 10 ms | max rate, p99 <= 50 ms |")
    print("|---|---|---:|---:|")
    for model, mode, r10, r50 in table:
        print(f"| {model} | {mode} | {r10:,.0f}/s | {r50:,.0f}/s |")
    for model in args.models.split(","):
        on = results[f"{model}_batching_on"]
        off = results[f"{model}_batching_off"]
        for slo in ("10", "50"):
            a, b = on[f"max_rate_p99_{slo}ms"], off[f"max_rate_p99_{slo}ms"]  # type: ignore[index]
            print(f"{model}: batching on/off at p99 <= {slo} ms: {a / b if b else float('inf'):.2f}x")
    echo_rate = results["echo"]["max_rate_p99_10ms"]  # type: ignore[index]
    print(f"echo app at p99 <= 10 ms: {echo_rate:,.0f}/s (the generator's headroom)")
    _print_overhead(overhead)
    out = write_results("batching", results)
    print(f"wrote {out}")
    return 0


def _overhead(models: list[str]) -> dict[str, dict[str, float]]:
    """Each model with the server's default inline threshold and with every batch on a worker thread."""
    from fastserve.config import RuntimeOptions

    default = RuntimeOptions().inline_run_max_us
    return {f"{m} ({how})": batcher_overhead(m, us) for m in models
            for how, us in ((f"inline_run_max_us = {default}", default), ("inline_run_max_us = 0", 0))}


def _print_overhead(overhead: dict[str, dict[str, float]]) -> None:
    for case, o in overhead.items():
        print(f"{case}: batcher overhead {o['overhead_us_per_request']:.2f} us/request "
              f"({o['batcher_us_per_request']:.2f} via the batcher, {o['session_run_us_per_request']:.2f} of it "
              f"session.run on the same batches, {o['asyncio_floor_us_per_request']:.2f} the asyncio floor; "
              f"bursts of {o['burst']} requests, mean batch {o['mean_batch_rows']:.1f} rows)")


if __name__ == "__main__":
    raise SystemExit(main())
