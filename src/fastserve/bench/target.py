"""The servers `fastserve bench` measures: their URLs, whether they can be reached, whether they are fastserve, and
what each model takes (fastserve's model status, else the V2 model metadata Triton, MLServer and KServe serve)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from fastserve.bench.payloads import ModelInput
from fastserve.exceptions import BenchError

_NUMPY_DTYPES = {"float32": "float32", "float64": "float64", "int32": "int32", "int64": "int64",
                 "FP32": "float32", "FP64": "float64", "INT32": "int32", "INT64": "int64"}


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # as given, without a trailing slash
    host: str  # the address connected to (resolved)
    port: int
    host_header: str  # host[:port] as in the URL


def parse_url(url: str, name: str | None = None) -> Target:
    """An http://HOST[:PORT] URL (no path), checked; its host resolved once, here."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"expected http://HOST[:PORT] (plain HTTP, no path), got {url!r}")
    try:
        port = parts.port or 80
        address = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0][4][0]
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{url!r}: cannot resolve {parts.hostname!r} ({exc})") from None
    return Target(name or parts.netloc, url.rstrip("/"), str(address), port, parts.netloc)


def get(target: Target, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET `path`: (status, body); BenchError when the server cannot be reached."""
    try:
        with urllib.request.urlopen(target.url + path, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BenchError(f"cannot reach {target.url} ({target.name}): {reason}; is the server running there?"
                         ) from None


def get_json(target: Target, path: str) -> tuple[int, Any]:
    status, body = get(target, path)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def is_fastserve(target: Target) -> bool:
    """Whether the server is fastserve, by its V2 server metadata (which also proves it can be reached)."""
    status, meta = get_json(target, "/v2")
    return status == 200 and isinstance(meta, dict) and meta.get("name") == "fastserve"


def model_input(target: Target, model: str, version: str | None, fastserve: bool) -> ModelInput:
    """What `model` (`version`, else the primary) takes, from the server."""
    if fastserve:
        status, status_body = get_json(target, f"/v1/models/{model}")
        if status == 200:
            return _from_status(target, model, version, status_body)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "")
    status, meta = get_json(target, path)
    if status != 200 or not isinstance(meta, dict):
        what = f"model {model!r}" + (f" version {version}" if version is not None else "")
        raise BenchError(f"{target.name}: {what} is unknown to the server or not ready (GET {path}: {status})")
    try:
        tensor = meta["inputs"][0]
        return _input(target, model, version, tensor["name"], tensor["datatype"], tensor["shape"])
    except (KeyError, IndexError, TypeError):
        raise BenchError(f"{target.name}: GET {path} is not V2 model metadata: {str(meta)[:200]}") from None


def _from_status(target: Target, model: str, version: str | None, body: Any) -> ModelInput:
    wanted = int(version) if version is not None else body.get("primary")
    for v in body.get("versions", []):
        if v.get("version") == wanted and v.get("inputs"):
            tensor = v["inputs"][0]
            return _input(target, model, version, tensor["name"], tensor["datatype"], tensor["shape"])
    what = f"version {version}" if version is not None else "a primary version"
    raise BenchError(f"{target.name}: model {model!r} has no {what} loaded")


def _input(target: Target, model: str, version: str | None, name: str, datatype: str, shape: list[int]
           ) -> ModelInput:
    dtype = _NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BenchError(f"{target.name}: model {model!r} takes {datatype}; fastserve bench sends FP32, FP64, INT32 "
                         "or INT64")
    width = shape[-1] if len(shape) >= 2 else 1
    return ModelInput(model, name, width, dtype, version)
