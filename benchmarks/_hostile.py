"""Hostile traffic for the benchmarks: bad requests that keep their connection, and slow clients."""

from __future__ import annotations

import asyncio
import threading

import msgpack
import orjson

from benchmarks._harness import Client


def bad_requests(model: str, n_features: int) -> list[bytes]:
    """Requests the server must refuse (4xx) on a connection it keeps: malformed, mistyped, oversized in rows,
    deeply nested, invalid UTF-8, huge declared lengths, unknown models."""
    path = f"/v1/models/{model}/predict"
    row = [0.5] * n_features
    json_bodies = [
        b'{"inputs": [[1, 2',
        b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        orjson.dumps({"inputs": [row, row[:-1]]}),
        orjson.dumps({"inputs": [[*row[:-1], "x"]]}),
        orjson.dumps({"inputs": [[*row[:-1], None]]}),
        orjson.dumps({"inputs": [row] * 5000}),
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
    closes them, on their own thread, until `stop()`."""

    def __init__(self, port: int, connections: int) -> None:
        self.port, self.connections = port, connections
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _one(self) -> None:
        request = b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                for k in range(len(request)):
                    if self._stop.is_set():
                        break
                    writer.write(request[k:k + 1])
                    try:
                        if await asyncio.wait_for(reader.read(65536), 1.0) or reader.at_eof():
                            self.closed_by_server += 1
                            break
                    except TimeoutError:
                        continue
            except OSError:
                self.closed_by_server += 1
            finally:
                writer.close()

    async def _run(self) -> None:
        await asyncio.gather(*(self._one() for _ in range(self.connections)))
