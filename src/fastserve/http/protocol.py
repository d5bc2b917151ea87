"""uvicorn's httptools protocol with the limits a server facing untrusted clients needs, and a server that shuts
down gracefully on SIGTERM.

uvicorn bounds neither how long a client may take to send its headers or body, nor their size, nor the number of
connections (its `limit_concurrency` answers a bare-text 503 without Retry-After): a few hundred slow clients would
hold the server. Here every connection keeps the phase it is in and when that began; one sweep a second closes
those past their deadline with a JSON answer, so the request path pays two assignments, not a timer each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fastserve.config import ConnectionLimits, ServerConfig
from fastserve.http.admission import Admission, AdmissionLimit
from fastserve.http.door_process import HAND_OVER, TOO_LARGE, HeaderBlock, raw_header_limit
from fastserve.http.errors import error_body, raw_answer
from fastserve.metrics import RequestStats

IDLE, HEADERS, BODY = 0, 1, 2  # what the connection waits for from its client
SWEEP_S = 1.0
_DEFER_ACCEPT_S = 1
# The sweep yields to the event loop after looking at this many connections, and after each one it closes (~20 us
# with its answer and connection_lost). A thousand slow clients time out together, so one pass may close them all:
# one at a time, requests from everyone else are read in between instead of waiting behind the whole pass.
SWEEP_STEP = 64
# A lingering close reads what a client still sends for at most this long in all, and this long with nothing.
LINGER_S, LINGER_IDLE_S = 5.0, 2.0
# After an answer sent before its request's body was read whole, the connection is kept (the rest read past) only
# where the rest is at most this long; else it closes, lingering.
READ_PAST_BYTES = 1024 * 1024
# The most that framing takes, beside what the parser hands over: per header (": ", line end, room for spaces), per
# body part (a chunk's size line in hex and its line ends), per request (method, version, line ends).
_HEADER_FRAMING, _PART_FRAMING, _REQUEST_FRAMING = 8, 24, 64
# A body may come in parts (chunks) this small on average once it has this many: each part is a parser callback and a
# copy, so 8 MiB in one-byte chunks would hold the loop for seconds.
MIN_PART_BYTES, FREE_PARTS = 64, 4096
log = logging.getLogger("fastserve.http")


class QuietNonHttpWarnings(logging.Filter):
    """uvicorn logs a warning per request that is not HTTP: hostile traffic would flood the log. They are counted in
    `fastserve_connections_refused_total{reason="bad_request"}` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


def refusal(status: int, code: str, message: str, retry_after: int | None = None) -> tuple[str, bytes]:
    """(reason, a whole HTTP/1.1 answer that closes the connection), for refusals made below the ASGI app."""
    return code, raw_answer(status, orjson.dumps(error_body(code, message)), retry_after=retry_after, close=True)


@functools.cache
def _headers_overdue(seconds: float) -> tuple[str, bytes]:
    return refusal(408, "request_timeout", f"request headers not received within {seconds:g} s")


@functools.cache
def parts_too_small() -> tuple[str, bytes]:
    return refusal(400, "bad_request", f"request body in chunks of under {MIN_PART_BYTES} bytes on average; send "
                   "larger chunks, or the body with a Content-Length")


@functools.cache
def _shutting_down() -> tuple[str, bytes]:
    return refusal(503, "shutting_down", "the server is shutting down; send the request again (to another "
                   "instance)", retry_after=1)


@functools.cache
def _door_stalled() -> tuple[str, bytes]:
    return refusal(503, "server_busy", "the server did not take the connection in time; try again shortly",
                   retry_after=1)


def defer_accepts(listeners: list[socket.socket]) -> None:
    """A connection is handed over when its first bytes come, or after _DEFER_ACCEPT_S if none do (the header
    deadline then closes it): accepting and reading the request take one wake-up instead of two, and a burst of
    clients that connect but write later is accepted as each writes, not all at once."""
    if hasattr(socket, "TCP_DEFER_ACCEPT"):  # Linux only
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, _DEFER_ACCEPT_S)


@functools.cache
def headers_too_large(limits: ConnectionLimits) -> tuple[str, bytes]:
    return refusal(431, "headers_too_large", f"request line and headers are over the limit of "
                   f"{limits.max_header_bytes} bytes or {limits.max_headers} headers")


def door_answers(limits: ConnectionLimits) -> dict[str, bytes]:
    """What the door process answers itself, by reason."""
    return dict([_headers_overdue(limits.header_timeout_s), headers_too_large(limits), _door_stalled(),
                 _shutting_down()])


def bind_listeners(host: str, port: int, backlog: int) -> list[socket.socket]:
    """A listening socket on each address the host name has, as uvicorn's own create_server binds; OSError when
    one cannot listen (those already made are closed)."""
    listeners: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, _, _, _, address in dict.fromkeys((f, t, p, c, a) for f, t, p, c, a in found):
            listeners.append(socket.create_server(address, family=family, backlog=backlog))
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    defer_accepts(listeners)
    return listeners


def rest_too_long(headers: list[tuple[bytes, bytes]], body_bytes: int) -> bool:
    """Whether what is still to come of a request's body (`body_bytes` read) is over READ_PAST_BYTES, or not known
    (chunked)."""
    length, chunked = None, False
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if length is None:
        return chunked
    try:
        return int(length) - body_bytes > READ_PAST_BYTES
    except ValueError:
        return True


def overdue(limits: ConnectionLimits, phase: int, elapsed: float, body_bytes: int) -> tuple[str, bytes] | None:
    """The answer that closes a connection whose client is too slow (in `phase` for `elapsed` s), else None."""
    if phase == HEADERS and elapsed > limits.header_timeout_s:
        return _headers_overdue(limits.header_timeout_s)
    if phase == BODY and elapsed > limits.header_timeout_s and body_bytes < limits.min_body_rate * elapsed:
        return refusal(408, "request_timeout", f"request body arriving at {body_bytes / elapsed:.0f} bytes/s, under "
                       f"the minimum of {limits.min_body_rate:g}")
    return None


def header_block_limit(limits: ConnectionLimits) -> int:
    return raw_header_limit(limits.max_header_bytes, limits.max_headers)


def write_refusal(transport: asyncio.Transport, counts: dict[str, int], answer: tuple[str, bytes]) -> bool:
    """Writes a refusal; False when the connection is closing already."""
    if transport.is_closing():
        return False
    reason, raw = answer
    counts[reason] = counts.get(reason, 0) + 1
    transport.write(raw)
    return True


class Lingering:
    """The close of a connection answered before its request was read whole: its side is shut once the answer is
    out (a FIN after it), and what the client still sends is read and dropped as it comes, until the client closes
    too, LINGER_S pass, or LINGER_IDLE_S pass with nothing. Closed at once instead, the unread bytes (or those still
    on their way) make the kernel send a reset, which destroys the answer before the client has read it: a client
    posting a body over the limit would see "connection reset", not the 413. nginx and Apache close the same way.
    The connection stays among the server's (it holds a descriptor, and counts for the connection limit) and costs
    the loop only its reads."""

    __slots__ = ("heard", "started", "timer", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.started = self.heard = time.monotonic()
        transport.resume_reading()  # (paused past the body limit, or behind a pipelined request)
        if transport.can_write_eof():
            transport.write_eof()  # after what is buffered: the answer goes first
        self.timer = asyncio.get_running_loop().call_later(LINGER_IDLE_S, self._check)

    def heard_from(self) -> None:
        self.heard = time.monotonic()

    def _check(self) -> None:
        now = time.monotonic()
        deadline = min(self.started + LINGER_S, self.heard + LINGER_IDLE_S)
        if now >= deadline:
            self.transport.close()
        else:
            self.timer = asyncio.get_running_loop().call_later(deadline - now, self._check)

    def end(self) -> None:
        self.timer.cancel()


def _nowhere(data: bytes | bytearray | memoryview) -> None:
    pass


class _Transport:
    """A connection's transport as uvicorn's protocol and its request cycles hold it: the real one's own methods
    (no wrapper on the request path), but a close goes to the protocol, which lingers while the client may still be
    sending (uvicorn closes at once after an answer that does not keep the connection, a 413 included)."""

    __slots__ = ("close", "get_extra_info", "is_closing", "pause_reading", "real", "resume_reading", "write")

    def __init__(self, real: asyncio.Transport, close: Any) -> None:
        self.real = real
        self.write, self.is_closing, self.get_extra_info = real.write, real.is_closing, real.get_extra_info
        self.pause_reading, self.resume_reading = real.pause_reading, real.resume_reading
        self.close = close

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def silence(self) -> None:
        """Writes from now on go nowhere (a request still being answered when the connection lingers)."""
        self.write = _nowhere


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection. `limits` and `max_body_bytes` are set on the class by `build_server`."""

    limits = ConnectionLimits()
    max_body_bytes = ServerConfig.max_body_bytes
    stats = RequestStats()
    refused_counts: dict[str, int] = {}
    admission: Admission | None = None
    head = b""  # what the door process read of the connection before passing it (set on the instance)
    door_waiting = 0  # connections the door held when it passed this one: open too, for the connection limit
    draining = False  # set on the class at SIGTERM: every answer from then on closes its connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = HEADERS  # a new connection owes its first request's headers
        self.phase_started = time.monotonic()
        self.body_bytes = 0
        self.body_parts = 0  # the parser's body callbacks for the current request: one per chunk, or per read
        self.header_bytes = 0
        self.header_count = 0
        self.header_bytes_read = 0  # bytes read since the request began, while its headers are incomplete
        # Bytes of this read the parser has gone past: what it handed to callbacks (URLs, headers, bodies), and for
        # each header and body part the most its framing can take (line ends, separators, chunk sizes), so that many
        # requests pipelined in one read are not counted as the last one's header bytes.
        self.read_parsed = 0
        self.over_capacity = False
        self.refused: tuple[str, bytes] | None = None  # set by a parser callback that stops the parse
        # The admission limit of the request being served, until it is answered.
        self.admission_limit: AdmissionLimit | None = None
        self.admitted_at = 0.0
        self.shed = False  # the current request was answered 503 at its headers: its body is read past
        self.unanswered = 0  # requests of this connection counted in `stats.received` (more when pipelined)
        self.lingering: Lingering | None = None
        self.proxy: _Transport | None = None  # the transport uvicorn's side holds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.proxy = _Transport(transport, self.close_transport)
        super().connection_made(self.proxy)  # type: ignore[arg-type]
        # Answered once its headers are read (a reply before the request would race the client's write).
        self.over_capacity = self.open_connections() > self.limits.max_connections
        if self.head:
            self.data_received(self.head)

    def open_connections(self) -> int:
        return len(self.connections) + self.door_waiting

    def refuse(self, answer: tuple[str, bytes]) -> None:
        """Answer and close a connection whose request has not been read whole."""
        if write_refusal(self.transport, self.refused_counts, answer):
            self._linger()

    def close_transport(self) -> None:
        """Every close of this connection: at once where its requests were read whole, else a lingering close."""
        if self.transport.is_closing() or self.lingering is not None:
            return
        assert self.proxy is not None  # (set at connection_made, before any close)
        if self.phase == IDLE:
            self.proxy.real.close()
        else:
            self._linger()

    def _linger(self) -> None:
        assert self.proxy is not None
        self.phase = IDLE
        self.lingering = Lingering(self.proxy.real)
        # A request still being answered (one a refused pipelined request came behind) writes nowhere now.
        self.proxy.silence()
        # Done with as on a disconnect: its request (and any pipelined behind it) ends, its places are given back.
        self._forget()
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        self.pipeline.clear()
        self._unset_keepalive_if_required()

    def send_400_response(self, msg: str) -> None:
        # The parser stopped: on a callback's refusal, or on input that is not HTTP.
        if self.lingering is None:
            self.refuse(self.refused or refusal(400, "bad_request", f"invalid HTTP request: {msg}"))

    def on_message_begin(self) -> None:
        if self.lingering is not None:  # a request pipelined behind the one refused: not read
            raise ValueError("lingering")
        super().on_message_begin()
        self.phase, self.phase_started = HEADERS, time.monotonic()
        self.header_bytes = self.header_count = 0
        self.header_bytes_read = -self.read_parsed  # what earlier requests took of this read is not theirs

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.read_parsed += _HEADER_FRAMING
        self._count_header(len(name) + len(value))
        super().on_header(name, value)

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        self.read_parsed += size
        limits = self.limits
        if self.header_bytes > limits.max_header_bytes or self.header_count > limits.max_headers:
            self.refused = headers_too_large(limits)
            raise ValueError("headers over the limit")  # stops the parser; data_received answers `refused`

    def data_received(self, data: bytes) -> None:
        if self.lingering is not None:
            self.lingering.heard_from()  # and dropped
            return
        self.read_parsed = 0
        super().data_received(data)
        # httptools holds a header's value until its line ends, however long: the bytes of reads that leave the
        # headers incomplete count too, so a line that never ends is refused as soon as it passes the limit. Of the
        # read in which the request began, what earlier requests took of it (their URLs, headers and bodies) is not
        # counted; their line ends are, a few bytes a header.
        if self.phase == HEADERS:
            read = self.header_bytes_read = max(self.header_bytes_read, -len(data)) + len(data)  # credit: this read
            if read > header_block_limit(self.limits):
                self.refuse(headers_too_large(self.limits))

    def on_headers_complete(self) -> None:
        if self.over_capacity:
            self.refused = refusal(503, "too_many_connections", f"the server has {self.open_connections()} open "
                                   "connections, over its limit; try again shortly", retry_after=1)
            raise ValueError("over capacity")
        self.phase, self.phase_started, self.body_bytes, self.body_parts = BODY, time.monotonic(), 0, 0
        admission = self.admission
        # A pipelined request (one still being answered on this connection) is not gated: answers go in order.
        if admission is not None and (self.cycle is None or self.cycle.response_complete):
            found = admission.limit_for(self.url)
            if found is not None:
                limit, v2 = found
                if limit.full():
                    self.shed = True  # what comes of its body is read past
                    # A client waiting on 100-continue may never send the body that would be read past: closed.
                    close = self.expect_100_continue or self.draining or self._rest_too_long()
                    self.transport.write(limit.answer(v2, close))
                    if close:
                        self.transport.close()
                    return
                self.admission_limit = limit  # counted in once its body is in: a slow body does not hold a place
        # The handler's task starts on the loop's next turn: counted now, a request read in the same turn as others
        # is known not to be alone, and waits for them to join its batch.
        self.unanswered += 1
        self.stats.received += 1
        super().on_headers_complete()
        if self.draining:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.read_parsed += len(body) + _PART_FRAMING
        self.body_parts += 1
        if self.body_parts > FREE_PARTS and self.body_parts * MIN_PART_BYTES > self.body_bytes:
            self.refused = parts_too_small()
            raise ValueError("body parts too small")  # stops the parser; send_400_response answers `refused`
        cycle = self.cycle
        if self.shed or cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.body += body
        # uvicorn pauses reading once 64 KB wait for the app: a trip through the event loop per 64 KB of a body the
        # app here reads whole before using it. The pause stays, at the size the app refuses anyway, for a handler
        # that does not read its body.
        if len(cycle.body) > self.max_body_bytes:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self.read_parsed += _REQUEST_FRAMING
        self.phase = IDLE  # the request is in; the app has it (keep-alive idling is uvicorn's own timer)
        if self.admission_limit is not None and not self.admitted_at:  # (a pipelined request after it is not gated)
            self.admission_limit.in_flight += 1
            self.admitted_at = time.monotonic()  # > 0: counted in
        if self.shed:
            self.shed = False
            if not self.parser.should_keep_alive():
                self.transport.close()
                return
            self.on_response_complete()  # arms keep-alive and reads the next request
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.admission_limit is not None:
            self._release(time.monotonic() - self.admitted_at)
        if self.unanswered:  # (not for a request shed at its headers, never counted)
            self.unanswered -= 1
            self.stats.received -= 1
        # Answered early, and too much of its body still to come to read past (a body being read while a request is
        # pipelined is that request's: it is read whole, and answered in its turn).
        if self.lingering is None and self.phase == BODY and not self.pipeline and self._rest_too_long():
            self._linger()
        if self.lingering is None:  # (else nothing more is read: no keep-alive, no pipelined request)
            super().on_response_complete()

    def _rest_too_long(self) -> bool:
        return rest_too_long(self.headers, self.body_bytes)

    def _release(self, seconds: float | None) -> None:
        limit, self.admission_limit = self.admission_limit, None
        if self.admitted_at and limit is not None:  # else refused before its body was in: never counted
            self.admitted_at = 0.0
            limit.release(seconds)

    def _forget(self) -> None:
        """Give back what the connection's unanswered requests hold: admission places, counts."""
        if self.admission_limit is not None:
            self._release(None)
        self.stats.received -= self.unanswered
        self.unanswered = 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lingering is not None:
            self.lingering.end()
        self._forget()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """At SIGTERM: a request under way is answered with Connection: close, as every answer from now on
        (`draining`). An idle kept-alive connection is not closed now but by its keep-alive timeout: a client that
        takes it from its pool meanwhile gets its request answered (and is told to close) instead of a reset. The
        race left is the keep-alive timeout's own, as on any HTTP/1.1 server: a client's idle timeout shorter than
        the server's avoids it (fastserve.client's is)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False

    def overdue(self, now: float) -> tuple[str, bytes] | None:
        return overdue(self.limits, self.phase, now - self.phase_started, self.body_bytes)


class Doorman(asyncio.Protocol):
    """Where the serving process accepts the connections itself (no door process, http/door.py), a new connection
    until its first request's header block is in. A slow or silent client costs this: a few
    attributes and a buffer, instead of uvicorn's protocol (its parser, flow control and the two system calls for
    the connection's addresses), and each byte it trickles costs an append, not a parser call. Once the block is
    complete, or the bytes are not HTTP, the connection is handed to `full` with what came, as if it had just been
    made; a block over the header limit is refused here. Kept in uvicorn's set of connections, so the limit, the
    sweep and the shutdown see it."""

    full: type[LimitedHttpToolsProtocol] = LimitedHttpToolsProtocol  # set on the class by `build_server`

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.args = (config, server_state, app_state, _loop)
        self.connections = server_state.connections
        self.transport: asyncio.Transport | None = None
        self.block = HeaderBlock(header_block_limit(self.full.limits))
        self.phase_started = 0.0
        self.lingering: Lingering | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.phase_started = time.monotonic()
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.lingering is not None:
            self.lingering.heard_from()
            return
        state = self.block.feed(data)
        if state == HAND_OVER:
            self.hand_over(bytes(self.block.received))
        elif state == TOO_LARGE:
            self.refuse(headers_too_large(self.full.limits))

    def hand_over(self, received: bytes) -> None:
        transport = self.transport
        assert transport is not None
        protocol = self.full(*self.args)
        self.connections.discard(self)
        self.transport = None  # a sweep that listed this doorman before now leaves it alone
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.lingering is not None:
            self.lingering.end()

    def overdue(self, now: float) -> tuple[str, bytes] | None:
        timeout = self.full.limits.header_timeout_s
        late = self.transport is not None and self.lingering is None and now - self.phase_started > timeout
        return _headers_overdue(timeout) if late else None

    def refuse(self, answer: tuple[str, bytes]) -> None:
        if self.transport is not None and self.lingering is None \
                and write_refusal(self.transport, self.full.refused_counts, answer):
            self.lingering = Lingering(self.transport)

    def shutdown(self) -> None:
        # One that sent nothing yet is closed, as uvicorn closes a connection with no request; bytes that came are
        # a request begun, answered (with Connection: close) once its head is in, or refused at its deadline.
        if self.transport is not None and self.lingering is None and not self.block.begun:
            self.transport.close()
