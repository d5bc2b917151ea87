"""One path from a prediction request's body to its answer, shared by the native predict route and the V2 infer route.

Each route brings its wire format (a `Wire`: which headers it reads, how the body decodes into the model's input,
how answers and errors are written); everything else happens here once, for both: the body size limit, the model
lookup, the version choice (pinned in the path, canary, primary), the batcher with the request's deadline, the
canary's guard, the shadows' copies, and the request's metrics.
"""

from __future__ import annotations

import logging
from time import monotonic_ns, perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fastserve.exceptions import (
    BodyTooLarge,
    ClientGone,
    FastserveError,
    InferenceError,
    MethodNotAllowed,
    RequestError,
)
from fastserve.http.errors import error_headers
from fastserve.http.inputs import Inputs, timeout_ms
from fastserve.routing.router import choose

if TYPE_CHECKING:
    from fastserve.http.app import App
    from fastserve.registry import LoadedModel, LoadedVersion

log = logging.getLogger("fastserve.http")

Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]
Outputs = dict[str, np.ndarray]
CLIENT_CLOSED = 499  # counted in metrics only: nobody is left to answer


class Wire(Protocol):
    """One request in one wire format: made per request, so it may keep what it read for the later steps."""

    def start(self, headers: Headers) -> tuple[bytes | None, bytes | None]:
        """Read the request's headers, once: (Content-Length, X-Request-Timeout-Ms). Raises on one it refuses."""

    def decode(self, body: bytes, model: LoadedModel) -> Any:
        """Decode the body; returns what routing reads a canary's sticky key from (a `records` or `columns`
        object)."""

    def inputs(self, target: LoadedVersion) -> Inputs:
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


async def read_body(receive: Any, content_length: bytes | None, limit: int) -> bytes:
    """The whole body, refused from its Content-Length, or while counting bytes, once over `limit`."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError(f"invalid Content-Length {content_length.decode('latin-1')!r}") from None
        if declared > limit:
            raise BodyTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes",
                               detail={"limit": limit, "declared": declared})
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone("client disconnected while sending its body")
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes", detail={"limit": limit})
        return body
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("client disconnected while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes", detail={"limit": limit})
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_bytes(send: Any, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def serve(app: App, scope: Scope, receive: Any, send: Any, wire: Wire, name: str, version: str | None) -> None:
    """Answer one prediction request on `name` (and `version` when the path names one) in `wire`'s format."""
    started = perf_counter()
    arrived_ns = monotonic_ns()
    stats = app.metrics.stats
    stats.in_flight += 1
    model_label = version_label = ""
    status = 500
    try:
        try:
            content_length, timeout_header = wire.start(scope["headers"])
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['path']} takes POST, got {scope['method']}", allow="POST")
            body = await read_body(receive, content_length, app.config.max_body_bytes)
            model = app.registry.model(name)
            payload = wire.decode(body, model)
            target, on_canary = choose(model, version, payload, scope["headers"])
            model_label, version_label = target.model, str(target.number)
            x, timeout, raw = wire.inputs(target)
            if timeout_header is not None:
                timeout = _header_timeout(timeout_header, timeout)
            batcher = target.batcher
            try:
                outputs = await batcher.submit(x, batcher.deadline_ns(arrived_ns, timeout),  # type: ignore[union-attr]
                                               alone=stats.in_flight == 1 and stats.received <= 1,
                                               disconnected=receive)
            except InferenceError:
                if model.canary is not None and version is None:
                    _guard(model, on_canary, started, True, None)
                raise
            if raw is not None:
                target.drift.observe_fields(raw)  # type: ignore[union-attr]
            if version is None:
                if model.canary is not None:
                    _guard(model, on_canary, started, False, outputs.get("label"))
                if model.shadows and not on_canary:
                    for runner in model.shadows.values():
                        runner.offer(x, outputs)
            answer, headers = wire.answer(target, outputs)
        except ClientGone:
            status = CLIENT_CLOSED
            return
        except FastserveError as exc:
            status, answer, content_type = wire.error(exc)
            if status == 500:  # refusals (4xx, overload 503s) are the client's to see, not the log's
                log.error("%s: %s", scope["path"], exc.message)
            await send_bytes(send, status, answer, [(b"content-type", content_type), *error_headers(exc, status)])
            return
        status = 200
        await send_bytes(send, 200, answer, headers)
    except Exception:
        log.exception("unexpected error serving %s", scope["path"])
        status, answer, content_type = wire.error(FastserveError("internal error; see the server log"))
        await send_bytes(send, status, answer, [(b"content-type", content_type)])
    finally:
        stats.in_flight -= 1
        stats.observe(model_label, version_label, status, perf_counter() - started)


def _guard(model: LoadedModel, on_canary: bool, started: float, error: bool, labels: Any) -> None:
    """Count the answer for the canary's guard; when the guard trips, record why."""
    canary = model.canary
    if canary is None:
        return
    evidence = canary.observe(on_canary, perf_counter() - started, error,
                              labels.tolist() if labels is not None else ())
    if evidence is not None:
        model.canary_rollbacks += 1
        model.event("canary_rolled_back", canary.version, "; ".join(evidence["reasons"]))
        log.warning("%s: canary v%d pulled back (weight 0): %s", model.name, canary.version,
                    "; ".join(evidence["reasons"]))


def _header_timeout(value: bytes, body_timeout: float | None) -> float:
    """The X-Request-Timeout-Ms header, or the body's own timeout when that is sooner."""
    parsed: Any
    try:
        parsed = float(value)
    except ValueError:
        parsed = value.decode("latin-1")  # refused below, quoted as sent
    header = timeout_ms(parsed, "X-Request-Timeout-Ms header")
    return header if body_timeout is None else min(header, body_timeout)
