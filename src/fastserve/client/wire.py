"""What goes over the wire: predict bodies from numpy arrays, rows, records or columns; answers back into numpy
arrays; error answers into the client's exceptions. No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import orjson

from fastserve.client.exceptions import InvalidRequest, Overloaded, ServerError
from fastserve.numpy_encoding import encode_numpy

JSON = "application/json"
MSGPACK = "application/msgpack"
FORMATS = {"msgpack": MSGPACK, "json": JSON}
RETRY_STATUSES = frozenset({429, 503})

# The dtypes the server takes as a raw tensor, by (kind, itemsize) of the array given; smaller types are widened
# losslessly, the rest refused.
_WIRE_DTYPES = {("f", 2): "float32", ("f", 4): "float32", ("f", 8): "float64",
                ("i", 1): "int32", ("i", 2): "int32", ("i", 4): "int32", ("i", 8): "int64",
                ("u", 1): "int32", ("u", 2): "int32", ("u", 4): "int64"}
_LITTLE_ENDIAN = {name: np.dtype(name).newbyteorder("<") for name in set(_WIRE_DTYPES.values())}


@dataclass(frozen=True, slots=True)
class Prediction:
    """One answer: each output by its ONNX name as a numpy array, and the model and version that answered."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    request_id: str = ""  # the answer's X-Request-Id: what `feedback` names it by (`id:row` for one of its rows)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]


def pack(obj: Any, media: str) -> bytes:
    if media == JSON:
        return orjson.dumps(obj, default=encode_numpy, option=orjson.OPT_SERIALIZE_NUMPY)
    packed: bytes = msgpack.packb(obj, use_bin_type=True, default=encode_numpy)
    return packed


def unpack(content: bytes, content_type: str | None) -> Any:
    """An answer's body, by its Content-Type (the server answers errors it cannot negotiate in JSON)."""
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    if media in (MSGPACK, "application/x-msgpack", "application/vnd.msgpack"):
        return msgpack.unpackb(content, raw=False)
    return orjson.loads(content)


def _matrix(x: np.ndarray) -> tuple[np.ndarray, str]:
    """`x` as a C-contiguous little-endian matrix of a dtype the server takes, and that dtype's name."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array [rows, features], got shape {x.shape}"
                         + ("; use x.reshape(1, -1) for one row" if x.ndim == 1 else ""))
    wire = _WIRE_DTYPES.get((x.dtype.kind, x.dtype.itemsize))
    if wire is None:
        raise TypeError(f"cannot send a {x.dtype} array: the server takes float32, float64, int32 or int64 "
                        "(smaller ints and float16 are widened); convert it with x.astype(...)")
    return np.ascontiguousarray(x, dtype=_LITTLE_ENDIAN[wire]), wire


def inputs_body(inputs: np.ndarray | Sequence[Sequence[Any]], media: str) -> bytes:
    """A 2-D array as the raw tensor `{"dtype", "shape", "data"}` (msgpack) or as nested lists (JSON); rows as
    given."""
    if not isinstance(inputs, np.ndarray):
        if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Sequence):
            raise TypeError(f"expected a 2-D numpy array or a list of rows, got {type(inputs).__name__}")
        return pack({"inputs": inputs}, media)
    x, dtype = _matrix(inputs)
    if media == JSON:
        return pack({"inputs": x}, media)
    # memoryview: msgpack writes the array's bytes once, with no intermediate bytes object.
    tensor = {"dtype": dtype, "shape": list(x.shape), "data": x.data.cast("B")}
    return pack({"inputs": tensor}, media)


def records_body(records: Sequence[Mapping[str, Any]], media: str) -> bytes:
    if isinstance(records, Mapping) or not isinstance(records, Sequence):
        raise TypeError(f"expected a list of records (dicts of field -> value), got {type(records).__name__}"
                        + ("; use predict_columns for a dict of columns" if isinstance(records, Mapping) else ""))
    return pack({"records": records if isinstance(records, list) else list(records)}, media)


def feedback_body(ids: Sequence[str], labels: Sequence[Any] | np.ndarray, media: str) -> bytes:
    """`{"ids", "labels"}`: one label (a class, or a true value) per answer id."""
    ids = list(ids)
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels; give one label per id")
    return pack({"ids": ids, "labels": labels}, media)


def columns_body(columns: Mapping[str, Any], media: str) -> bytes:
    if not isinstance(columns, Mapping):
        raise TypeError(f"expected a dict of field -> column of values, got {type(columns).__name__}")
    return pack({"columns": dict(columns)}, media)


def prediction(content: bytes, content_type: str | None, request: str, request_id: str = "") -> Prediction:
    """A 200 predict answer `{"model", "version", "outputs"}` as a Prediction."""
    try:
        answer = unpack(content, content_type)
        outputs = {name: np.asarray(value) for name, value in answer["outputs"].items()}
        return Prediction(answer["model"], int(answer["version"]), outputs, request_id)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ServerError(200, "malformed_answer", f"the answer is not a predict answer ({exc.__class__.__name__}:"
                          f" {exc}): {content[:200]!r}", request=request) from None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in its seconds form; the HTTP-date form is ignored (the backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def error(status: int, content_type: str | None, content: bytes, retry_after: str | None,
          request: str) -> ServerError:
    """The exception for an error answer, with the code, message and detail of its `{"error": ...}` body (or the
    start of whatever else came, from a proxy say)."""
    code, message, detail = f"http_{status}", "", None
    try:
        body = unpack(content, content_type)["error"]
        code, message, detail = str(body["code"]), str(body["message"]), body.get("detail")
    except Exception:  # not a fastserve error body: keep what came
        message = content[:500].decode("utf-8", "replace") or "(empty body)"
    kind = (Overloaded if status in RETRY_STATUSES else InvalidRequest if 400 <= status < 500 else ServerError)
    return kind(status, code, message, detail, request=request, retry_after=_retry_after(retry_after))
