"""One exception hierarchy. Only `fastserve.http` maps these to status codes."""

from __future__ import annotations

import warnings
from typing import Any


class FastserveError(Exception):
    """Base of every error fastserve raises on purpose."""

    code = "internal"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(FastserveError, ValueError):
    """A configuration file or option is wrong; the message says which and how to fix it."""

    code = "config"


class ModelLoadError(FastserveError, RuntimeError):
    """A model version could not be loaded, warmed or checked."""

    code = "model_load"


class ExportError(FastserveError, ValueError):
    """A trained pipeline cannot be exported exactly; the message names the part and what is supported."""

    code = "export"


class BenchError(FastserveError):
    """`fastserve bench` cannot run as asked: the server cannot be reached, a model is unknown to it, the data does
    not fit the model; the message says which and what was expected."""

    code = "bench"


class DeviceUnavailable(ModelLoadError):
    """An execution provider was asked for explicitly and cannot be used here."""

    code = "device_unavailable"


class NotFound(FastserveError, LookupError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class OperationRefused(FastserveError):
    """An operator's call that cannot be carried out in the current state (409); the message says why."""

    code = "refused"


class Unauthorized(FastserveError):
    """The admin API needs `Authorization: Bearer <token>` with the server's token."""

    code = "unauthorized"


class AdminDisabled(FastserveError):
    """The admin API is off: the server was started without an admin token."""

    code = "admin_disabled"


class ModelNotReady(FastserveError):
    """The model exists but no version of it can serve now."""

    code = "model_not_ready"


class VersionCold(ModelNotReady):
    """The version a request needs is not loaded (the server's budget of loaded versions evicted it, or it was never
    loaded): `loading` completes once it is. The request waits for it within its deadline; only when it cannot is
    this the answer (503 + Retry-After)."""

    code = "model_loading"

    def __init__(self, message: str, *, loading: Any, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.loading = loading


class RequestError(FastserveError, ValueError):
    """The request itself is wrong (body, headers); the client must change it."""

    code = "bad_request"


class MalformedBody(RequestError):
    """The body cannot be decoded at all."""

    code = "malformed_body"


class InvalidInput(RequestError):
    """The body decodes but its content is not what the model takes.

    `reason` is the message without its place (`... - at `$.inputs[4]``), for a caller that names places its own way
    (the V2 protocol's `inputs[0].data[5]`)."""

    code = "invalid_input"

    def __init__(self, message: str, *, detail: Any = None, reason: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.reason = reason if reason is not None else message


class MethodNotAllowed(RequestError):
    """A route called with a method it does not take; `allow` lists those it takes."""

    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str = "POST") -> None:
        super().__init__(message)
        self.allow = allow


class BodyTooLarge(RequestError):
    code = "body_too_large"


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"


class NotAcceptable(RequestError):
    code = "not_acceptable"


class LoadShed(FastserveError):
    """Refused to protect latency; the client may retry after `retry_after_s` seconds."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = max(1, retry_after_s)


class QueueFull(LoadShed):
    code = "queue_full"


class DeadlineUnmeetable(LoadShed):
    """The request's deadline (the model's SLO or the client's timeout) cannot be met: refused before running."""

    code = "deadline_exceeded"


class ClientGone(FastserveError):
    """The client disconnected before its request ran; nobody is left to answer."""

    code = "client_closed"


class InferenceError(FastserveError, RuntimeError):
    """ONNX Runtime failed on input that passed validation."""

    code = "inference_failed"


def __getattr__(name: str) -> Any:
    if name == "Overloaded":  # its name until the client's own `fastserve.client.Overloaded` took it
        warnings.warn("fastserve.exceptions.Overloaded is now fastserve.exceptions.LoadShed (the client raises "
                      "fastserve.client.Overloaded)", DeprecationWarning, stacklevel=2)
        return LoadShed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
