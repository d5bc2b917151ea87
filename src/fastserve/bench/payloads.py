"""What `fastserve bench` sends: predict bodies in each format and protocol, whole raw HTTP/1.1 requests, and the
list of requests whose proportions follow a mix of models. No I/O."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import orjson

from fastserve.numpy_encoding import encode_numpy

FORMATS = ("json", "msgpack", "tensor")  # native bodies: JSON rows, msgpack rows, msgpack raw tensor
PROTOCOLS = ("native", "v2", "v2-binary")
JSON, MSGPACK, OCTETS = "application/json", "application/msgpack", "application/octet-stream"
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}
MIX_LENGTH = 1000  # requests in a mix's list: each model's share is right to 0.1%
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Body:
    content: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What a model takes, from the server's metadata: its input tensor's name, row width and dtype (numpy's name)."""

    model: str
    input_name: str
    width: int
    dtype: str
    version: str | None = None


def predict_path(model: str, version: str | None, protocol: str) -> str:
    versioned = f"/versions/{version}" if version is not None else ""
    if protocol == "native":
        return f"/v1/models/{model}{versioned}/predict"
    return f"/v2/models/{model}{versioned}/infer"


def rows_body(x: np.ndarray, fmt: str, protocol: str, input_name: str = "inputs") -> Body:
    """Rows `x` ([rows, features]) as the server expects them in `fmt` (native) or the V2 protocol."""
    if protocol == "native":
        if fmt == "json":
            return Body(orjson.dumps({"inputs": x}, option=orjson.OPT_SERIALIZE_NUMPY), JSON)
        if fmt == "msgpack":
            return Body(msgpack.packb({"inputs": x.tolist()}, use_bin_type=True), MSGPACK)
        if fmt == "tensor":
            x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
            raw = {"dtype": x.dtype.name, "shape": list(x.shape), "data": x.tobytes()}
            return Body(msgpack.packb({"inputs": raw}, use_bin_type=True), MSGPACK)
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    tensor: dict[str, Any] = {"name": input_name, "shape": list(x.shape), "datatype": V2_DATATYPES[x.dtype.name]}
    if protocol == "v2":
        tensor["data"] = x.ravel()
        return Body(orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY), JSON)
    if protocol == "v2-binary":
        data = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<")).tobytes()
        tensor["parameters"] = {"binary_data_size": len(data)}
        head = orjson.dumps({"inputs": [tensor]})
        return Body(head + data, OCTETS, (("Inference-Header-Content-Length", str(len(head))),))
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def records_body(records: Sequence[dict[str, Any]], fmt: str) -> Body:
    """Raw records (`{"records": [...]}`), for a model with a feature spec; native JSON or msgpack only."""
    if fmt == "json":
        return Body(orjson.dumps({"records": list(records)}, default=encode_numpy), JSON)
    return Body(msgpack.packb({"records": list(records)}, use_bin_type=True, default=encode_numpy), MSGPACK)


def raw_request(host: str, path: str, body: Body, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The whole request, as it goes on a keep-alive connection."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {body.content_type}",
             f"Content-Length: {len(body.content)}"]
    lines += [f"{name}: {value}" for name, value in (*body.headers, *headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body.content


def parse_header(text: str) -> tuple[str, str]:
    """`K:V` from --header, checked so that it cannot break the request's framing."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not set(name) <= _TOKEN:
        raise ValueError(f"expected NAME:VALUE with a header name of letters, digits and -, got {text!r}")
    if any(c in value for c in "\r\n\0") or not value.isascii():
        raise ValueError(f"header {name!r}: the value must be printable ASCII on one line")
    if name.lower() in ("host", "content-length", "content-type", "transfer-encoding", "connection"):
        raise ValueError(f"header {name!r} is set by fastserve bench itself")
    return name, value


def parse_mix(text: str) -> str:
    """`uniform` or `zipf:S` (S > 0), checked."""
    if text == "uniform":
        return text
    kind, _, exponent = text.partition(":")
    try:
        ok = kind == "zipf" and float(exponent) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"expected uniform or zipf:S with S > 0 (e.g. zipf:1.1), got {text!r}")
    return text


def mix_weights(mix: str, n: int) -> list[float]:
    """Each of `n` models' share of the requests: equal, or the k-th model's proportional to 1/k^S."""
    if mix == "uniform":
        return [1.0 / n] * n
    s = float(mix.partition(":")[2])
    raw = [1.0 / (k ** s) for k in range(1, n + 1)]
    return [w / sum(raw) for w in raw]


def shares(weights: Sequence[float], length: int) -> list[int]:
    """`length` split by `weights`: counts that add up to `length`, each at least 1, each off its exact share by
    less than one where that minimum allows (largest remainder)."""
    exact = [w * length for w in weights]
    counts = [max(1, int(e)) for e in exact]
    while sum(counts) < length:  # to the most under-served
        counts[max(range(len(counts)), key=lambda i: exact[i] - counts[i])] += 1
    while sum(counts) > length:  # from the most over-served that can spare one
        counts[max((i for i in range(len(counts)) if counts[i] > 1), key=lambda i: counts[i] - exact[i])] -= 1
    return counts


def mixed(groups: Sequence[Sequence[bytes]], weights: Sequence[float], seed: int,
          length: int = MIX_LENGTH) -> list[bytes]:
    """One list of requests to send round-robin: group k's requests (cycled) in the proportion weights[k], in a
    shuffled order fixed by `seed`. One group comes back as it is."""
    if len(groups) == 1:
        return list(groups[0])
    out: list[bytes] = []
    for group, count in zip(groups, shares(weights, length), strict=True):
        out.extend(group[j % len(group)] for j in range(count))
    random.Random(seed).shuffle(out)
    return out
