# cython: language_level=3
"""fastserve's own HTTP/1.1 connection protocol, compiled, the default (`--http asgi` serves on uvicorn's instead):
httptools (llhttp) parses; the request's ASGI cycle runs with no uvicorn RequestResponseCycle between the parser and
the app (its body handed over whole, its answer framed and written here in one piece, the prediction routes with no
asyncio Task); the limits of http/protocol.py kept (header bytes and count, body size and parts, the connection
limit, admission at the headers, the sweep's deadlines, lingering closes, draining at SIGTERM).
"""

import asyncio
import http
import logging
import time
from collections import deque

import httptools

from fastserve.exceptions import ClientGone, VersionCold
from fastserve.http.predict import NativeWire, predict_target
from fastserve.http.serving import CLIENT_CLOSED, Prediction, check_declared, check_read
from fastserve.http.v2.infer import V2Wire, infer_target
from fastserve.http.protocol import (
    FREE_PARTS,
    MIN_PART_BYTES,
    Lingering,
    write_refusal,
    headers_too_large,
    parts_too_small,
    header_block_limit,
    overdue,
    refusal,
    rest_too_long,
)

log = logging.getLogger("fastserve.http")


cdef enum:  # the phases of http/protocol.py: what the connection waits for from its client
    IDLE = 0
    HEADERS = 1
    BODY = 2


cdef dict _STATUS_LINES = {}
for _status in http.HTTPStatus:
    _STATUS_LINES[_status.value] = f"HTTP/1.1 {_status.value} {_status.phrase}\r\n".encode()


cdef bytes _status_line(int status):
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n".encode()


cdef bytes _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes _DATE = b""
cdef double _DATE_AT = 0.0


cdef bytes _date_line():
    # one formatted Date a second, as uvicorn does
    global _DATE, _DATE_AT
    cdef double now = time.time()
    if now - _DATE_AT >= 1.0:
        _DATE_AT = now
        _DATE = b"date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode() + b"\r\n"
    return _DATE


class Settings:
    """What every connection of a server shares: set once by `build_server`."""

    def __init__(self, app, limits, max_body_bytes, stats, refused_counts, admission, keep_alive_s, root_path=""):
        self.app = app
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.stats = stats
        self.refused_counts = refused_counts
        self.admission = admission
        self.keep_alive_s = keep_alive_s
        self.root_path = root_path
        self.draining = False  # from the listeners' close at SIGTERM: every answer closes its connection
        self.raw_header_limit = header_block_limit(limits)

    def __call__(self, config=None, server_state=None, app_state=None, _loop=None):
        """A new connection's protocol, made as uvicorn makes its own."""
        return HttpConnection(self, config, server_state, app_state, _loop)


cdef dict _ROUTES = {}  # path -> (its wire's class, model, version or None), or None: not a prediction
cdef Py_ssize_t _ROUTES_KEPT = 1024


cdef object _prediction_route(str path):
    """The prediction route a path names, read once per path (the paths a server sees are few; any others only
    churn the cache, which is bounded)."""
    try:
        return _ROUTES[path]
    except KeyError:
        pass
    route = None
    target = predict_target(path)
    if target is not None:
        route = (NativeWire, target[0], target[1])
    else:
        target = infer_target(path)
        if target is not None:
            route = (V2Wire, target[0], target[1])
    if len(_ROUTES) >= _ROUTES_KEPT:
        _ROUTES.clear()
    _ROUTES[path] = route
    return route


cdef class Cycle:
    """One request, from its parsed head and whole body to its answer. A prediction (`predict`, V2 `infer`) is
    answered here, from the batch's completion (it is the batcher's waiter), with no coroutine, Task or ASGI message;
    any other route runs as an ASGI app task, with this cycle's receive and send."""

    cdef HttpConnection conn
    cdef str method
    cdef str path
    cdef object url        # httptools' parsed URL
    cdef list headers
    cdef object http_version
    cdef public dict scope  # made for the routes that take one (not the predictions)
    cdef list parts        # the body as read so far
    cdef Py_ssize_t size
    cdef bint body_done    # read whole (or past the limit: what came is handed over, the app refuses it)
    cdef bint body_given
    cdef bint expect_continue
    cdef object body_ready # a future the app waits on for a body still coming
    cdef public bint started
    cdef public bint complete
    cdef public bint keep_alive
    cdef bint chunked
    cdef bint head_only
    cdef object disconnected  # an asyncio.Event, made only when the app waits past its body
    cdef bytes head  # the answer's head, written with the first part of its body: one write (a system call) each
    # a prediction
    cdef object prediction  # http/serving.Prediction
    cdef bint waits_for_body
    cdef bint gone         # the connection was lost (or lingers): nothing more is written
    cdef object batcher    # where the request is queued (with its ticket), to leave it if the client goes
    cdef long long ticket
    cdef object cold_timer  # while it waits for its version's load on demand: its deadline
    cdef double cold_deadline  # (loop time) for every wait of the request, however many loads it waits for
    cdef bint cold_failed  # the load it waited for failed (or was refused): it is answered 503, not waited again

    def __cinit__(self, HttpConnection conn, str method, str path, object url, list headers, object http_version,
                  bint keep_alive, bint expect_continue):
        self.conn = conn
        self.method, self.path, self.url, self.headers, self.http_version = method, path, url, headers, http_version
        self.parts = []
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_only = method == "HEAD"
        self.ticket = -1

    cdef add(self, bytes part, Py_ssize_t limit):
        """Part of the body; past `limit` the body so far is handed over as whole (the app refuses it)."""
        if self.body_done:
            return
        self.parts.append(part)
        self.size += len(part)
        if self.size > limit:
            self.keep_alive = False  # the rest is not read: the connection closes after the answer
            self.whole()

    cdef whole(self):
        if not self.body_done:
            self.body_done = True
            if self.body_ready is not None and not self.body_ready.done():
                self.body_ready.set_result(None)
            if self.waits_for_body:
                self.waits_for_body = False
                self.conn.loop.call_soon(self.run_prediction)  # (not inside the parser's callback)

    cdef bytes body(self):
        body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        return body

    async def receive(self):
        if not self.body_given:
            if not self.body_done:
                if self.expect_continue and not self.started:
                    self.expect_continue = False
                    self.conn.write(_CONTINUE)
                self.body_ready = self.conn.loop.create_future()
                await self.body_ready
                if not self.body_done:  # the connection was lost meanwhile
                    return {"type": "http.disconnect"}
            self.body_given = True
            return {"type": "http.request", "body": self.body(), "more_body": False}
        if self.conn.transport is None or self.complete:
            return {"type": "http.disconnect"}
        if self.disconnected is None:
            self.disconnected = asyncio.Event()
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    def lost(self):
        self.gone = True
        if self.disconnected is not None:
            self.disconnected.set()
        if self.body_ready is not None and not self.body_ready.done():
            self.body_ready.set_result(None)
        if self.prediction is not None and not self.complete:
            if self.cold_timer is not None:
                self.cold_timer.cancel()
                self.cold_timer = None
                self.set_exception(ClientGone("client disconnected while its model was loading"))
            elif self.batcher is not None:
                self.batcher.abandon(self.ticket)  # answers set_exception(ClientGone) unless its batch runs
            elif self.waits_for_body:
                self.waits_for_body = False
                self.set_exception(ClientGone("client disconnected while sending its body"))

    # --- a prediction, answered here ------------------------------------------------------------------------------

    def begin_prediction(self):
        """At the request's turn on its connection (a loop turn after its headers, so that requests read together are
        all counted before any runs, and batch): its headers, then its body once whole."""
        if self.gone:
            self.end_prediction(CLIENT_CLOSED)
            return
        p = self.prediction
        try:
            check_declared(p.head(self.method, self.headers), self.conn.settings.max_body_bytes)
        except Exception as exc:
            self.set_exception(exc)
            return
        if self.body_done:
            self.run_prediction()
            return
        if self.expect_continue:
            self.expect_continue = False
            self.conn.write(_CONTINUE)
        self.waits_for_body = True

    def run_prediction(self):
        if self.gone:
            self.end_prediction(CLIENT_CLOSED)
            return
        p = self.prediction
        try:
            check_read(self.size, self.conn.settings.max_body_bytes)
            body = self.body()
            batcher, x, deadline, alone = p.prepare(body, self.headers)
            outputs, ticket = batcher.enter(x, deadline, alone, self)
        except VersionCold as cold:
            self.parts = [body]  # read again once the version is loaded
            self.wait_for_load(cold)
            return
        except Exception as exc:
            self.set_exception(exc)
            return
        if outputs is not None:
            self.set_result(outputs)
        else:
            self.batcher, self.ticket = batcher, ticket

    cdef wait_for_load(self, cold):
        """Its version is being loaded on demand: the request runs once it is (waiting again should the version be
        evicted again meanwhile), or is refused (503) at its deadline, or once a load it waited for failed."""
        loop = self.conn.loop
        if self.cold_failed:
            self.set_exception(cold)
            return
        if self.cold_deadline == 0:
            self.cold_deadline = loop.time() + self.prediction.cold_wait_s()
        self.cold_timer = loop.call_at(self.cold_deadline, self._cold_overdue, cold)
        cold.loading.add_done_callback(self._loaded)

    def _loaded(self, loading):
        if self.cold_timer is None:  # (answered meanwhile: overdue, or the client left)
            return
        self.cold_timer.cancel()
        self.cold_timer = None
        self.cold_failed = loading.cancelled() or loading.exception() is not None
        self.run_prediction()

    def _cold_overdue(self, cold):
        self.cold_timer = None
        self.set_exception(cold)

    # the batcher's waiter (batching.Waiter)
    def done(self):
        return self.complete

    def set_result(self, outputs):
        self.batcher = None
        try:
            body, headers = self.prediction.answer(outputs)
        except Exception as exc:
            self.set_exception(exc)
            return
        self.reply(200, body, headers)

    def set_exception(self, error):
        self.batcher = None
        if isinstance(error, ClientGone):
            self.end_prediction(CLIENT_CLOSED)
            return
        try:
            status, body, headers = self.prediction.error(error)
        except Exception:
            log.exception("answering an error failed")
            status, body, headers = 500, b"Internal Server Error", [(b"content-type", b"text/plain; charset=utf-8")]
        self.reply(status, body, headers)

    cdef reply(self, int status, bytes body, list headers):
        cdef list parts
        if self.complete:
            return
        self.end_prediction(status)
        self.started = True
        parts = [_status_line(status), _date_line(), b"content-length: %d\r\n" % len(body)]
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
        if self.conn.settings.draining or (not self.body_done and self.conn._rest_too_long()):
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if not self.head_only:
            parts.append(body)
        self.complete = True
        if not self.gone:
            self.conn.write(b"".join(parts))
        self.conn.answered(self)

    cdef end_prediction(self, int status):
        p, self.prediction = self.prediction, None
        if p is not None:
            p.end(status)

    # --- any other route: its ASGI send ---------------------------------------------------------------------------

    async def send(self, dict message):
        cdef str kind = message["type"]
        cdef list parts
        cdef bytes name, value, lower
        cdef object length = None
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the response has started already")
            self.started = True
            parts = [_status_line(message["status"]), _date_line()]
            for name, value in message.get("headers", ()):
                lower = name.lower()
                if lower == b"content-length":
                    length = value
                elif lower == b"connection" and value.lower() == b"close":
                    self.keep_alive = False
                parts.append(name + b": " + value + b"\r\n")
            # Answered before its body was read whole: kept only where the rest is short enough to read past.
            if self.conn.settings.draining or (not self.body_done and self.conn._rest_too_long()):
                self.keep_alive = False
            if length is None and not self.head_only and message["status"] not in (204, 304):
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            if not self.keep_alive:
                parts.append(b"connection: close\r\n")
            parts.append(b"\r\n")
            self.head = b"".join(parts)
            return
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("a response body before its start")
            if self.complete:
                return
            if self.conn.write_paused and self.conn.transport is not None:  # a client slow to read: wait for it
                await self.conn.drained()
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.head_only:
                body = b""
            if self.chunked:
                if body:
                    body = f"{len(body):x}\r\n".encode() + body + b"\r\n"
                if not more:
                    body += b"0\r\n\r\n"
            if self.head is not None:
                body, self.head = self.head + body, None
            if body:
                self.conn.write(body)
            if not more:
                self.complete = True
                self.conn.answered(self)
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r}")


cdef class HttpConnection:
    """One client connection, made by its server's `Settings` as uvicorn makes its protocols."""

    cdef public object settings
    cdef public object transport
    cdef object parser
    cdef object loop
    cdef object server_state
    cdef object app_state
    cdef public set connections
    cdef public bytes head  # what the door process read of the connection before passing it
    cdef object server_address
    cdef object client_address
    cdef public int door_waiting
    # the request being read
    cdef object url
    cdef list headers
    cdef Cycle reading  # the request whose body is being read (None after a shed or refused head)
    cdef Py_ssize_t body_bytes
    cdef Py_ssize_t body_parts_n
    cdef Py_ssize_t header_bytes
    cdef int header_count
    cdef Py_ssize_t header_bytes_read
    cdef Py_ssize_t read_parsed
    cdef bint expect_continue
    cdef public int phase
    cdef public double phase_started
    cdef bint over_capacity
    cdef object refused  # set by a parser callback that stops the parse
    cdef public object admission_limit
    cdef public double admitted_at
    cdef bint shed
    cdef int unanswered
    # the request being answered, and those pipelined behind it
    cdef public Cycle cycle
    cdef object pending  # deque of Cycle
    cdef object task_done
    cdef double idle_since  # (monotonic) answered everything and waiting for the next request; 0: not idle
    cdef public object lingering
    cdef bint reading_paused
    cdef Cycle deferred  # a request whose headers this read brought: it starts once the read is parsed
    cdef public bint write_paused  # the transport's buffer is over its high-water mark
    cdef object drain_waiter

    def __init__(self, settings, config=None, server_state=None, app_state=None, _loop=None):
        self.settings = settings
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.loop = _loop or asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.head = b""
        self.pending = deque()
        self.headers = []
        self.phase = HEADERS
        self.phase_started = time.monotonic()
        self.task_done = self._task_done

    # --- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        server, client = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        self.server_address = tuple(server[:2]) if isinstance(server, tuple) else None
        self.client_address = tuple(client[:2]) if isinstance(client, tuple) else None
        self.connections.add(self)
        self.over_capacity = self.open_connections() > self.settings.limits.max_connections
        if self.head:
            self.data_received(self.head)

    def connection_lost(self, exc):
        self.connections.discard(self)
        if self.lingering is not None:
            self.lingering.end()
        self._forget()
        self.idle_since = 0.0
        if self.cycle is not None:
            self.cycle.lost()
        for cycle in self.pending:
            (<Cycle>cycle).lost()
        self._wake_writer()
        self.transport = None

    def eof_received(self):
        pass

    def pause_writing(self):
        self.write_paused = True

    def resume_writing(self):
        self.write_paused = False
        self._wake_writer()

    cdef _wake_writer(self):
        if self.drain_waiter is not None:
            if not self.drain_waiter.done():
                self.drain_waiter.set_result(None)
            self.drain_waiter = None

    def drained(self):
        """A future done once the transport takes writes again (or the connection is gone)."""
        if self.drain_waiter is None:
            self.drain_waiter = self.loop.create_future()
        return self.drain_waiter

    def open_connections(self):
        return len(self.connections) + self.door_waiting

    def data_received(self, bytes data):
        if self.lingering is not None:
            self.lingering.heard_from()
            return
        self.idle_since = 0.0
        self.read_parsed = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.deferred = None
            self.refuse(refusal(400, "bad_request", "protocol upgrades are not supported"))
            return
        except httptools.HttpParserError as exc:
            self.deferred = None
            self.refuse(self.refused or refusal(400, "bad_request", f"invalid HTTP request: {exc}"))
            return
        if self.deferred is not None:
            # Started once the read is parsed: a request whose body came in the same read is answered at once.
            cycle, self.deferred = self.deferred, None
            self._run_cycle(cycle)
        if self.phase == HEADERS and self.lingering is None:
            self.header_bytes_read = max(self.header_bytes_read, -len(data)) + len(data)
            if self.header_bytes_read > self.settings.raw_header_limit:
                self.refuse(headers_too_large(self.settings.limits))

    # --- the parser's callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self):
        if self.lingering is not None:
            raise ValueError("lingering")
        self.url = None
        self.headers = []
        self.reading = None
        self.body_bytes = self.body_parts_n = 0
        self.expect_continue = self.shed = False
        self.phase, self.phase_started = HEADERS, time.monotonic()
        self.header_bytes = self.header_count = 0
        self.header_bytes_read = -self.read_parsed

    def on_url(self, bytes url):
        self._count_header(len(url))
        self.url = url if self.url is None else self.url + url

    def on_header(self, bytes name, bytes value):
        self.header_count += 1
        self.read_parsed += 8
        self._count_header(len(name) + len(value))
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    cdef _count_header(self, Py_ssize_t size):
        self.header_bytes += size
        self.read_parsed += size
        limits = self.settings.limits
        if self.header_bytes > limits.max_header_bytes or self.header_count > limits.max_headers:
            self.refused = headers_too_large(limits)
            raise ValueError("headers over the limit")

    def on_headers_complete(self):
        settings = self.settings
        if self.over_capacity:
            self.refused = refusal(503, "too_many_connections", f"the server has {self.open_connections()} open "
                                   "connections, over its limit; try again shortly", retry_after=1)
            raise ValueError("over capacity")
        self.phase, self.phase_started = BODY, time.monotonic()
        admission = settings.admission
        # (before the body's size: an overloaded model refuses at the headers whatever is to come)
        if admission is not None and self.cycle is None:
            found = admission.limit_for(self.url)
            if found is not None:
                limit, v2 = found
                if limit.full():
                    self.shed = True
                    close = self.expect_continue or settings.draining or self._rest_too_long()
                    self.write(limit.answer(v2, close))
                    if close:
                        self.close()
                    return
                self.admission_limit = limit
        # The app starts now (its body comes whole through `receive`), as a request in flight from its headers.
        self.unanswered += 1
        settings.stats.received += 1
        url = httptools.parse_url(self.url)
        path = url.path.decode("utf-8", "surrogateescape")
        if "%" in path:
            from urllib.parse import unquote
            path = unquote(path)
        parser = self.parser
        cycle = self.reading = Cycle(self, parser.get_method().decode("ascii"), path, url, self.headers,
                                     parser.get_http_version(), parser.should_keep_alive() and not settings.draining,
                                     self.expect_continue)
        if self.cycle is None:
            self.cycle = self.deferred = cycle
        else:  # pipelined: answered in order, reading paused until it is its turn
            self.pending.append(cycle)
            if not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()

    def on_body(self, bytes body):
        self.body_bytes += len(body)
        self.read_parsed += len(body) + 24
        self.body_parts_n += 1
        if self.body_parts_n > FREE_PARTS and self.body_parts_n * MIN_PART_BYTES > self.body_bytes:
            self.refused = parts_too_small()
            raise ValueError("body parts too small")
        if self.reading is not None:
            self.reading.add(body, self.settings.max_body_bytes)

    def on_message_complete(self):
        self.read_parsed += 64
        self.phase = IDLE
        if self.lingering is not None:
            return
        if self.admission_limit is not None and not self.admitted_at:
            self.admission_limit.in_flight += 1
            self.admitted_at = time.monotonic()
        if self.shed:
            self.shed = False
            if not self.parser.should_keep_alive():
                self.close()
            else:
                self._next()
            return
        if self.reading is not None:
            self.reading.whole()
            self.reading = None
        if self.cycle is None and not self.pending and self.transport is not None:
            self._next()  # answered before its body was read past: now idle, on the keep-alive timer

    cdef dict _scope(self, Cycle cycle):
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": cycle.http_version,
            "server": self.server_address,
            "client": self.client_address,
            "scheme": "http",
            "method": cycle.method,
            "root_path": self.settings.root_path,
            "path": cycle.path,
            "raw_path": cycle.url.path,
            "query_string": cycle.url.query or b"",
            "headers": cycle.headers,
            "state": dict(self.app_state) if self.app_state else {},
        }

    # --- answers -------------------------------------------------------------------------------------------------

    cdef _start(self, Cycle cycle):
        self.cycle = cycle
        self._run_cycle(cycle)

    cdef _run_cycle(self, Cycle cycle):
        if self.write_paused and self.transport is not None:
            # A client slow to read its answers: the next request starts once the transport takes writes again.
            self.drained().add_done_callback(lambda _: self._run_cycle(cycle))
            return
        path = cycle.path
        route = _prediction_route(path)
        if route is not None:
            wire_class, name, version = route
            cycle.prediction = Prediction(self.settings.app, wire_class(), name, version, path)
            self.loop.call_soon(cycle.begin_prediction)
            return
        cycle.scope = self._scope(cycle)
        task = self.loop.create_task(self._run(cycle))  # the other routes: Starlette's, as an ASGI task
        self.server_state.tasks.add(task)
        task.add_done_callback(self.task_done)

    def _task_done(self, task):
        self.server_state.tasks.discard(task)

    async def _run(self, Cycle cycle):
        try:
            await self.settings.app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:
            log.error("exception in the ASGI application", exc_info=exc)
            if not cycle.started:
                await cycle.send({"type": "http.response.start", "status": 500,
                                  "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                              (b"content-length", b"21")]})
                await cycle.send({"type": "http.response.body", "body": b"Internal Server Error"})
            elif not cycle.complete:
                cycle.keep_alive = False
                self.close()
            if not isinstance(exc, Exception):
                raise
        else:
            if not cycle.started and self.transport is not None:
                cycle.keep_alive = False
                await cycle.send({"type": "http.response.start", "status": 500,
                                  "headers": [(b"content-length", b"0")]})
                await cycle.send({"type": "http.response.body", "body": b""})
            elif not cycle.complete and self.transport is not None:
                cycle.keep_alive = False
                self.close()

    cdef write(self, bytes data):
        if self.transport is not None and self.lingering is None:
            self.transport.write(data)

    cdef answered(self, Cycle cycle):
        """The cycle's answer is out: the next pipelined request, or keep-alive, or the close."""
        if self.admission_limit is not None:
            self._release(time.monotonic() - self.admitted_at)
        if self.unanswered:
            self.unanswered -= 1
            self.settings.stats.received -= 1
        self.cycle = None
        if self.transport is None:
            return
        if not cycle.keep_alive:
            self.close()
            return
        if not cycle.body_done and self._rest_too_long():  # answered early; too much of its body still to come
            self._linger()
            return
        self._next()

    cdef _next(self):
        if self.pending:
            self._start(self.pending.popleft())
            if not self.pending and self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.phase == IDLE:
            # Closed by the server's sweep once idle for the keep-alive timeout (within SWEEP_S after it): a loop
            # timer armed here and cancelled at the next request cost about 1.5 µs a request.
            self.idle_since = time.monotonic()

    cdef bint _rest_too_long(self):
        return rest_too_long(self.headers, self.body_bytes)

    # --- closes --------------------------------------------------------------------------------------------------

    def refuse(self, answer):
        """Answer and close a connection whose request has not been read whole."""
        if self.transport is not None and self.lingering is None \
                and write_refusal(self.transport, self.settings.refused_counts, answer):
            self._linger()

    def close(self):
        if self.transport is None or self.transport.is_closing() or self.lingering is not None:
            return
        if self.phase == IDLE:
            self.transport.close()
        else:
            self._linger()

    cdef _linger(self):
        self.phase = IDLE
        self.lingering = Lingering(self.transport)
        self._forget()
        self.pending.clear()
        if self.cycle is not None:
            self.cycle.lost()

    cdef _release(self, seconds):
        limit, self.admission_limit = self.admission_limit, None
        if self.admitted_at:
            self.admitted_at = 0.0
            limit.release(seconds)

    cdef _forget(self):
        if self.admission_limit is not None:
            self._release(None)
        self.settings.stats.received -= self.unanswered
        self.unanswered = 0

    def shutdown(self):
        """At SIGTERM (uvicorn's Server.shutdown): the request under way closes its connection once answered; an
        idle connection is left to its keep-alive timer, so a client sending on it meanwhile is answered."""
        if self.cycle is not None:
            self.cycle.keep_alive = False
        for cycle in self.pending:
            cycle.keep_alive = False

    def overdue(self, double now):
        if self.lingering is not None or self.transport is None:
            return None
        if self.idle_since and self.phase == IDLE and self.cycle is None \
                and now - self.idle_since > self.settings.keep_alive_s:
            self.idle_since = 0.0
            self.transport.close()
            return None
        return overdue(self.settings.limits, self.phase, now - self.phase_started, self.body_bytes)
