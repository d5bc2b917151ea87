"""The same one-row request through four wire formats on one server, side by side in one run:

  - `v2_json`: the Open Inference (KServe V2) protocol, JSON tensor data, JSON outputs;
  - `v2_binary`: V2 with the binary tensor data extension, the input and every output as raw little-endian bytes;
  - `native_json`: `/v1/models/{name}/predict` with `{"inputs": [[...]]}`;
  - `native_msgpack`: the same route with a msgpack raw float32 tensor (`{"inputs": {"dtype", "shape", "data"}}`).

For each: p50 / p99 from each request's intended send time at a fixed moderate open-loop rate, and the highest
open-loop rate whose p99 stays within 10 ms with under 0.1% errors (benchmarks/loadgen.py's search). The cases take
turns, in rounds for the latency and trial by trial for the searches, so that drift in the machine hits them alike.
The server runs pinned to core 0, the generator on core 1; loopback only. Every case's answer is checked against the
others' before timing. Last, in-process, each wire format's own cost per request: its `Wire` reading the headers,
decoding, building the model input and encoding the answer, with no HTTP and no model run (the part that differs
between the four; a busy machine disturbs it least).

    python -m benchmarks.bench_protocols [--quick] [--rate 1000] [--model churn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, Process, pin_self, start_fastserve, time_cases, write_results
from benchmarks.loadgen import RateSearch, open_loop, passes

MODELS = ROOT / "models"
CASES = ("v2_json", "v2_binary", "native_json", "native_msgpack")


def _request(case: str, model: str, input_name: str, row: np.ndarray) -> bytes:
    """One raw HTTP request carrying `row` ([1, features] float32) in the case's wire format."""
    if case.startswith("native"):
        path = f"/v1/models/{model}/predict"
        if case == "native_json":
            return Client.build("POST", path, orjson.dumps({"inputs": row.tolist()}))
        tensor = {"dtype": "float32", "shape": list(row.shape), "data": row.astype("<f4").tobytes()}
        return Client.build("POST", path, msgpack.packb({"inputs": tensor}), "application/msgpack")
    path = f"/v2/models/{model}/infer"
    tensor = {"name": input_name, "shape": list(row.shape), "datatype": "FP32"}
    if case == "v2_json":
        return Client.build("POST", path, orjson.dumps({"inputs": [{**tensor, "data": row.ravel().tolist()}]}))
    data = row.astype("<f4").tobytes()
    head = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}],
                        "parameters": {"binary_data_output": True}})
    return Client.build("POST", path, head + data, "application/octet-stream",
                        {"Inference-Header-Content-Length": str(len(head))})


def _outputs(case: str, body: bytes) -> dict[str, np.ndarray]:
    """An answer's outputs, decoded as a client of that wire format decodes them."""
    if case == "native_json":
        return {k: np.asarray(v) for k, v in orjson.loads(body)["outputs"].items()}
    if case == "native_msgpack":
        return {k: np.asarray(v) for k, v in msgpack.unpackb(body)["outputs"].items()}
    # The JSON header is ASCII, so its length in characters is its length in bytes.
    response, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    out, offset = {}, end
    for o in response["outputs"]:
        if "data" in o:
            out[o["name"]] = np.asarray(o["data"]).reshape(o["shape"])
            continue
        dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}[o["datatype"]]
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(o["shape"])
        offset += size
    return out


def _check_same_answers(port: int, raws: dict[str, list[bytes]]) -> None:
    with Client(port) as client:
        answers = {}
        for case, requests in raws.items():
            status, body = client.send_raw(requests[0])
            if status != 200:
                raise RuntimeError(f"{case}: status {status}: {body[:300]!r}")
            answers[case] = _outputs(case, body)
    reference = answers["native_json"]
    for case, outputs in answers.items():
        if outputs.keys() != reference.keys():
            raise RuntimeError(f"{case} answers {sorted(outputs)}, native_json {sorted(reference)}")
        for name, value in outputs.items():
            np.testing.assert_array_equal(_canonical(value), _canonical(reference[name]), err_msg=f"{case}: {name}")


def _canonical(value: np.ndarray) -> np.ndarray:
    """JSON carries float32 in its shortest decimal form: equal to the binary value once read back as float32."""
    return value.astype(np.float32) if value.dtype.kind == "f" else value.astype(np.int64)


def _latency(server: Process, raws: dict[str, list[bytes]], rate: float, rounds: int, seconds: float
             ) -> dict[str, dict[str, float]]:
    """Per case: p50/p90/p99 of the answered requests over every round, errors, and the server's CPU time per
    answered request (user + system, all threads: what a busy machine disturbs least)."""
    latencies: dict[str, list[np.ndarray]] = {case: [] for case in raws}
    errors = dict.fromkeys(raws, 0)
    sent = dict.fromkeys(raws, 0)
    cpu_s = dict.fromkeys(raws, 0.0)
    lag: dict[str, list[float]] = {case: [] for case in raws}
    for r in range(rounds):
        order = list(raws)[r % len(raws):] + list(raws)[:r % len(raws)]
        for case in order:
            before = server.cpu_seconds()
            run = open_loop(server.port, raws[case], rate, seconds, seed=r)
            cpu_s[case] += server.cpu_seconds() - before
            ok = run.statuses == 200
            latencies[case].append(run.latencies_us[ok])
            errors[case] += int((~ok).sum())
            sent[case] += run.sent
            lag[case].append(run.summary()["send_lag_p99_us"])
    out = {}
    for case, parts in latencies.items():
        us = np.concatenate(parts)
        out[case] = {"sent": sent[case], "errors": errors[case], "p50_ms": float(np.percentile(us, 50) / 1e3),
                     "p90_ms": float(np.percentile(us, 90) / 1e3), "p99_ms": float(np.percentile(us, 99) / 1e3),
                     "server_cpu_us_per_request": cpu_s[case] / max(1, us.size) * 1e6,
                     "send_lag_p99_us_worst_round": max(lag[case])}
    return out


def wire_costs(model_name: str, raws: dict[str, list[bytes]], repeats: int, seconds: float) -> dict[str, Any]:
    """Per request, in-process: what each wire format costs on its own (its `Wire`: reading the headers, decoding,
    the model input, encoding the answer from fixed outputs), with no HTTP and no model run; median of `repeats`."""
    from fastserve.http.predict import NativeWire
    from fastserve.http.v2.infer import V2Wire
    from fastserve.registry import Registry
    from fastserve.routing.routes import ModelRoutes

    registry = Registry(MODELS, routes=ModelRoutes)
    registry.discover()
    asyncio.run(registry.load_all())
    try:
        model = registry.models[model_name]
        target = model.primary
        if target is None or target.session is None:
            raise RuntimeError(f"{model_name} did not load")
        wires = {"v2_json": V2Wire, "v2_binary": V2Wire, "native_json": NativeWire, "native_msgpack": NativeWire}

        def exchange(case: str) -> Callable[[], Callable[[], object]]:
            head, body = raws[case][0].split(b"\r\n\r\n", 1)
            headers = [(name.strip().lower().encode(), value.strip().encode()) for name, value in
                       (line.split(":", 1) for line in head.decode().split("\r\n")[1:])]
            outputs = target.session.run(np.zeros((1, target.session.n_features), target.session.input_dtype))

            def once() -> object:
                wire = wires[case]()
                wire.start(headers)
                wire.decode(body, model)
                wire.inputs(target, target.session)
                return wire.answer(target, outputs)

            return lambda: once
        samples = time_cases({case: exchange(case) for case in raws}, repeats, seconds)
    finally:
        registry.close()
    return {case: {"us_per_request": statistics.median(ns) / 1e3, "repeats_ns": ns} for case, ns in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one latency round, shorter trials")
    parser.add_argument("--model", default="churn")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the fixed-rate latency part")
    parser.add_argument("--slo-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    rounds, seconds, trial_s, refine = (1, 2.0, 1.0, 2) if args.quick else (3, 3.0, 1.5, 3)
    pin_self(1)

    rows = np.load(MODELS / args.model / "1" / "validation.npz")["inputs"].astype(np.float32)
    server = start_fastserve(MODELS, 0)
    try:
        with Client(server.port) as c:
            input_name = orjson.loads(c.request("GET", f"/v2/models/{args.model}")[1])["inputs"][0]["name"]
        raws = {case: [_request(case, args.model, input_name, rows[i:i + 1]) for i in range(len(rows))]
                for case in CASES}
        _check_same_answers(server.port, raws)
        for case in CASES:  # warm every path before timing
            open_loop(server.port, raws[case], args.rate, 0.5)

        print(f"one-row requests to {args.model}; open loop at {args.rate:g}/s, {rounds} x {seconds:g} s per case:")
        latency = _latency(server, raws, args.rate, rounds, seconds)
        print(f"highest rate with p99 <= {args.slo_ms:g} ms, the four searches taking turns:")
        searches = {case: RateSearch(1000.0, 50_000.0, refine) for case in CASES}
        trials: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
        while any(search.rate is not None for search in searches.values()):
            for case, search in searches.items():
                if search.rate is not None:
                    print(f"{case}:")
                    search.record(passes(server.port, raws[case], search.rate, args.slo_ms, trials[case],
                                         duration_s=trial_s))
        throughput = {case: search.good for case, search in searches.items()}
    finally:
        server.stop()
    print("each wire format's own cost, in-process (no HTTP, no model run):")
    wires = wire_costs(args.model, raws, 3 if args.quick else 7, 0.1 if args.quick else 0.2)

    lagging = [case for case, r in latency.items() if r["send_lag_p99_us_worst_round"] > 1000]
    if lagging:  # the generator itself was held up: another job shares the machine
        print(f"WARNING: the generator's send lag p99 went over 1 ms ({', '.join(lagging)}); the machine is busy and "
              "these figures mostly measure that")
    print(f"\n{'case':<16}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU us/req':>12}{'max rate/s':>12}"
          f"{'wire us':>9}")
    for case in CASES:
        r = latency[case]
        print(f"{case:<16}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['errors']:>8}"
              f"{r['server_cpu_us_per_request']:>12.0f}{throughput[case]:>12,.0f}{wires[case]['us_per_request']:>9.1f}")
    ratios = {}
    for v2, native in (("v2_json", "native_json"), ("v2_binary", "native_msgpack")):
        ratios[f"{v2}_over_{native}"] = {
            "max_rate": throughput[v2] / throughput[native] if throughput[native] else None,
            "cpu_per_request": (latency[v2]["server_cpu_us_per_request"]
                                / latency[native]["server_cpu_us_per_request"]),
            "p50": latency[v2]["p50_ms"] / latency[native]["p50_ms"],
            "wire_us_difference": wires[v2]["us_per_request"] - wires[native]["us_per_request"]}
        print(f"{v2} / {native}: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -"
                                                for k, v in ratios[f"{v2}_over_{native}"].items()))
    out = write_results("protocols", {"model": args.model, "rate": args.rate, "rounds": rounds, "seconds": seconds,
                                      "slo_ms": args.slo_ms, "latency": latency,
                                      f"max_rate_p99_{args.slo_ms:g}ms": throughput, "wire_in_process": wires,
                                      "v2_over_native": ratios, "trials": trials})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
