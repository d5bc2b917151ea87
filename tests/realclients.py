"""Real HTTP client libraries against the real server, for what only they show: how each surfaces an answer sent
before its request's body was read whole (a 413 from the Content-Length, a 503 at the headers), and what a pool
of aiohttp keep-alive connections loses across a SIGTERM. Shared by the tests and benchmarks/bench_refusals.py.

A client still sending when the server closes makes the server's kernel answer the unread bytes with a reset, and a
reset can destroy the answer before the client reads it; some libraries also give up on the answer when their send
fails. The server is required to half-close after such an answer and read what the client still sends (for a
bounded time), so that every library reads the answer every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import msgpack
import numpy as np
import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30.0  # per request: a client never waits on a hung server for long
JSON = {"Content-Type": "application/json"}
PREDICT = "/v1/models/churn/predict"
SLO_MODEL = "churn_slo"
SLO_PREDICT = f"/v1/models/{SLO_MODEL}/predict"
# churn under a latency SLO, so admission gates its requests; one instance, and requests of up to 100,000 rows, so
# that a few large requests hold its instance while one-row requests wait behind them, holding admission's places.
SLO_CONFIG = """[runtime]
intra_op_threads = 1
[inputs]
max_rows = 100000
[batching]
latency_slo_ms = 60000
max_queue_rows = 1000000
"""
_ROW = np.load(ROOT / "models" / "churn" / "1" / "validation.npz")["inputs"][0].astype(np.float32)
ONE_ROW = orjson.dumps({"inputs": [_ROW.tolist()]})


def json_body(size: int) -> bytes:
    """A JSON predict body of `size` bytes: rows of the model's 22 features, padded with spaces to the size."""
    row = orjson.dumps(_ROW.tolist())
    head = b'{"inputs": ['
    n = (size - len(head) - 2) // (len(row) + 1)
    body = head + b",".join([row] * n) + b"]}"
    return body[:-1] + b" " * (size - len(body)) + b"}"


# --- one POST with each library: (status, headers with lower-case names, body), or the library's exception ---

Answer = tuple[int, dict[str, str], bytes]
OVERLOADED, TOO_LARGE, TOO_MANY_CONNECTIONS = "503 overloaded", "413 body_too_large", "503 too_many_connections"


def _lower(headers: object) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}  # type: ignore[attr-defined]


def post_urllib(url: str, body: bytes) -> Answer:
    request = urllib.request.Request(url, data=body, headers=JSON, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return answer.status, _lower(answer.headers), answer.read()
    except urllib.error.HTTPError as error:  # every 4xx and 5xx: the answer is on the exception
        with error:
            return error.code, _lower(error.headers), error.read()


def post_requests(url: str, body: bytes) -> Answer:
    r = requests.post(url, data=body, headers=JSON, timeout=TIMEOUT_S)
    return r.status_code, _lower(r.headers), r.content


def post_httpx(url: str, body: bytes) -> Answer:
    r = httpx.post(url, content=body, headers=JSON, timeout=TIMEOUT_S)
    return r.status_code, _lower(r.headers), r.content


async def _post_httpx_async(url: str, body: bytes) -> Answer:
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        r = await client.post(url, content=body, headers=JSON)
        return r.status_code, _lower(r.headers), r.content


async def _post_aiohttp(url: str, body: bytes) -> Answer:
    # A file object, as aiohttp asks for a large body (raw bytes are written in one call, and it warns).
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session, \
            session.post(url, data=io.BytesIO(body), headers=JSON) as r:
        # Answered before its body was all sent, the connection is closed with the rest of the body still to
        # write, and the session does not wait for that: this loop ends only once it is done.
        protocol = r.connection.protocol if r.connection is not None else None
        closed = protocol.closed if protocol is not None else None
        answer = r.status, _lower(r.headers), await r.read()
    if closed is not None:
        try:
            await asyncio.wait_for(asyncio.shield(closed), TIMEOUT_S / 3)
        except aiohttp.ClientConnectionError:
            pass  # ended by a reset after the answer was read: the answer is what is measured
        except TimeoutError:
            protocol.abort()  # type: ignore[union-attr]
    return answer


CLIENTS: dict[str, Callable[[str, bytes], Answer]] = {
    "urllib": post_urllib,
    "requests": post_requests,
    "httpx": post_httpx,
    "httpx-async": lambda url, body: asyncio.run(_post_httpx_async(url, body)),
    "aiohttp": lambda url, body: asyncio.run(_post_aiohttp(url, body)),
}


def outcome(post: Callable[[str, bytes], Answer], url: str, body: bytes) -> str:
    """What one POST came to, in a word a table can count: `<status> <error code>` for an answer with the server's
    JSON error body, `<status> <body head>` for any other answer, else the exception's chain of types (urllib wraps
    the socket's error in a URLError)."""
    try:
        status, _, content = post(url, body)
    except Exception as exc:  # what a refusal turns into, in each library, is what is measured
        names, cause = [], exc
        while cause is not None and len(names) < 4:
            names.append(type(cause).__name__)
            cause = getattr(cause, "reason", None) if isinstance(cause, urllib.error.URLError) else \
                cause.__cause__ or cause.__context__
        return " <- ".join(names)
    try:
        error = orjson.loads(content)["error"]
        if isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]:
            return f"{status} {error['code']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return f"{status} {content[:60]!r}"


# --- holding admission's places, so that a request to the SLO model is refused at its headers ---


def raw_request(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


def model_values(url: str, model: str = SLO_MODEL) -> dict[str, float]:
    """fastserve_admission_* and fastserve_queue_rows for `model` (one version), by metric name."""
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT_S).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        rf'^(fastserve_admission_\w+|fastserve_queue_rows){{model="{model}"(?:,version="\d+")?}} (\S+)$', text, re.M)}


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer from a raw socket: status, headers (lower-case names), body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed in an answer's body: {data[:200]!r}")
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def hold_connections(port: int, n: int) -> list[socket.socket]:
    """`n` open connections, each idle after a request answered 200: with `--max-connections n`, the server
    refuses a request on one more, 503 at its headers. One refused (a connection of an earlier try may still be
    open) is closed, and another opened."""
    held: list[socket.socket] = []
    while len(held) < n:
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            status = read_answer(s)[0]
        except OSError:
            status = 0
        if status == 200:
            held.append(s)
        else:
            s.close()
    return held


def _peek(s: socket.socket) -> str:
    try:
        return repr(s.recv(200))
    except OSError as exc:
        return repr(exc)


class Crowd:
    """Every one of admission's places for the SLO model held, so that a request to it is refused at its headers.

    The model has one instance. `LONG` requests of `LONG_ROWS` rows (about 0.3-0.5 s of its time each) take it
    in turn, and hold no place: each comes pipelined behind a health check on its connection, and a request that
    arrives while an earlier one on its connection is being answered is not gated. (A health check, not a request
    to the model: one queued behind the long request of the connection before would keep this connection's reading
    paused for that run, and the long requests would not all be in.) Once they are queued,
    one-row requests, each on a connection of its own, take every place and wait in the queue behind them. While
    at least two of the long ones are unanswered, nothing admitted can have been answered (an answer seen here
    may have been written a moment ago, never a whole run ago): the places stay taken."""

    LONG, LONG_ROWS = 5, 60_000

    def __init__(self, url: str, port: int) -> None:
        self.url, self.port = url, port
        x = np.random.default_rng(0).normal(size=(self.LONG_ROWS, _ROW.size)).astype("<f4")
        self._one = raw_request(SLO_PREDICT, ONE_ROW)
        self._long = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + raw_request(SLO_PREDICT, msgpack.packb(
            {"inputs": {"dtype": "float32", "shape": list(x.shape), "data": x.tobytes()}}), "application/msgpack")
        self.longs: list[socket.socket] = []
        self.holders: list[socket.socket] = []

    def _send(self, raw: bytes) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
        s.sendall(raw)
        return s

    def _unanswered(self) -> int:
        answered, _, _ = select.select(self.longs, [], [], 0)
        return len(self.longs) - len(answered)

    def full(self) -> bool:
        """Whether a request sent now is refused at its headers (see the class)."""
        return bool(self.longs) and self._unanswered() >= 2

    def _wait_for(self, done: Callable[[dict[str, float]], bool], what: str) -> None:
        until = time.monotonic() + TIMEOUT_S
        while not done(values := model_values(self.url)):
            if time.monotonic() > until:
                raise RuntimeError(f"{what}: {values}")
            time.sleep(0.02)

    def fill(self, attempts: int = 5) -> None:
        """Hold every place (after letting go of any held before). On a loaded machine the one-row requests may
        take longer to be let in than the long ones to run (the door process, which passes them on, runs at a
        lower priority): then again, a few times."""
        for _ in range(attempts - 1):
            if self._fill():
                return
        if not self._fill():
            answered, _, _ = select.select(self.longs, [], [], 0)
            raise RuntimeError(f"the long requests were answered before the places were all taken, {attempts} "
                               f"times: {[_peek(s) for s in answered]}")

    def _fill(self) -> bool:
        self.release()
        # Until the server has seen the connections closed, their places look taken, and would be given back
        # while a request under test is on its way.
        self._wait_for(lambda v: v.get("fastserve_admission_in_flight", 0) == 0 and v["fastserve_queue_rows"] == 0,
                       "places still held, or requests still queued")
        with contextlib.closing(self._send(self._one)) as s:  # admission's gate for the model, made at its first
            read_answer(s)                                      # request: its limit is read below
        self.longs = [self._send(self._long) for _ in range(self.LONG)]
        for s in self.longs:  # the health check in front of each long one: answered
            status, _, body = read_answer(s)
            if status != 200:
                raise RuntimeError(f"the health check before a long request was answered {status}: {body[:200]!r}")
        # The long ones are read, decoded and queued (but one, which may be running) before anything else comes,
        # so that the one-row requests that take the places queue behind them.
        self._wait_for(lambda v: v["fastserve_queue_rows"] >= (self._unanswered() - 1) * self.LONG_ROWS,
                       "the long requests were not queued")
        limit = math.ceil(model_values(self.url)["fastserve_admission_limit"])
        # Requests past the limit are refused at once, and hold nothing: one more than it takes.
        self.holders = [self._send(self._one) for _ in range(limit + 1)]
        self._wait_for(lambda v: not self.full() or v["fastserve_admission_in_flight"] >= v[
            "fastserve_admission_limit"], "admission's places were not all taken")
        return self.full()

    def ensure_full(self) -> None:
        if not self.full():
            self.fill()

    def release(self) -> None:
        """Close every connection: queued requests are dropped, their places given back."""
        for s in self.longs + self.holders:
            s.close()
        self.longs, self.holders = [], []


# --- a pool of aiohttp connections posting across a SIGTERM ---


@dataclass
class Result:
    kind: str  # "answered" (any HTTP status), "refused" (at connect: the listener closed), or "lost"
    after_signal: bool  # the request was begun after SIGTERM was sent
    after_close: bool  # ...after this client had read an answer saying `Connection: close`
    status: int = 0
    connection: str = ""  # the answer's Connection header
    error: str = ""  # the exception's repr, without the URL

    @property
    def closes(self) -> bool:
        return self.connection.lower() == "close"


@dataclass
class ShutdownRun:
    results: list[Result]
    exit_code: int | None

    def count(self, kind: str) -> int:
        return sum(r.kind == kind for r in self.results)

    def lost(self) -> list[Result]:
        return [r for r in self.results if r.kind == "lost"]

    def answered_after_signal(self) -> list[Result]:
        return [r for r in self.results if r.kind == "answered" and r.after_signal]

    def closing(self) -> list[Result]:
        """Answers that said `Connection: close`."""
        return [r for r in self.results if r.kind == "answered" and r.closes]

    def kept_open_after_close(self) -> list[Result]:
        """Answers without `Connection: close` to requests begun once the server had said it: sent after the
        server began to drain, they must be told to close too. (Whether an answer to a request begun between
        SIGTERM and the first such answer says it is up to the server: it may wait until its listener is closed,
        so that the clients it tells to close do not connect again into a backlog that the close would reset.)"""
        return [r for r in self.results if r.kind == "answered" and r.after_close and not r.closes]


async def _pooled_posts(url: str, proc: subprocess.Popen[bytes], requests_total: int, signal_after: int,
                        connections: int) -> list[Result]:
    results: list[Result] = []
    todo = iter(range(requests_total))
    answered = 0
    signalled = closing = False
    target = f"{url}{PREDICT}"

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal answered, signalled, closing
        for _ in todo:
            after_signal, after_close = signalled, closing
            try:
                async with session.post(target, data=ONE_ROW, headers=JSON) as r:
                    await r.read()
                    result = Result("answered", after_signal, after_close, r.status, r.headers.get("Connection", ""))
            except aiohttp.ClientConnectorError as exc:  # (a ClientOSError too: this test first)
                results.append(Result("refused", after_signal, after_close, error=repr(exc).replace(target, "")))
                continue
            except (aiohttp.ClientError, OSError) as exc:  # (TimeoutError is an OSError)
                results.append(Result("lost", after_signal, after_close, error=repr(exc).replace(target, "")))
                continue
            results.append(result)
            closing = closing or result.closes
            answered += 1
            if answered == signal_after and not signalled:
                proc.send_signal(signal.SIGTERM)
                signalled = True

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return results


def shutdown_run(url: str, proc: subprocess.Popen[bytes], requests_total: int = 600, signal_after: int = 300,
                 connections: int = 100) -> ShutdownRun:
    """`requests_total` one-row predicts to `churn`, from `connections` tasks sharing one pool of as many
    connections, SIGTERM sent to `proc` after `signal_after` answers; then the server's exit status (None if it
    has not exited 30 s later)."""
    results = asyncio.run(_pooled_posts(url, proc, requests_total, signal_after, connections))
    try:
        code: int | None = proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    return ShutdownRun(results, code)
