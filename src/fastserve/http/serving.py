"""One path from a prediction request's body to its answer, shared by the native predict route and the V2 infer route.

Each route brings its wire format (a `Wire`: which headers it reads, how the body decodes into the model's input,
how answers and errors are written); everything else happens here once, for both: the body size limit, the model
lookup, the version choice (pinned in the path, canary, primary), the batcher with the request's deadline, the
canary's guard, the shadows' copies, and the request's metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
from time import monotonic, monotonic_ns, perf_counter
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np

from fastserve.exceptions import (
    BodyTooLarge,
    ClientGone,
    FastserveError,
    InferenceError,
    MethodNotAllowed,
    RequestError,
    VersionCold,
)
from fastserve.http.errors import error_headers
from fastserve.http.inputs import Inputs, timeout_ms
from fastserve.registry.feedback import keep_answer
from fastserve.registry.models import READY
from fastserve.routing.router import choose
from fastserve.routing.routes import routes_of

if TYPE_CHECKING:
    from fastserve.batching import Batcher
    from fastserve.config import ServerConfig
    from fastserve.metrics import Metrics
    from fastserve.registry import LoadedModel, LoadedVersion, Registry
    from fastserve.runtime import ModelSession

log = logging.getLogger("fastserve.http")


class ServingApp(Protocol):
    """What a prediction's path needs of the application (`http/app.py`)."""

    @property
    def config(self) -> ServerConfig: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def metrics(self) -> Metrics: ...

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]
Outputs = dict[str, np.ndarray]
CLIENT_CLOSED = 499  # counted in metrics only: nobody is left to answer
COLD_WAIT_S = 30.0  # a request for an evicted version waits this long for its load, unless it says less


class Wire(Protocol):
    """One request in one wire format: made per request, so it may keep what it read for the later steps."""

    def start(self, headers: Headers) -> tuple[bytes | None, bytes | None, bytes | None]:
        """Read the request's headers, once: (Content-Length, X-Request-Timeout-Ms, X-Request-Id). Raises on one
        it refuses."""

    def body_id(self) -> str | None:
        """The request's id as its body gives it (V2's `id`), once decoded."""

    def decode(self, body: bytes, model: LoadedModel) -> Any:
        """Decode the body; returns what routing reads a canary's sticky key from (a `records` or `columns`
        object)."""

    def inputs(self, target: LoadedVersion, session: ModelSession) -> Inputs:
        """The chosen version's input matrix from the decoded body, the body's own timeout in milliseconds, and,
        when the version's drift monitor sketches raw fields and the body has them, their raw codes."""

    def answer(self, target: LoadedVersion, outputs: Outputs) -> tuple[bytes, Headers]:
        """The answer's body and headers, Content-Type included."""

    def error(self, exc: FastserveError) -> tuple[int, bytes, bytes]:
        """An error answer's status, body and Content-Type."""


def model_path(path: str, root: str, action: str) -> tuple[str, str | None] | None:
    """(model, version or None) for `{root}{name}[/versions/{v}]{action}`, else None."""
    if not path.startswith(root) or not path.endswith(action):
        return None
    parts = path[len(root):len(path) - len(action)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


def check_declared(content_length: bytes | None, limit: int) -> None:
    """Refuse a body from its Content-Length, before any of it is read."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise RequestError(f"invalid Content-Length {content_length.decode('latin-1')!r}") from None
    if declared > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes",
                           detail={"limit": limit, "declared": declared})


def check_read(size: int, limit: int) -> None:
    """Refuse a body whose bytes, counted as they came, passed the limit."""
    if size > limit:
        raise BodyTooLarge(f"body is over the limit of {limit} bytes", detail={"limit": limit})


async def read_body(receive: Any, content_length: bytes | None, limit: int) -> bytes:
    """The whole body, refused from its Content-Length, or while counting bytes, once over `limit`."""
    check_declared(content_length, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone("client disconnected while sending its body")
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        check_read(len(body), limit)
        return body
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("client disconnected while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        check_read(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_bytes(send: Any, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Prediction:
    """One prediction request on `name` (and `version` when the path names one) in `wire`'s format, in the steps its
    connection drives: `head` at the headers, `prepare` once the body is whole (what the batcher takes), then
    `answer` with the outputs or `error` with what went wrong, and `end` once, with the status sent.

    The ASGI route (`serve`) and the compiled protocol (http/_protocol.pyx, which answers from the batch's
    completion with no coroutine) drive the same steps."""

    __slots__ = ("app", "arrived_ns", "model", "model_label", "name", "on_canary", "path", "raw", "request_id",
                 "started", "stats", "target", "timeout_header", "version", "version_label", "wire", "x")

    def __init__(self, app: ServingApp, wire: Wire, name: str, version: str | None, path: str) -> None:
        self.started = perf_counter()
        self.arrived_ns = monotonic_ns()
        self.app, self.wire, self.name, self.version, self.path = app, wire, name, version, path
        self.stats = stats = app.metrics.stats
        stats.in_flight += 1
        self.model_label = self.version_label = ""
        self.timeout_header: bytes | None = None
        self.model: LoadedModel | None = None
        self.target: LoadedVersion | None = None
        self.on_canary = False
        self.x: np.ndarray | None = None
        self.raw: np.ndarray | None = None
        self.request_id: str | None = None

    def head(self, method: str, headers: Headers) -> bytes | None:
        """Read the headers; returns the Content-Length. Raises a refusal."""
        content_length, self.timeout_header, request_id = self.wire.start(headers)
        if request_id is not None:
            self.request_id = client_request_id(request_id)
        if method != "POST":
            raise MethodNotAllowed(f"{self.path} takes POST, got {method}", allow="POST")
        return content_length

    def prepare(self, body: bytes, headers: Headers) -> tuple[Batcher, np.ndarray, int, bool]:
        """The whole body into (the chosen version's batcher, the input matrix, its deadline, whether it is the only
        request in the server). Raises a refusal."""
        registry = self.app.registry
        self.model = model = registry.model(self.name)
        registry.used.add(self.name)
        primary = model.primary
        if self.version is None and primary is not None and primary.state != READY:
            self._cold(model, primary)  # (the body is read with the primary's session: once it is loaded)
        payload = self.wire.decode(body, model)
        route = choose(model, self.version, payload, headers)
        self.target, self.on_canary = target, _ = route.version, route.canary
        self.model_label, self.version_label = target.model, str(target.number)
        target.calls += 1
        serving = route.serving
        if serving is None:
            self._cold(model, target)
        self.x, timeout, self.raw = self.wire.inputs(target, serving.session)
        if self.timeout_header is not None:
            timeout = _header_timeout(self.timeout_header, timeout)
        batcher = serving.batcher
        stats = self.stats
        return (batcher, self.x, batcher.deadline_ns(self.arrived_ns, timeout),
                stats.in_flight == 1 and stats.received <= 1)

    async def prepare_loaded(self, body: bytes, headers: Headers) -> tuple[Batcher, np.ndarray, int, bool]:
        """`prepare`, waiting for the version's load on demand (again, should it be evicted again meanwhile) within
        the request's deadline; 503 past it, or once a load it waited for failed."""
        until = None
        while True:
            try:
                return self.prepare(body, headers)
            except VersionCold as cold:
                now = monotonic()
                until = until or now + self.cold_wait_s()
                try:
                    await asyncio.wait_for(asyncio.shield(cold.loading), max(0.0, until - now))
                except Exception:  # past the deadline, or the load failed
                    raise cold from None

    def _cold(self, model: LoadedModel, version: LoadedVersion) -> NoReturn:
        """Evicted under the budget of loaded versions (or being evicted): the request waits for its load."""
        version.calls += 1
        raise VersionCold(f"{version.label} is not loaded and could not be within the request's deadline; retry",
                          loading=self.app.registry.warm(model, version),
                          detail={"model": model.name, "version": version.number})

    def cold_wait_s(self) -> float:
        """How long the request waits for its version's load on demand: its X-Request-Timeout-Ms, else
        COLD_WAIT_S."""
        if self.timeout_header is not None:
            return _header_timeout(self.timeout_header, None) / 1000.0
        return COLD_WAIT_S

    def answer(self, outputs: Outputs) -> tuple[bytes, Headers]:
        """The run's outputs: drift, the canary's guard, the shadows' copies; the answer's body and headers."""
        target, model, x = self.target, self.model, self.x
        assert target is not None and model is not None and x is not None  # (set by prepare, before any run)
        if self.raw is not None:  # (set only for a version whose drift monitor sketches raw fields)
            target.drift.observe_fields(self.raw)
        if self.version is None:
            routes = routes_of(model)
            if routes.canary is not None:
                routes.record(self.on_canary, perf_counter() - self.started, False, outputs.get("label"))
            if routes.shadows and not self.on_canary:
                for runner in routes.shadows.values():
                    runner.offer(x, outputs)
        request_id = self.identify()
        if target.config.feedback.enabled:
            keep_answer(model, target.number, request_id, outputs)
        body, headers = self.wire.answer(target, outputs)
        headers.append((b"x-request-id", request_id.encode()))
        return body, headers

    def identify(self) -> str:
        """The request's id: the client's X-Request-Id, else V2's body `id` (when it can travel in a header), else
        one made here."""
        request_id = self.request_id
        if request_id is None:
            body_id = self.wire.body_id()
            request_id = self.request_id = (body_id if body_id is not None and _HEADER_ID.fullmatch(body_id)
                                            else new_request_id())
        return request_id

    def error(self, exc: BaseException) -> tuple[int, bytes, Headers]:
        """The answer to what `prepare`, the batcher or `answer` raised: (status, body, headers)."""
        id_header = (b"x-request-id", self.identify().encode())
        if not isinstance(exc, FastserveError):
            log.error("unexpected error serving %s", self.path, exc_info=exc)
            status, body, content_type = self.wire.error(FastserveError("internal error; see the server log"))
            return status, body, [(b"content-type", content_type), id_header]
        model = self.model
        if isinstance(exc, InferenceError) and model is not None and self.version is None and self.target is not None:
            routes_of(model).record(self.on_canary, perf_counter() - self.started, True, None)  # (no canary: nothing)
        status, body, content_type = self.wire.error(exc)
        if status == 500:  # refusals (4xx, overload 503s) are the client's to see, not the log's
            log.error("%s: %s", self.path, exc.message)
        return status, body, [(b"content-type", content_type), id_header, *error_headers(exc, status)]

    def end(self, status: int) -> None:
        stats = self.stats
        stats.in_flight -= 1
        stats.observe(self.model_label, self.version_label, status, perf_counter() - self.started)


async def serve(app: ServingApp, scope: Scope, receive: Any, send: Any, wire: Wire, name: str,
                version: str | None) -> None:
    """Answer one prediction request on `name` (and `version` when the path names one) in `wire`'s format."""
    p = Prediction(app, wire, name, version, scope["path"])
    status = 500
    try:
        try:
            headers = scope["headers"]
            content_length = p.head(scope["method"], headers)
            body = await read_body(receive, content_length, app.config.max_body_bytes)
            batcher, x, deadline, alone = await p.prepare_loaded(body, headers)
            outputs = await batcher.submit(x, deadline, alone=alone, disconnected=receive)
            answer, answer_headers = p.answer(outputs)
        except ClientGone:
            status = CLIENT_CLOSED
            return
        except Exception as exc:
            status, answer, answer_headers = p.error(exc)
            await send_bytes(send, status, answer, answer_headers)
            return
        status = 200
        await send_bytes(send, 200, answer, answer_headers)
    finally:
        p.end(status)


_ID_PREFIX = os.urandom(4).hex()  # (per process: ids made by different workers never meet)
_ids = itertools.count(1)
MAX_REQUEST_ID = 128
_HEADER_ID = re.compile(rf"[!-~]{{1,{MAX_REQUEST_ID}}}")  # visible ASCII, as a header value carries it


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):08x}"


def client_request_id(value: bytes) -> str:
    """A client's X-Request-Id, refused unless it is 1 to 128 visible ASCII characters."""
    text = value.decode("latin-1")
    if not _HEADER_ID.fullmatch(text):
        raise RequestError(f"X-Request-Id must be 1 to {MAX_REQUEST_ID} visible ASCII characters (no spaces), got "
                           f"{text[:160]!r}", detail={"header": "X-Request-Id"})
    return text


def _header_timeout(value: bytes, body_timeout: float | None) -> float:
    """The X-Request-Timeout-Ms header, or the body's own timeout when that is sooner."""
    parsed: Any
    try:
        parsed = float(value)
    except ValueError:
        parsed = value.decode("latin-1")  # refused below, quoted as sent
    header = timeout_ms(parsed, "X-Request-Timeout-Ms header")
    return header if body_timeout is None else min(header, body_timeout)
