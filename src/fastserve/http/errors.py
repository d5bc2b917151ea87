"""The one place where exceptions become HTTP status codes and error bodies."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from fastserve.exceptions import (
    AdminDisabled,
    BodyTooLarge,
    FastserveError,
    InferenceError,
    InvalidInput,
    LoadShed,
    MalformedBody,
    MethodNotAllowed,
    ModelNotReady,
    NotAcceptable,
    NotFound,
    OperationRefused,
    QueueFull,
    RequestError,
    Unauthorized,
    UnsupportedMediaType,
)

# Most specific first.
_STATUS: tuple[tuple[type[FastserveError], int], ...] = (
    (NotFound, 404),
    (Unauthorized, 401),
    (AdminDisabled, 403),
    (OperationRefused, 409),
    (ModelNotReady, 503),
    (QueueFull, 429),
    (LoadShed, 503),
    (BodyTooLarge, 413),
    (MethodNotAllowed, 405),
    (UnsupportedMediaType, 415),
    (NotAcceptable, 406),
    (MalformedBody, 400),
    (InvalidInput, 422),
    (RequestError, 400),
    (InferenceError, 500),
)


def status_for(exc: FastserveError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def v2_status_for(exc: FastserveError) -> int:
    """The V2 (Open Inference) protocol's status: as the native one, but content the model cannot take is a 400, the
    status the protocol gives to bad requests and that Triton and KServe clients expect."""
    status = status_for(exc)
    return 400 if status == 422 else status


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


def is_v2(path: str) -> bool:
    """Whether `path` is a V2 protocol route, whose errors take the protocol's form and status."""
    return path == "/v2" or path.startswith("/v2/")


def raw_answer(status: int, body: bytes, *, retry_after: int | None = None, close: bool = False) -> bytes:
    """A whole HTTP/1.1 answer with a JSON body, for refusals written by the HTTP protocol below the ASGI app."""
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
    if close:
        head.append(b"connection: close\r\n")
    if retry_after is not None:
        head.append(b"retry-after: %d\r\n" % retry_after)
    return b"".join([*head, b"\r\n", body])


def v2_error_body(message: str) -> dict[str, Any]:
    """The V2 protocol's error object: the message alone."""
    return {"error": message}


def error_headers(exc: FastserveError, status: int) -> list[tuple[bytes, bytes]]:
    """Retry-After on every refusal a client should retry: overload, or a model not ready yet. A body over the limit
    closes its connection: the rest of it is not read past (the close lingers: http/protocol.py)."""
    if isinstance(exc, BodyTooLarge):
        return [(b"connection", b"close")]
    if isinstance(exc, LoadShed):
        return [(b"retry-after", str(exc.retry_after_s).encode())]
    if status == 503:
        return [(b"retry-after", b"1")]
    if status == 401:
        return [(b"www-authenticate", b'Bearer realm="fastserve admin"')]
    if isinstance(exc, MethodNotAllowed):
        return [(b"allow", exc.allow.encode())]
    return []
