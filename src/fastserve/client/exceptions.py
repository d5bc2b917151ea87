"""The client's errors: one hierarchy under `FastserveClientError` (itself a `FastserveError`), carrying the
server's own error body when there was one."""

from __future__ import annotations

from typing import Any

from fastserve.exceptions import FastserveError


class FastserveClientError(FastserveError):
    """Base of every error the client raises on purpose. `attempts` is how many requests the call made."""

    code = "client"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.attempts = 1
        self.gave_up = ""  # why the call stopped retrying, when it retried

    def stopped(self, attempts: int, why: str) -> FastserveClientError:
        """This error, noting that the call stopped after `attempts` requests and why."""
        self.attempts = attempts
        self.gave_up = why
        return self

    def _text(self) -> str:
        return self.message

    def __str__(self) -> str:
        return f"{self._text()} ({self.gave_up})" if self.gave_up else self._text()


class ConnectionFailed(FastserveClientError, ConnectionError):
    """The server could not be reached, or dropped the connection before answering."""

    code = "connection_failed"


class DeadlineExceeded(FastserveClientError, TimeoutError):
    """The call's `timeout` ran out before an answer came."""

    code = "deadline_exceeded"


class ServerError(FastserveClientError):
    """The server answered with an error: its HTTP `status`, and the `code`, `message` and `detail` of its error
    body (`{"error": {"code", "message", "detail"}}`). `request` names the call (`POST /v1/models/churn/predict`)."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None, *, request: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status = status
        self.code = code
        self.request = request
        self.retry_after = retry_after  # seconds, from the answer's Retry-After header

    @property
    def path(self) -> str | None:
        """Where in the request the server found the problem (`$.inputs[4]`), when it said."""
        path = self.detail.get("path") if isinstance(self.detail, dict) else None
        return path if isinstance(path, str) else None

    def _text(self) -> str:
        path = self.path
        where = f" - at `{path}`" if path is not None and f"`{path}`" not in self.message else ""
        prefix = f"{self.request}: " if self.request else ""
        return f"{prefix}{self.status} {self.code}: {self.message}{where}"


class InvalidRequest(ServerError):
    """A 4xx other than 429: the request must change before it can succeed, so it is never retried."""


class Overloaded(ServerError):
    """429 or 503: the server shed the request (queue full, deadline unmeetable, model not ready), and retrying
    did not get it through within `max_retries` and the deadline. `retry_after` is the server's last advice."""
