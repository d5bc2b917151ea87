"""What the sync and async clients share: their settings, and each call's path, headers and deadline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from fastserve.client.retry import Call, RetryPolicy
from fastserve.client.wire import FORMATS


class _UseClientDefault:
    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = _UseClientDefault()  # a call's `timeout` when left out: the client's
Timeout = float | None | _UseClientDefault

# Below the server's idle keep-alive (5 s by default), so the client drops an idle connection before the server
# closes it under a request just sent.
KEEPALIVE_EXPIRY_S = 4.0


def _check_timeout(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number of seconds > 0, or None for no deadline; got {value!r}")
    return float(value)


def model_path(model: str) -> str:
    if not isinstance(model, str) or not model:
        raise ValueError(f"expected a model name, got {model!r}")
    return f"/v1/models/{quote(model, safe='')}"


def predict_path(model: str, version: int | None) -> str:
    if version is None:
        return f"{model_path(model)}/predict"
    if type(version) is not int or version < 0:
        raise ValueError(f"version must be a version number (an int >= 0), got {version!r}")
    return f"{model_path(model)}/versions/{version}/predict"


class ClientBase:
    """Settings shared by `Client` and `AsyncClient` (see `Client` for what they mean), and the pieces of each
    call."""

    def __init__(self, url: str, *, format: str = "msgpack", timeout: float | None = 10.0,
                 connect_timeout: float | None = 5.0, max_retries: int | None = None, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None, max_connections: int = 100,
                 transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected the server's base URL such as http://127.0.0.1:8000, got {url!r}")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        self.url = url.rstrip("/")
        self.format = format
        self.media = FORMATS[format]
        self.timeout = _check_timeout(timeout, "timeout")
        self.connect_timeout = _check_timeout(connect_timeout, "connect_timeout")
        policy = retry if retry is not None else RetryPolicy()
        self.retry = policy if max_retries is None else replace(policy, max_retries=max_retries)
        self._predict_headers = {"content-type": self.media, "accept": self.media}
        self._httpx_options: dict[str, Any] = {
            "base_url": self.url, "headers": dict(headers or {}),
            "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                   keepalive_expiry=KEEPALIVE_EXPIRY_S),
        }
        if transport is not None:
            self._httpx_options["transport"] = transport
        self._open()

    def _open(self) -> None:
        """Make the httpx client (`self._http`) and the sleep between retries (`self._sleep`)."""
        raise NotImplementedError

    def _call(self, method: str, path: str, timeout: Timeout, retries: bool = True) -> Call:
        seconds = self.timeout if isinstance(timeout, _UseClientDefault) else _check_timeout(timeout, "timeout")
        return Call(method, path, self.retry, seconds, self.connect_timeout, retries)

    def _headers(self, extra: Mapping[str, str] | None) -> Mapping[str, str]:
        return self._predict_headers if not extra else {**self._predict_headers, **extra}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, format={self.format!r})"

