"""The predict route as a bare ASGI handler: the hot path pays for no framework layer it does not need."""

from __future__ import annotations

import logging
from time import monotonic_ns, perf_counter
from typing import TYPE_CHECKING, Any

from fastserve.exceptions import (
    BodyTooLarge,
    ClientGone,
    FastserveError,
    InferenceError,
    NotAcceptable,
    RequestError,
)
from fastserve.http.codecs import CONTENT_TYPE_HEADER, JSON, decode, encode, request_format, response_format
from fastserve.http.errors import error_body, error_headers, status_for
from fastserve.http.inputs import predict_inputs, timeout_ms
from fastserve.routing.router import choose

if TYPE_CHECKING:
    from fastserve.http.app import App
    from fastserve.registry import LoadedModel

log = logging.getLogger("fastserve.http")

Scope = dict[str, Any]
CLIENT_CLOSED = 499  # counted in metrics only: nobody is left to answer


def predict_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) for `/v1/models/{name}[/versions/{v}]/predict`, else None."""
    if not path.startswith("/v1/models/") or not path.endswith("/predict"):
        return None
    parts = path.split("/")  # ['', 'v1', 'models', name, ..., 'predict']
    if len(parts) == 5 and parts[3]:
        return parts[3], None
    if len(parts) == 7 and parts[3] and parts[4] == "versions" and parts[5]:
        return parts[3], parts[5]
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


async def send_bytes(send: Any, status: int, body: bytes, fmt: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    all_headers = [(b"content-type", CONTENT_TYPE_HEADER[fmt]), (b"content-length", str(len(body)).encode())]
    if headers:
        all_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def handle_predict(app: App, scope: Scope, receive: Any, send: Any, name: str, version: str | None) -> None:
    started = perf_counter()
    arrived_ns = monotonic_ns()
    stats = app.metrics.stats
    stats.in_flight += 1
    model_label = version_label = ""
    status = 500
    fmt = JSON
    try:
        content_type = accept = content_length = timeout_header = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value
            elif key == b"accept":
                accept = value
            elif key == b"content-length":
                content_length = value
            elif key == b"x-request-timeout-ms":
                timeout_header = value
        try:
            body_fmt = request_format(content_type)
            fmt = response_format(accept, body_fmt)
            if scope["method"] != "POST":
                await _send_error(send, 405, "method_not_allowed", "predict takes POST", None, fmt,
                                  [(b"allow", b"POST")])
                status = 405
                return
            body = await read_body(receive, content_length, app.config.max_body_bytes)
            model = app.registry.model(name)
            decoded = decode(body, body_fmt)
            target, on_canary = choose(model, version, decoded, scope["headers"])
            model_label, version_label = target.model, str(target.number)
            drift = target.drift
            x, timeout, raw = predict_inputs(decoded, target.session,  # type: ignore[arg-type]
                                             target.config.inputs, target.transform,
                                             drift is not None and drift.from_fields)
            if timeout_header is not None:
                timeout = _header_timeout(timeout_header, timeout)
            batcher = target.batcher
            try:
                outputs = await batcher.submit(x, batcher.deadline_ns(arrived_ns, timeout),  # type: ignore[union-attr]
                                               alone=stats.in_flight == 1, disconnected=receive)
            except InferenceError:
                if model.canary is not None and version is None:
                    _guard(model, on_canary, started, True, None)
                raise
            if raw is not None:
                drift.observe_fields(raw)  # type: ignore[union-attr]
            if version is None:
                if model.canary is not None:
                    _guard(model, on_canary, started, False, outputs.get("label"))
                if model.shadows and not on_canary:
                    for runner in model.shadows.values():
                        runner.offer(x, outputs)
            payload = encode({"model": target.model, "version": target.number, "outputs": outputs}, fmt)
        except ClientGone:
            status = CLIENT_CLOSED
            return
        except FastserveError as exc:
            status = status_for(exc)
            if isinstance(exc, NotAcceptable):
                fmt = JSON
            if status == 500:  # refusals (4xx, overload 503s) are the client's to see, not the log's
                log.error("%s: %s", scope["path"], exc.message)
            await _send_error(send, status, exc.code, exc.message, exc.detail, fmt, error_headers(exc, status))
            return
        status = 200
        await send_bytes(send, 200, payload, fmt, [(b"x-model-version", version_label.encode())])
    except Exception:
        log.exception("unexpected error serving %s", scope["path"])
        status = 500
        await _send_error(send, 500, "internal", "internal error; see the server log", None, fmt, None)
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
    """The X-Request-Timeout-Ms header, or the body's `timeout_ms` when that is sooner."""
    parsed: Any
    try:
        parsed = float(value)
    except ValueError:
        parsed = value.decode("latin-1")  # refused below, quoted as sent
    header = timeout_ms(parsed, "X-Request-Timeout-Ms header")
    return header if body_timeout is None else min(header, body_timeout)


async def _send_error(send: Any, status: int, code: str, message: str, detail: Any, fmt: str,
                      headers: list[tuple[bytes, bytes]] | None) -> None:
    await send_bytes(send, status, encode(error_body(code, message, detail), fmt), fmt, headers)
