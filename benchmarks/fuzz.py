"""Long fuzzing runs of the targets in tests/fuzz/targets.py: millions of inputs, outside CI.

    python -m benchmarks.fuzz                          # every target, 60 s each
    python -m benchmarks.fuzz --seconds 600 decode inputs
    python -m benchmarks.fuzz --runs 1000000 rows      # a number of inputs instead of a time
    python -m benchmarks.fuzz rows --replay CRASH_FILE # one input again, with its traceback

With atheris installed (`pip install atheris`), each target runs under libFuzzer, coverage-guided over fastserve's
Python code, in a process of its own (libFuzzer exits when done); the bytes go straight to the decoder for `decode`,
and through hypothesis (`fuzz_one_input`) into structured inputs for the others. Without atheris, a seeded random
generator feeds the same `fuzz_one_input`. Prints the inputs tried per target and every crash (a crashing input is
written under --artifacts), and writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._harness import write_results

TARGETS = ("decode", "body_bytes", "inputs", "churn_transform", "rows", "first_non_finite", "transform", "sketch",
           "batch_queue", "http")
HTTP_CHECK_EVERY = 1000  # inputs between two checks that the server still answers a good request


def _given(name: str) -> Callable[[bytes], Any]:
    """The target as a function of one fuzzer input."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
    from tests.fuzz import targets as t

    if name == "decode":
        return t.check_decode
    if name == "body_bytes":
        return t.check_predict_body_bytes
    fast = settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    if name == "inputs":
        test = given(t.predict_bodies(), st.booleans(), st.booleans(), st.booleans(),
                     st.sampled_from([1, 3, 4096]))(t.check_predict_inputs)
    elif name == "churn_transform":
        test = given(st.booleans(), t.records(), t.columns())(t.check_churn_transform)
    elif name == "rows":
        test = given(st.integers(0, 4).flatmap(lambda w: st.tuples(t.rows(w), st.just(w))), st.booleans(),
                     st.booleans())(lambda rw, allow, f32: t.check_fill_rows(rw[0], rw[1], allow, f32))
    elif name == "first_non_finite":
        import numpy as np

        test = given(hnp.arrays(st.sampled_from([np.float32, np.float64]),
                                hnp.array_shapes(min_dims=2, max_dims=2, min_side=0)))(t.check_first_non_finite)
    elif name == "transform":
        test = given(st.lists(st.tuples(t.feature_kinds, t.feature_fields, t.feature_kwargs), max_size=4),
                     st.booleans(), st.lists(st.dictionaries(t.feature_fields | t.texts, t.core_values, max_size=4)
                                             | t.scalars, max_size=3), st.booleans())(t.check_transform)
    elif name == "sketch":
        test = given(t.sketch_edges, t.sketch_batches, st.sampled_from(["self", None, 3]),
                     st.integers(-3, 5))(t.check_sketch)
    elif name == "batch_queue":
        test = given(st.integers(-1, 8), st.integers(-1, 12), st.integers(-1, 10**7), st.integers(0, 3),
                     t.queue_ops)(t.check_batch_queue)
    elif name == "http":
        import httpx

        client = httpx.Client(base_url=os.environ["FASTSERVE_FUZZ_URL"], timeout=30.0)
        seen = [0]

        def http(path: str, body: bytes, content_type: str | None, headers: dict[str, str], chunked: bool) -> None:
            t.check_predict_http(client, path, body, content_type, headers, chunked)
            seen[0] += 1
            if seen[0] % HTTP_CHECK_EVERY == 0:
                t.check_still_serving(client, "/v1/models/churn/predict")

        test = given(t.predict_paths, t.encoded_bodies(), t.content_types, t.extra_headers, st.booleans())(http)
    else:
        raise SystemExit(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    fuzz_one_input: Callable[[bytes], Any] = fast(test).hypothesis.fuzz_one_input
    return fuzz_one_input


def run_one(name: str, seconds: float, runs: int, artifacts: Path, seed: int) -> None:
    """Fuzz one target in this process: under libFuzzer (which exits the process when done), else by random bytes."""
    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is not None:
        with atheris.instrument_imports(include=["fastserve", "tests.fuzz"]):
            target = _given(name)
        args = [sys.argv[0], f"-max_total_time={int(seconds)}", "-timeout=20", "-print_final_stats=1",
                f"-artifact_prefix={artifacts}/{name}-", f"-seed={seed}", "-rss_limit_mb=4096"]
        if runs:
            args.append(f"-runs={runs}")
        atheris.Setup(args, target)
        atheris.Fuzz()
        return
    target = _given(name)
    rng = random.Random(seed)
    deadline, tried = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and (not runs or tried < runs):
        data = rng.randbytes(rng.choice((8, 64, 512, 4096)))
        try:
            target(data)
        except Exception:
            path = artifacts / f"{name}-crash-{tried}"
            path.write_bytes(data)
            print(f"CRASH in {name}: input written to {path}", flush=True)
            raise
        tried += 1
    print(f"Done {tried} runs in {int(seconds)} second(s)", flush=True)


def _fuzz(name: str, args: argparse.Namespace, url: str | None) -> dict[str, Any]:
    env = dict(os.environ, **({"FASTSERVE_FUZZ_URL": url} if url else {}))
    cmd = [sys.executable, "-m", "benchmarks.fuzz", "--one", name, "--seconds", str(args.seconds),
           "--runs", str(args.runs), "--artifacts", str(args.artifacts), "--seed", str(args.seed)]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    done = re.findall(r"Done (\d+) runs", out) or re.findall(r"stat::number_of_executed_units: (\d+)", out)
    crashed = proc.returncode != 0
    result = {"target": name, "inputs": int(done[-1]) if done else None, "seconds": round(elapsed, 1),
              "crashed": crashed, "exit_code": proc.returncode}
    if crashed:
        tail = out[-4000:]
        result["output_tail"] = tail
        print(f"{name}: CRASH (exit {proc.returncode})\n{tail}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"targets to run (default all): {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target (default 60)")
    parser.add_argument("--runs", type=int, default=0, help="inputs per target (0: until --seconds)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "fastserve-fuzz",
                        help="where crashing inputs are written")
    parser.add_argument("--replay", type=Path, help="run one target once on this input (a crash file)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # runs one target in this process
    args = parser.parse_args()
    args.artifacts.mkdir(parents=True, exist_ok=True)
    if args.replay:
        if len(args.targets) != 1 or args.targets[0] == "http":
            parser.error("--replay takes one target (not http, which needs a server)")
        _given(args.targets[0])(args.replay.read_bytes())  # raises what the crash raised
        print(f"{args.targets[0]}: {args.replay} passes", flush=True)
        return
    if args.one:
        run_one(args.one, args.seconds, args.runs, args.artifacts, args.seed)
        return
    names = args.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target {unknown[0]!r}; targets: {', '.join(TARGETS)}")
    try:
        import atheris  # noqa: F401
        engine = "atheris (libFuzzer)"
    except ImportError:
        engine = "seeded random bytes through hypothesis (atheris is not installed)"
    print(f"fuzzing {', '.join(names)}: {args.seconds:g} s each, with {engine}", flush=True)
    server = None
    results = []
    try:
        for name in names:
            url = None
            if name == "http":
                from tests.conftest import MODELS, start_server

                server = start_server(MODELS)
                url = server.url
            result = _fuzz(name, args, url)
            if server is not None:
                import httpx
                from tests.fuzz.targets import check_still_serving

                with httpx.Client(base_url=server.url, timeout=10.0) as client:
                    check_still_serving(client, "/v1/models/churn/predict")
                log = server.stop()
                server = None
                if "Traceback" in log:
                    result["crashed"] = True
                    print(f"http: the server logged a traceback:\n{log[-4000:]}", flush=True)
            results.append(result)
            print(f"{name:18} {result['inputs'] or 0:>12,} inputs in {result['seconds']:7.1f} s"
                  f"{'  CRASH' if result['crashed'] else ''}", flush=True)
    finally:
        if server is not None:
            server.stop()
    total = sum(r["inputs"] or 0 for r in results)
    print(f"{'total':18} {total:>12,} inputs; crashes: {sum(r['crashed'] for r in results)}", flush=True)
    write_results("fuzz", {"engine": engine, "seconds_per_target": args.seconds, "seed": args.seed,
                           "targets": results, "total_inputs": total})
    if any(r["crashed"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
