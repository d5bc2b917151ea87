"""The Python client's cost per call, next to a bare httpx call that sends the same bytes.

One call at a time (closed loop) to the bundled `churn` model on a server pinned to core 0, from this process on
core 1, for one-row and 64-row requests, as a msgpack raw tensor and as JSON:
  - `client`: `fastserve.client.Client.predict(model, x)`: encodes the numpy array, sends it with the time left as
    X-Request-Timeout-Ms, and decodes the answer into numpy arrays (retries armed, none needed);
  - `httpx`: `httpx.Client.post` of the very body and headers the client sends (built once), reading the answer's
    bytes and decoding nothing: the floor the client is built on;
  - `socket`: the same body through the benchmarks' raw-socket HTTP/1.1 client, for httpx's own share.
In-process, with no network: `client_local` and `httpx_local`, the same two calls on an `httpx.MockTransport`
that hands back the server's answer (bytes and headers), so that the difference is the client's own work and no
server's or scheduler's noise; `encode` (the array into the body) and `decode` (the answer into a Prediction),
the parts of that work the bare call skips. Each case is timed in repeats of enough calls for `--repeat-s`
seconds, every case taking its turn in each repeat so that drift in the machine hits them alike; the figure is
the median repeat, and the ratios come from the same run.

    python -m benchmarks.bench_client [--quick] [--repeats 5] [--repeat-s 0.25] [--model churn]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from benchmarks._harness import ROOT, Client, pin_self, start_fastserve, time_cases, write_results
from fastserve.client import Client as FastserveClient
from fastserve.client.wire import FORMATS, inputs_body, prediction

MODELS = ROOT / "models"
SIZES = (1, 64)


def _cases(port: int, model: str, x: np.ndarray, fmt: str, stack: list[Any]) -> dict[str, Callable[[], object]]:
    """The timed calls for one size and format, all checked to get the same answer first."""
    media = FORMATS[fmt]
    url = f"http://127.0.0.1:{port}"
    path = f"/v1/models/{model}/predict"
    client = FastserveClient(url, format=fmt)
    bare = httpx.Client(base_url=url)
    raw = Client(port)
    stack += [client, bare, raw]
    body = inputs_body(x, media)
    # The client sends the time left, "9999.87" or so: the same length here.
    headers = {"content-type": media, "accept": media, "x-request-timeout-ms": "9999.99"}
    request = Client.build("POST", path, body, media)

    answer = bare.post(path, content=body, headers=headers)
    status, raw_answer = raw.send_raw(request)
    if answer.status_code != 200 or status != 200 or raw_answer != answer.content:
        raise RuntimeError(f"bare calls failed: {answer.status_code} {answer.content[:200]!r}")
    mine = client.predict(model, x)
    theirs = prediction(answer.content, media, path)
    for name, value in theirs.outputs.items():
        np.testing.assert_array_equal(mine[name], value)

    def replay(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=answer.headers, content=answer.content)

    client_local = FastserveClient(url, format=fmt, transport=httpx.MockTransport(replay))
    bare_local = httpx.Client(base_url=url, transport=httpx.MockTransport(replay))
    stack += [client_local, bare_local]

    def client_call() -> object:
        return client.predict(model, x)

    def httpx_call() -> object:
        return bare.post(path, content=body, headers=headers).content

    def socket_call() -> object:
        return raw.send_raw(request)

    def client_local_call() -> object:
        return client_local.predict(model, x)

    def httpx_local_call() -> object:
        return bare_local.post(path, content=body, headers=headers).content

    def encode() -> object:
        return inputs_body(x, media)

    def decode() -> object:
        return prediction(answer.content, media, path)

    return {"client": client_call, "httpx": httpx_call, "socket": socket_call, "client_local": client_local_call,
            "httpx_local": httpx_local_call, "encode": encode, "decode": decode}


def _table(title: str, results: dict[str, Any], columns: list[tuple[str, str, str | None]]) -> None:
    """One line per size and format; a column is (heading, result key, case or None for a figure of its own)."""
    print(title)
    print(f"{'rows':>4} {'format':<8}" + "".join(f"{heading:>14}" for heading, _, _ in columns))
    for r in results.values():
        cells = [r[key] if case is None else r[key][case] for _, key, case in columns]
        print(f"{r['rows']:>4} {r['format']:<8}" + "".join(f"{v:>14.2f}" if "/" in heading else f"{v:>14.1f}"
                                                           for (heading, _, _), v in zip(columns, cells, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats of 0.1 s per case (about 10 s in all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case; the median is reported")
    parser.add_argument("--repeat-s", type=float, default=0.25, help="seconds of calls per repeat")
    parser.add_argument("--model", default="churn")
    args = parser.parse_args(argv)
    repeats, seconds = (3, 0.1) if args.quick else (args.repeats, args.repeat_s)

    pin_self(1)
    inputs = np.load(MODELS / args.model / "1" / "validation.npz")["inputs"].astype(np.float32)
    # Each case waits its turn for seconds at a time: past the default 5 s idle keep-alive, the raw-socket
    # client's connection would be closed under it.
    server = start_fastserve(MODELS, 0, "--keep-alive-timeout", "120")
    stack: list[Any] = []
    cpu: dict[str, list[float]] = {}
    try:
        cases: dict[str, Callable[[], object]] = {}
        for rows in SIZES:
            for fmt in FORMATS:
                for name, fn in _cases(server.port, args.model, inputs[:rows], fmt, stack).items():
                    cases[f"{rows}/{fmt}/{name}"] = fn
        wall = time_cases({name: (lambda fn=fn: fn) for name, fn in cases.items()}, repeats, seconds, cpu)
    finally:
        for closing in stack:
            closing.__exit__(None, None, None) if isinstance(closing, Client) else closing.close()
        server.stop()

    results: dict[str, Any] = {}
    for rows in SIZES:
        for fmt in FORMATS:
            prefix = f"{rows}/{fmt}/"
            us = {k[len(prefix):]: float(np.median(v)) / 1e3 for k, v in wall.items() if k.startswith(prefix)}
            cpu_us = {k[len(prefix):]: float(np.median(v)) / 1e3 for k, v in cpu.items() if k.startswith(prefix)}
            results[f"rows_{rows}_{fmt}"] = {
                "rows": rows, "format": fmt, "us_per_call": us, "cpu_us_per_call": cpu_us,
                "client_over_httpx": us["client"] / us["httpx"],
                "client_minus_httpx_us": us["client"] - us["httpx"],
                "cpu_client_over_httpx": cpu_us["client"] / cpu_us["httpx"],
                "cpu_client_minus_httpx_us": cpu_us["client"] - cpu_us["httpx"],
                "httpx_over_socket": us["httpx"] / us["socket"],
                "local_client_over_httpx": us["client_local"] / us["httpx_local"],
                "local_client_minus_httpx_us": us["client_local"] - us["httpx_local"],
                "repeats_ns_per_call": {k[len(prefix):]: v for k, v in wall.items() if k.startswith(prefix)},
                "repeats_cpu_ns_per_call": {k[len(prefix):]: v for k, v in cpu.items() if k.startswith(prefix)},
            }

    print(f"{args.model}, one call at a time, server on core 0, client on core 1; median of {repeats} repeats of "
          f"~{seconds:g} s per case")
    _table("per call, wall clock (us):", results, [
        ("client", "us_per_call", "client"), ("httpx", "us_per_call", "httpx"), ("socket", "us_per_call", "socket"),
        ("client/httpx", "client_over_httpx", None), ("client-httpx", "client_minus_httpx_us", None),
        ("httpx/socket", "httpx_over_socket", None)])
    _table("per call, the caller's CPU (us):", results, [
        ("client", "cpu_us_per_call", "client"), ("httpx", "cpu_us_per_call", "httpx"),
        ("socket", "cpu_us_per_call", "socket"), ("client/httpx", "cpu_client_over_httpx", None),
        ("client-httpx", "cpu_client_minus_httpx_us", None)])
    _table("per call with no network (us), and the client's encode and decode:", results, [
        ("client", "us_per_call", "client_local"), ("httpx", "us_per_call", "httpx_local"),
        ("client/httpx", "local_client_over_httpx", None), ("client-httpx", "local_client_minus_httpx_us", None),
        ("encode", "us_per_call", "encode"), ("decode", "us_per_call", "decode")])
    # Other work on the machine moves these figures; the load average says how much there was.
    out = write_results("client", {"model": args.model, "repeats": repeats, "repeat_s": seconds,
                                   "load_average_1m": os.getloadavg()[0],
                                   "versions": {"httpx": httpx.__version__, "numpy": np.__version__},
                                   "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
