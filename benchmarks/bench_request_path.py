"""The server's own CPU per prediction, in process, with no sockets: the compiled protocol (`http/_protocol.pyx`) fed
one-row requests from `--connections` connections at a time (each round every connection sends one request, then
the loop runs until all are answered, as closed-loop clients would), on the bundled models, under uvloop.

What it leaves out is what every server pays alike (the kernel's socket reads and writes, loopback delivery, wake-ups),
so it shows fastserve's own layers: parsing, routing, decoding, batching, the model, encoding, metrics. With
`--callgrind` the figure is instructions per request (`valgrind --tool=callgrind`), which other load on the
machine does not move: the measure to compare two builds by.

    python -m benchmarks.bench_request_path [--requests 20000] [--connections 32] [--model churn] [--format json]
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python -m benchmarks.bench_request_path --callgrind

Writes benchmarks/results/request_path.json (not under --callgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import uvloop

from benchmarks._harness import ROOT, write_results
from fastserve.bench.payloads import FORMATS, predict_path, raw_request, rows_body
from fastserve.config import ServerConfig
from fastserve.http._protocol import Settings
from fastserve.http.app import create_app


class Transport:
    """What the protocol asks of a socket's transport; counts the answers written, and wakes the driver once the
    round's last is (the driver does not spin: its CPU would count as the server's)."""

    round: Round

    def __init__(self, round_: Round) -> None:
        self.round = round_
        self.closed = False
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data
        self.round.answered(data.count(b"HTTP/1.1 "))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class Round:
    """The answers awaited in a round of requests, one per connection."""

    def __init__(self) -> None:
        self.waiting = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, n: int) -> asyncio.Future[None]:
        self.waiting = n
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def answered(self, n: int) -> None:
        self.waiting -= n
        if self.waiting <= 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)


def request_bytes(model: str, fmt: str, rows: np.ndarray, i: int) -> bytes:
    """One row as `fastserve bench` sends it: `fmt` is json, msgpack or tensor (native), v2 or v2-binary."""
    x = rows[i % len(rows)][None, :]
    protocol = fmt if fmt.startswith("v2") else "native"
    body = rows_body(x, fmt, protocol, "inputs")
    return raw_request("127.0.0.1", predict_path(model, None, protocol), body,
                       [("Accept", body.content_type)] if protocol == "native" else [])


async def drive(requests: int, connections: int, model: str, fmt: str) -> dict[str, Any]:
    only = Path(tempfile.mkdtemp(prefix="fastserve-request-path-"))  # the one model: the others need not load
    (only / model).symlink_to(ROOT / "models" / model)
    config = ServerConfig(models_dir=only, host="127.0.0.1", port=0, log_level="warning")
    app = create_app(config)
    app.registry.discover()
    await app.registry.load_all()
    stats = app.metrics.stats
    settings = Settings(app, config.limits, config.max_body_bytes, stats, stats.connections_refused, app.admission,
                        config.limits.keep_alive_timeout_s)
    state = SimpleNamespace(connections=set(), tasks=set())
    conns = []
    round_state = Round()
    for _ in range(connections):
        transport = Transport(round_state)
        protocol = settings(server_state=state, app_state={})
        protocol.connection_made(transport)
        conns.append((protocol, transport))
    # (rows of the validation set in turn: the drift monitor sees traffic like its reference, not one row)
    rows = np.load(ROOT / "models" / model / "1" / "validation.npz")["inputs"].astype(np.float32)
    requests_of = [[request_bytes(model, fmt, rows, i * 61 + j) for j in range(61)] for i in range(connections)]
    turn = 0

    async def round_() -> None:
        nonlocal turn
        done = round_state.expect(connections)
        for (protocol, _), datas in zip(conns, requests_of, strict=True):
            protocol.data_received(datas[turn % 61])
        turn += 1
        await done

    for _ in range(max(1, 2000 // connections)):  # warm: the batcher's estimates, the caches
        await round_()
    status = conns[0][1].last.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise SystemExit(f"the server answered {conns[0][1].last[:400]!r}")
    rounds = max(1, requests // connections)
    queue = app.registry.model(model).primary.serving.batcher.queue
    batches_before = queue.stats()["batches"]
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await round_()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = rounds * connections
    batches = queue.stats()["batches"] - batches_before
    app.registry.close()
    return {"requests": n, "connections": connections, "model": model, "format": fmt,
            "rows_per_batch": n / max(1, batches), "cpu_us_per_request": cpu / n * 1e6,
            "wall_us_per_request": wall / n * 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--model", default="churn")
    parser.add_argument("--format", choices=(*FORMATS, "v2", "v2-binary"), default="json")
    parser.add_argument("--callgrind", action="store_true", help="a run for valgrind: no results written (run it "
                        "with two --requests and divide the difference of the instructions counted)")
    args = parser.parse_args(argv)
    requests = args.requests
    result = uvloop.run(drive(requests, args.connections, args.model, args.format))
    print(f"{result['model']} {result['format']}, {result['connections']} connections: "
          f"{result['cpu_us_per_request']:.2f} µs of CPU per request ({result['requests']:,} requests, "
          f"{result['rows_per_batch']:.1f} a batch)")
    if not args.callgrind:
        write_results("request_path", result)


if __name__ == "__main__":
    main()
