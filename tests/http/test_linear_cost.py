"""Every part of the request path costs time linear in what a client controls.

Each hostile body of tests/hostile_bodies.py is timed at n and at 10n, and the ratio must stay under 20 (a linear cost
gives about 10, a quadratic one about 100): a ratio within one run, not a wall-clock bound. In-process, through the
request path's entry points, the way `http/serving.serve` takes a body: the route's `Wire` reads the headers,
decodes the body (its pre-scans included), the router chooses the version, the Wire builds the model's input and
writes the answer (from outputs the model gave once, untimed: the model runs on a worker thread, not on the loop), or
the error answer. The door's header scanner (`HeaderBlock.feed`) is timed in-process too; whole raw requests (many
headers, long lines, tiny chunks, pipelining) and a few bodies go over HTTP to a real server.

Two scales: n = 8 (8 KiB against 80 KiB, caches warm), where every body is parsed whole (under the value bounds),
and n = 400 (400 KiB against 4 MiB, caches emptied before each sample), where most bodies are refused by the scans
that run before parsing. Between the two the memory hierarchy alone moves a linear cost's ratio to 15-25, so that
step is not measured. The cyclic garbage collector is off while timing: its full collections scan every object
alive, a cost of the interpreter that grows with what a decoder builds, bounded by the scans before parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from fastserve.config import ConnectionLimits
from fastserve.exceptions import FastserveError
from fastserve.http.door_process import WAIT, HeaderBlock, raw_header_limit
from fastserve.http.predict import NativeWire
from fastserve.http.serving import Wire
from fastserve.http.v2.infer import V2Wire
from fastserve.malloc import keep_freed_blocks
from fastserve.registry import Registry
from fastserve.routing.router import choose
from fastserve.routing.routes import ModelRoutes
from tests import hostile_bodies
from tests.conftest import MODELS, Server, copy_model
from tests.hostile_bodies import BINARY, HEADER_LENGTH, Body
from tests.timing import judge, ratio

SMALL, LARGE = 8, 400  # the two scales' n, in KiB (hostile_bodies.catalogue)
FAMILIES = hostile_bodies.families()


# --- the request path in-process -------------------------------------------------------------------------------------

def load(models_dir: Any) -> Registry:
    registry = Registry(models_dir, routes=ModelRoutes)
    registry.discover()
    asyncio.run(registry.load_all())
    return registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """The bundled models, loaded; the process set up as `fastserve serve` sets itself up (glibc's malloc keeping
    freed blocks; the heap frozen once the models are in, so the collector skips what loading made)."""
    keep_freed_blocks()
    loaded = load(MODELS)
    gc.collect()
    gc.freeze()
    yield loaded
    gc.unfreeze()
    loaded.close()


def exchange(registry: Registry, body: Body) -> Callable[[], int]:
    """One call: `body` through its route's Wire and the router, as `serving.serve` takes it; its status."""
    v2 = body.path.startswith("/v2/")
    name = body.path.split("/")[3]
    headers = [(b"content-type", body.content_type.encode()), (b"content-length", str(len(body.body)).encode()),
               *((k.lower().encode(), v.encode("latin-1")) for k, v in body.headers)]
    outputs: dict[str, Any] = {}

    def once() -> int:
        wire: Wire = V2Wire() if v2 else NativeWire()
        try:
            wire.start(headers)
            model = registry.model(name)
            route = choose(model, None, wire.decode(body.body, model), headers)
            assert route.serving is not None
            x, _, _ = wire.inputs(route.version, route.serving.session)
            if not outputs:  # the model runs on a worker thread: once, in the first (untimed) call
                outputs.update(route.serving.session.run(x))
            wire.answer(route.version, outputs)
            return 200
        except FastserveError as exc:
            return wire.error(exc)[0]

    return once


def answered(work: Callable[[], int], what: str) -> Callable[[], int]:
    status = work()
    assert status < 500, f"{what}: answered {status}"
    return work


@pytest.mark.parametrize("name", list(FAMILIES))
def test_body_cost_is_linear(registry, name):
    """Each hostile body, at 8 KiB and 80 KiB (parsed whole), then at 400 KiB and 4 MiB (refused by the scans
    before parsing, most of them): its cost on the event loop grows linearly with its size."""
    build = FAMILIES[name]
    for n, cold in ((SMALL, False), (LARGE, True)):
        small, large = build(n), build(10 * n)
        what = f"{name} ({small.dimension})"
        times = ratio(answered(exchange(registry, small), what), answered(exchange(registry, large), what), cold)
        judge(what, len(small.body), len(large.body), times)


# --- a canary sticky on a field: the V2 route reads that field's first value before choosing the version --------------

@pytest.fixture(scope="module")
def sticky(tmp_path_factory) -> Iterator[Registry]:
    """`sticky`: two versions of churn, a canary sticky on the country field."""
    models = tmp_path_factory.mktemp("sticky")
    folder = copy_model("churn", models, name="sticky", config=(
        '[model]\nprimary = 1\n[versions]\npolicy = "all"\n'
        '[routing]\ncanary = { version = 2, weight = 0.5, sticky_key = "country" }\n'))
    shutil.copytree(folder / "1", folder / "2")
    loaded = load(models)
    yield loaded
    loaded.close()


def sticky_bodies(n: int) -> list[Body]:
    """V2 requests whose `country` input a canary sticky on that field reads: many BYTES elements in binary, many
    JSON strings, and a shape of many huge dimensions (their product is a number of ~60 bits a dimension)."""
    count = 256 * n
    head = orjson.dumps({"inputs": [{"name": "country", "datatype": "BYTES", "shape": [count],
                                     "parameters": {"binary_data_size": 4 * count}}]})
    strings = orjson.dumps({"inputs": [{"name": "country", "datatype": "BYTES", "shape": [count // 2],
                                        "data": ["US"] * (count // 2)}]})
    shape = orjson.dumps({"inputs": [{"name": "country", "datatype": "BYTES", "shape": [2**62] * (n * 50),
                                      "data": ["US"]}]})
    path = hostile_bodies.v2("sticky")
    return [Body("sticky-bytes-elements", "BYTES elements of the sticky field", path, BINARY,
                 head + b"\0\0\0\0" * count, ((HEADER_LENGTH, str(len(head))),)),
            Body("sticky-strings", "JSON strings of the sticky field", path, hostile_bodies.JSON, strings),
            Body("sticky-shape-dims", "huge dimensions in the sticky field's shape", path, hostile_bodies.JSON, shape)]


@pytest.mark.parametrize("index", range(len(sticky_bodies(1))))
def test_sticky_field_read_is_linear(sticky, index):
    for n, cold in ((SMALL, False), (LARGE, True)):
        small, large = sticky_bodies(n)[index], sticky_bodies(10 * n)[index]
        what = f"{small.name} ({small.dimension})"
        times = ratio(answered(exchange(sticky, small), what), answered(exchange(sticky, large), what), cold)
        judge(what, len(small.body), len(large.body), times)


# --- the headers a route reads ---------------------------------------------------------------------------------------

def wire_headers(n: int) -> list[tuple[str, Callable[[], Wire], list[tuple[bytes, bytes]]]]:
    """Headers past what the server's header limits let through (the Wire alone is timed): Accept with many media
    ranges, a Content-Type with many parameters, many headers of no interest."""
    ranges = b"x/y;q=0.5," * (250 * n) + b"application/json"
    params = b"application/json" + b"; a=b" * (200 * n)
    others = [(b"x-hostile-%d" % i, b"v") for i in range(100 * n)]
    return [("accept-many-ranges", NativeWire, [(b"accept", ranges)]),
            ("content-type-many-parameters", NativeWire, [(b"content-type", params)]),
            ("many-headers (native)", NativeWire, others),
            ("many-headers (V2)", V2Wire, others)]


@pytest.mark.parametrize("index", range(len(wire_headers(1))), ids=[name for name, _, _ in wire_headers(1)])
def test_header_reading_is_linear(index):
    (name, make, small), (_, _, large) = wire_headers(SMALL)[index], wire_headers(10 * SMALL)[index]
    times = ratio(lambda: make().start(small), lambda: make().start(large), cold=False)
    judge(name, sum(len(k) + len(v) for k, v in small), sum(len(k) + len(v) for k, v in large), times)


# --- the door's header scanner ---------------------------------------------------------------------------------------

def feeding(head: bytes, chunk: int, limit: int) -> Callable[[], int]:
    """One call: `head` fed to a new HeaderBlock `chunk` bytes at a time, as reads bring it, until it decides."""
    pieces = [head[i:i + chunk] for i in range(0, len(head), chunk)]

    def feed() -> int:
        block = HeaderBlock(limit)
        for piece in pieces:
            state = block.feed(piece)
            if state != WAIT:
                return state
        return WAIT

    return feed


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_header_scan_is_linear(chunk):
    """Header lines that never end the block, fed in reads of `chunk` bytes to a HeaderBlock without a limit: the
    scan's cost grows with the bytes, not with reads times bytes."""
    n = 4 if chunk < 16 else 64
    lines = [b"POST / HTTP/1.1\r\n" + b"X-Hostile: v\r\n" * (73 * k) + b"\r\n" for k in (n, 10 * n)]
    times = ratio(feeding(lines[0], chunk, 1 << 40), feeding(lines[1], chunk, 1 << 40), cold=False)
    judge(f"a head in reads of {chunk} bytes", len(lines[0]), len(lines[1]), times)


@pytest.mark.parametrize("index", range(len(hostile_bodies.raw_requests(1))), ids=[
    name for name, _, _ in hostile_bodies.raw_requests(1)])
def test_raw_request_head_scan_is_linear(index):
    """Each raw request of the catalogue, fed a byte at a time to the door's HeaderBlock with the server's default
    limit (past it, refused)."""
    limits = ConnectionLimits()
    limit = raw_header_limit(limits.max_header_bytes, limits.max_headers)
    (name, dimension, small), (_, _, large) = (hostile_bodies.raw_requests(n)[index] for n in (2, 20))
    times = ratio(feeding(small, 1, limit), feeding(large, 1, limit), cold=False)
    judge(f"{name} ({dimension}), a byte a read", len(small), len(large), times)


# --- over HTTP -------------------------------------------------------------------------------------------------------

def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # a server that answers early (431, 413) may close before it is all sent
        sock.sendall(data)


def read_answers(sock: socket.socket, count: int) -> list[int]:
    """The statuses of up to `count` answers, until the server closes."""
    statuses: list[int] = []
    data = b""
    while len(statuses) < count:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
            continue
        head = data[:end].decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in head[1:] if line.lower().startswith("content-length:")),
                      0)
        while len(data) < end + 4 + length:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        statuses.append(int(head[0].split()[1]))
        data = data[end + 4 + length:]
    return statuses


def requests_in(raw: bytes) -> int:
    return max(1, raw.count(b" HTTP/1.1\r\n"))


def roundtrip(port: int, raw: bytes) -> Callable[[], list[int]]:
    """One call: `raw` sent on a new connection (from a thread, while the answers are read), every answer read."""
    count = requests_in(raw)

    def once() -> list[int]:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sender = threading.Thread(target=_send, args=(sock, raw))
            sender.start()
            statuses = read_answers(sock, count)
            sender.join()
        return statuses

    return once


def served(work: Callable[[], list[int]], what: str, count: int = 1) -> Callable[[], list[int]]:
    """`work`, once its first call is seen to answer each of its `count` requests, none with a 5xx."""
    statuses = work()
    assert len(statuses) == count and max(statuses) < 500, f"{what}: {count} requests answered {statuses[:20]}"
    return work


RAW = [pytest.param(i, id=name) for i, (name, _, _) in enumerate(hostile_bodies.raw_requests(1))]


@pytest.mark.parametrize("index", RAW)
def test_raw_request_cost_is_linear(server: Server, index):
    """Each raw request at n = 16 and 160 against a real server (the door process reads the head, the serving
    process the rest): every request in it is answered (over the header limits, refused), and the time to all its
    answers grows linearly."""
    (name, dimension, small), (_, _, large) = (hostile_bodies.raw_requests(n)[index] for n in (16, 160))
    what = f"{name} ({dimension})"
    times = ratio(served(roundtrip(server.port, small), what, requests_in(small)),
                  served(roundtrip(server.port, large), what, requests_in(large)), False)
    judge(what, len(small), len(large), times)


OVER_HTTP = ["json-keys-one-object", "json-nested-arrays", "json-rows-over-limit", "msgpack-keys-one-map",
             "msgpack-empty-arrays", "v2-json-data", "v2-binary-bytes-elements"]


def http_request(body: Body, chunked: bool) -> bytes:
    if not chunked:
        return hostile_bodies.request("POST", body.path, body.body, list(body.headers), body.content_type)
    head = "".join(f"{k}: {v}\r\n" for k, v in body.headers)
    return (f"POST {body.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {body.content_type}\r\n{head}"
            "Transfer-Encoding: chunked\r\n\r\n").encode("latin-1") + hostile_bodies.chunked(body.body, 1 << 14)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", OVER_HTTP)
def test_body_cost_over_http_is_linear(server: Server, name, chunked):
    """A few bodies at 400 KiB and 4 MiB over HTTP, read by the server's protocol whole or in 16 KiB chunks."""
    small, large = FAMILIES[name](LARGE), FAMILIES[name](10 * LARGE)
    what = f"{name} ({small.dimension})"
    times = ratio(served(roundtrip(server.port, http_request(small, chunked)), what),
                  served(roundtrip(server.port, http_request(large, chunked)), what), False)
    judge(what, len(small.body), len(large.body), times)
