"""Hostile traffic for the benchmarks: bad requests that keep their connection, and slow clients."""

from __future__ import annotations

import asyncio
import itertools
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
    they would take the GIL from the load generator and inflate the latencies it measures. With `core` (the
    server's, where there is no core to spare for them), that process runs there at the lowest priority: it takes
    the time the server leaves idle, instead of taking the generator's core from it."""

    def __init__(self, port: int, connections: int, core: int | None = None) -> None:
        self.port, self.connections = port, connections
        self._closed = multiprocessing.Value("q", 0)
        self._stop = multiprocessing.Event()
        self._process = multiprocessing.Process(target=_slow_clients, daemon=True,
                                                args=(port, connections, self._stop, self._closed, core))

    @property
    def closed_by_server(self) -> int:
        return int(self._closed.value)

    def __enter__(self) -> SlowClients:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(30)


_SLOW_REQUEST = b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200


class _Slow(asyncio.Protocol):
    """One slow client: the next byte of its headers each tick; closed by the server, it is replaced."""

    def __init__(self, clients: set[_Slow], closed: Any) -> None:
        self.clients, self.closed = clients, closed  # `clients`: those of its slot, which tick together
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.leaving = False  # closed by us at the end, not by the server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.clients.add(self)

    def tick(self) -> None:
        if self.transport is not None and self.sent < len(_SLOW_REQUEST):
            self.transport.write(_SLOW_REQUEST[self.sent:self.sent + 1])
            self.sent += 1

    def data_received(self, data: bytes) -> None:  # the server's 408: it closes next
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.clients.discard(self)
        if not self.leaving:
            with self.closed.get_lock():
                self.closed.value += 1


def _slow_clients(port: int, connections: int, stop: Any, closed: Any, core: int | None) -> None:
    """Kept lean (one timer for all connections, uvloop): on a two-core machine this process shares a core with the
    server or the load generator."""
    import os

    import uvloop

    if core is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})
        try:  # runs only when the core is otherwise idle, and does not preempt the server when it wakes
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            os.nice(19)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        slices = 50  # every 20 ms a fiftieth of the clients sends its byte: no burst to hold the generator's core
        slots: list[set[_Slow]] = [set() for _ in range(slices)]
        k = 0
        made = itertools.count()
        while not stop.is_set():
            for _ in range(min(connections - sum(map(len, slots)), connections // slices + 1)):  # (re)connect
                try:
                    await loop.create_connection(lambda: _Slow(slots[next(made) % slices], closed), "127.0.0.1",
                                                 port)
                except OSError:
                    break
            for client in list(slots[k]):
                client.tick()
            k = (k + 1) % slices
            await asyncio.sleep(1.0 / slices)
        for client in [c for slot in slots for c in slot]:
            if client.transport is not None:
                client.leaving = True
                client.transport.close()

    uvloop.run(run())
