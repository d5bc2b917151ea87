"""Hostile traffic for the benchmarks: bad requests that keep their connection, and slow clients."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import msgpack
import orjson

from benchmarks._harness import Client


def bad_requests(model: str, n_features: int, heavy: bool = True) -> list[bytes]:
    """Requests the server must refuse (4xx) on a connection it keeps: malformed, mistyped, oversized in rows,
    deeply nested, invalid UTF-8, huge declared lengths, unknown models. Without `heavy`, the one that costs more
    than any good request is left out: 5,000 rows (450 KB), as much to read and parse as the largest valid body."""
    path = f"/v1/models/{model}/predict"
    row = [0.5] * n_features
    json_bodies = [
        b'{"inputs": [[1, 2',
        b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        orjson.dumps({"inputs": [row, row[:-1]]}),
        orjson.dumps({"inputs": [[*row[:-1], "x"]]}),
        orjson.dumps({"inputs": [[*row[:-1], None]]}),
        *([orjson.dumps({"inputs": [row] * 5000})] if heavy else []),
        b'{"inputs": [["\xff\xfe"]]}',
        orjson.dumps({"records": 3}),
    ]
    msgpack_bodies = [
        b"\xdd\xff\xff\xff\xff",
        b"\x81\xa6inputs\xc6\xff\xff\xff\xff",
        msgpack.packb({"inputs": {"dtype": "float32", "shape": [2**40, n_features], "data": b""}}),
        msgpack.packb(msgpack.ExtType(3, b"x")),
    ]
    return ([Client.build("POST", path, b) for b in json_bodies]
            + [Client.build("POST", path, b, "application/msgpack") for b in msgpack_bodies]
            + [Client.build("POST", "/v1/models/nope/predict", orjson.dumps({"inputs": [row]}))])


class SlowClients:
    """`connections` clients that each send a request's headers one byte a second, reconnecting when the server
    closes them, until the context ends. They run in a process of their own: on a thread of the measuring process
    they would take the GIL from the load generator and inflate the latencies it measures."""

    def __init__(self, port: int, connections: int) -> None:
        self.port, self.connections = port, connections
        self._closed = multiprocessing.Value("q", 0)
        self._stop = multiprocessing.Event()
        self._process = multiprocessing.Process(target=_slow_clients, daemon=True,
                                                args=(port, connections, self._stop, self._closed))

    @property
    def closed_by_server(self) -> int:
        return int(self._closed.value)

    def __enter__(self) -> SlowClients:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(30)


def _slow_clients(port: int, connections: int, stop: Any, closed: Any) -> None:
    async def one() -> None:
        request = b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                for k in range(len(request)):
                    if stop.is_set():
                        break
                    writer.write(request[k:k + 1])
                    try:
                        if await asyncio.wait_for(reader.read(65536), 1.0) or reader.at_eof():
                            with closed.get_lock():
                                closed.value += 1
                            break
                    except TimeoutError:
                        continue
            except OSError:
                with closed.get_lock():
                    closed.value += 1
            finally:
                writer.close()

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(connections)))

    asyncio.run(run())
