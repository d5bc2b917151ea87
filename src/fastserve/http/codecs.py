"""Content negotiation and (de)serialization: JSON (orjson) and msgpack."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from fastserve._core.scan import json_duplicate_key, msgpack_duplicate_key
from fastserve.exceptions import MalformedBody, NotAcceptable, UnsupportedMediaType
from fastserve.numpy_encoding import encode_numpy

JSON = "application/json"
MSGPACK = "application/msgpack"
_MEDIA = {
    "application/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,
    "application/vnd.msgpack": MSGPACK,
}
CONTENT_TYPE_HEADER = {JSON: b"application/json", MSGPACK: b"application/msgpack"}
# Formats of the Content-Type and Accept values already read: clients send the same few, and a request is spared
# their parsing. Bounded: past it, values are parsed each time.
_READ_TYPES: dict[bytes, str] = {}
_READ_ACCEPTS: dict[tuple[bytes, str], str] = {}
_READ_MAX = 256


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def request_format(content_type: bytes | None) -> str:
    """The body's format from its Content-Type; a missing one is taken as JSON."""
    if content_type is None:
        return JSON
    fmt = _READ_TYPES.get(content_type)
    if fmt is not None:
        return fmt
    media = _media_type(content_type.decode("latin-1"))
    fmt = _MEDIA.get(media)
    if fmt is None:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not supported; send application/json or application/msgpack",
            detail={"content_type": media},
        )
    if len(_READ_TYPES) < _READ_MAX:
        _READ_TYPES[content_type] = fmt
    return fmt


def response_format(accept: bytes | None, default: str) -> str:
    """The answer's format from Accept (q-values honoured); `*/*` or no Accept answers in `default`."""
    if accept is None:
        return default
    fmt = _READ_ACCEPTS.get((accept, default))
    if fmt is None:
        fmt = _accepted(accept, default)
        if len(_READ_ACCEPTS) < _READ_MAX:
            _READ_ACCEPTS[accept, default] = fmt
    return fmt


def _accepted(accept: bytes, default: str) -> str:
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.decode("latin-1").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            choices.append((-q, i, media.lower()))
    for _, _, media in sorted(choices):
        if media in _MEDIA:
            return _MEDIA[media]
        if media in ("*/*", "application/*", ""):
            return default
    raise NotAcceptable(
        f"cannot answer in {accept.decode('latin-1')!r}; accept application/json or application/msgpack",
        detail={"accept": accept.decode("latin-1")},
    )


def decode(body: bytes, fmt: str) -> Any:
    if not body:
        raise MalformedBody("empty body; send an object such as {\"inputs\": [[...]]}")
    if fmt == JSON:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(f"body is not valid JSON: {exc}") from exc
        duplicate: tuple[str | bytes, str] | None = json_duplicate_key(body)
    else:
        try:
            # msgpack bounds every container length by the buffer size, so a huge declared length fails fast.
            decoded = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext)
        except Exception as exc:  # msgpack raises ValueError subclasses, UnicodeDecodeError, TypeError...
            raise MalformedBody(f"body is not valid msgpack: {exc.__class__.__name__}: {exc}") from exc
        duplicate = msgpack_duplicate_key(body)
    if duplicate is not None:
        key, path = duplicate
        raise MalformedBody(f"duplicate key {key!r}: which value is meant is ambiguous - at `{path}`",
                            detail={"path": path, "key": key if isinstance(key, str) else repr(key)})
    return decoded


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code} is not accepted (a predict body holds maps, arrays, strings, numbers, bin)")


def encode(obj: Any, fmt: str) -> bytes:
    if fmt == JSON:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    packed: bytes = msgpack.packb(obj, use_bin_type=True, default=encode_numpy)
    return packed
