"""A predict body into the model's input matrix: `inputs` as rows (JSON or msgpack) or a raw msgpack tensor, or
`records` / `columns` of raw fields through the version's feature transform."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fastserve._core import FeatureTransform, fill_rows, first_non_finite
from fastserve._core.rows import shown, type_name
from fastserve._core.scan import json_top_array_length, json_value_bound, msgpack_item_count
from fastserve.config import InputOptions
from fastserve.exceptions import InvalidInput
from fastserve.runtime import ModelSession

DATA_KEYS = ("inputs", "records", "columns")
PREDICT_KEYS = frozenset({*DATA_KEYS, "timeout_ms"})
_TENSOR_KEYS = frozenset({"dtype", "shape", "data"})
VALUES_ROOM = 1024  # values a request may hold outside its data: keys, shapes, parameters, several inputs
# Raw tensors are little-endian whatever the machine.
# The input dtypes whose common bodies are read straight from their bytes (`_core.rows`).
FLOAT32 = np.dtype(np.float32)
ROW_DTYPES = (FLOAT32, np.dtype(np.float64))
TENSOR_DTYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8"}


def _names(keys: Any) -> list[str]:
    """Object keys as messages name them, sorted: msgpack keys may be str or bytes, which do not sort together."""
    return sorted(k if type(k) is str else shown(k) for k in keys)


def timeout_ms(value: Any, path: str) -> float:
    """A client's timeout in milliseconds: a positive finite number."""
    if type(value) not in (int, float) or not 0 < value < 1e9:
        raise InvalidInput(f"expected a timeout in milliseconds (a number > 0), got {shown(value)} - at `{path}`",
                           detail={"path": path})
    return float(value)


class Inputs(NamedTuple):
    x: np.ndarray  # [rows, n_features] in the model's input dtype
    timeout_ms: float | None  # the body's own
    raw: np.ndarray | None  # records and columns, when asked for: the fields' raw codes for the drift sketches


def predict_inputs(payload: Any, session: ModelSession, options: InputOptions,
                   transform: FeatureTransform | None, raw_fields: bool = False) -> Inputs:
    """Validate a decoded predict body into the model's input matrix; with `raw_fields`, records and columns also
    give their fields' raw codes (same pass)."""
    if type(payload) is not dict:
        raise InvalidInput(f"expected an object with `inputs` or `records`, got {type_name(payload)} - at `$`",
                           detail={"path": "$"})
    given = [k for k in DATA_KEYS if k in payload]
    if payload.keys() - PREDICT_KEYS or len(given) != 1:
        unknown = _names(payload.keys() - PREDICT_KEYS)
        why = (f"unknown field `{unknown[0]}`" if unknown else
               f"more than one of {', '.join(given)}" if given else "missing `inputs`, `records` or `columns`")
        raise InvalidInput(f"{why}; a predict body has one of {', '.join(DATA_KEYS)}, and optionally timeout_ms"
                           " - at `$`", detail={"path": "$", "unknown": unknown})
    timeout = payload.get("timeout_ms")
    if timeout is not None:
        timeout = timeout_ms(timeout, "$.timeout_ms")
    key = given[0]
    data = payload[key]
    if key == "inputs":
        if type(data) is list:
            return Inputs(_from_rows(data, session, options), timeout, None)
        if type(data) is dict:
            return Inputs(_from_tensor(data, session, options), timeout, None)
        raise InvalidInput(f"expected `inputs` to be an array of rows or a tensor object, got {type_name(data)}"
                           " - at `$.inputs`", detail={"path": "$.inputs"})
    if transform is None:
        raise InvalidInput(f"this model has no feature spec, so it takes `inputs` (rows of {session.n_features} "
                           f"numbers), not `{key}` - at `$.{key}`", detail={"path": f"$.{key}"})
    if key == "records":
        if type(data) is not list:
            raise InvalidInput(f"expected `records` to be an array of objects, got {type_name(data)} - at "
                               "`$.records`", detail={"path": "$.records"})
        check_rows(len(data), session, options, "$.records")
        x = np.empty((len(data), transform.width), dtype=session.input_dtype)
        raw = np.empty((len(data), len(transform.fields))) if raw_fields else None
        transform.fill_records(data, x, raw)
    else:
        if type(data) is not dict:
            raise InvalidInput(f"expected `columns` to be an object of arrays, got {type_name(data)} - at "
                               "`$.columns`", detail={"path": "$.columns"})
        n = transform.count_columns(data)
        check_rows(n, session, options, "$.columns")
        x = np.empty((n, transform.width), dtype=session.input_dtype)
        raw = np.empty((n, len(transform.fields))) if raw_fields else None
        transform.fill_columns(data, x, raw)
    if not options.allow_non_finite:
        refuse_transformed(x, transform, (lambda i, field: f"$.records[{i}].{field}") if key == "records" else
                           (lambda i, field: f"$.columns.{field}[{i}]"))
    return Inputs(x, timeout, raw)


def refuse_transformed(x: np.ndarray, transform: FeatureTransform, place: Callable[[int, str], str]) -> None:
    """Refuse a value a transform made non-finite (log1p of -1, an overflowing scale), naming the record and the
    field it came from by `place(record, field)`."""
    flat_index = first_non_finite(x)
    if flat_index < 0:
        return
    i, column = divmod(flat_index, x.shape[1])
    end = 0
    for feature in transform.features:
        end += feature.width
        if column < end:
            break
    path = place(i, feature.field)
    reason = (f"feature {feature.name!r} became {x[i, column].item()!r} for this value (the model's inputs must be "
              "finite)")
    raise InvalidInput(f"{reason} - at `{path}`", detail={"path": path, "record": i, "field": feature.field},
                       reason=reason)


def refuse_oversized(body: bytes, msgpack: bool, session: ModelSession, options: InputOptions, fields: int,
                     path: str) -> None:
    """Before parsing: a body holding more values than the model takes in one request is refused from a scan of its
    bytes, so that its values never become objects (a decoder makes a Python object of each: 8 MiB of empty JSON
    arrays is seconds of the event loop; the scan, milliseconds). A request takes at most `max_rows` rows of the
    model input's width, or of `fields` raw fields, plus `VALUES_ROOM` values for keys, shapes and parameters. JSON
    values are bounded by the commas and opening brackets outside strings, msgpack values counted from their heads.
    A native JSON body whose `inputs` or `records` hold too many rows is told so."""
    rows, width = row_limit(session, options), max(session.n_features, fields)
    limit = rows * width + VALUES_ROOM
    if len(body) <= limit:  # every value takes a byte at least: this body cannot hold more than the limit
        return
    if msgpack:
        n = msgpack_item_count(body, limit)
    else:
        for key in ("inputs", "records"):
            found = json_top_array_length(body, key.encode())
            if found > rows:
                check_rows(found, session, options, f"$.{key}")
        n = json_value_bound(body)
    if n > limit:
        held = f"more than {limit}" if msgpack else f"about {n}"  # the msgpack count stops past the limit
        raise InvalidInput(f"request holds {held} values, over this model's limit of {rows} rows of {width} values"
                           f" - at `{path}`", detail={"path": path, "values": n, "max_rows": rows})


def row_limit(session: ModelSession, options: InputOptions) -> int:
    """The most rows one request may hold: `max_rows`, or fewer when the model takes a fixed batch."""
    return min(options.max_rows, session.fixed_batch or options.max_rows)


def check_rows(n: int, session: ModelSession, options: InputOptions, path: str) -> None:
    if n == 0:
        raise InvalidInput(f"empty batch: send at least one row - at `{path}`", detail={"path": path})
    limit = row_limit(session, options)
    if n > limit:
        raise InvalidInput(f"batch of {n} rows is over this model's limit of {limit} - at `{path}`",
                           detail={"path": path, "rows": n, "max_rows": limit})
    if session.fixed_batch is not None and n != session.fixed_batch:
        raise InvalidInput(f"this model takes exactly {session.fixed_batch} rows, got {n} - at `{path}`",
                           detail={"path": path, "rows": n})


def _from_rows(rows: list[Any], session: ModelSession, options: InputOptions) -> np.ndarray:
    check_rows(len(rows), session, options, "$.inputs")
    out = np.empty((len(rows), session.n_features), dtype=session.input_dtype)
    fill_rows(rows, out, options.allow_non_finite, "$.inputs")
    return out


def _from_tensor(tensor: dict[str, Any], session: ModelSession, options: InputOptions) -> np.ndarray:
    if tensor.keys() != _TENSOR_KEYS:
        missing = sorted(_TENSOR_KEYS - tensor.keys())
        extra = _names(tensor.keys() - _TENSOR_KEYS)
        raise InvalidInput(f"a tensor has exactly `dtype`, `shape`, `data` (missing {missing}, unknown {extra})"
                           " - at `$.inputs`", detail={"path": "$.inputs", "missing": missing, "unknown": extra})
    dtype, shape, data = tensor["dtype"], tensor["shape"], tensor["data"]
    if type(dtype) is not str or dtype not in TENSOR_DTYPES:
        raise InvalidInput(f"tensor dtype must be one of {', '.join(TENSOR_DTYPES)}, got {shown(dtype)} - at "
                           "`$.inputs.dtype`", detail={"path": "$.inputs.dtype"})
    if (type(shape) is not list or len(shape) != 2 or any(type(s) is not int or s < 0 for s in shape)):
        raise InvalidInput(f"tensor shape must be [rows, features] with non-negative integers, got {shown(shape)}"
                           " - at `$.inputs.shape`", detail={"path": "$.inputs.shape"})
    rows, width = shape
    if width != session.n_features:
        raise InvalidInput(f"expected {session.n_features} features per row, got {width} - at `$.inputs.shape[1]`",
                           detail={"path": "$.inputs.shape[1]", "expected": session.n_features, "got": width})
    check_rows(rows, session, options, "$.inputs.shape[0]")
    if type(data) is not bytes:
        raise InvalidInput(f"tensor data must be raw bytes (msgpack bin), got {type_name(data)} - at "
                           "`$.inputs.data`", detail={"path": "$.inputs.data"})
    source = np.dtype(TENSOR_DTYPES[dtype])
    expected = rows * width * source.itemsize
    if len(data) != expected:
        raise InvalidInput(f"tensor data has {len(data)} bytes; shape {shape} of {dtype} needs {expected} - at "
                           "`$.inputs.data`", detail={"path": "$.inputs.data", "expected": expected,
                                                      "got": len(data)})
    raw = np.frombuffer(data, dtype=source).reshape(rows, width)
    return to_input_dtype(raw, session, options, lambda i: f"$.inputs.data[{i // width}][{i % width}]")


def to_input_dtype(raw: np.ndarray, session: ModelSession, options: InputOptions,
                   place: Callable[[int], str]) -> np.ndarray:
    """A `[rows, features]` array of a request's numeric dtype as the model's input dtype. Refuses NaN/Inf (unless
    the model allows them) and values out of the model dtype's range, named by `place(flat index)`."""
    floats = raw.dtype.kind == "f"
    if floats and not options.allow_non_finite:
        _refuse(first_non_finite(raw), raw, place, "non-finite value {!r} refused (the model's inputs must be finite)")
    if raw.dtype == session.input_dtype:
        return raw
    with np.errstate(over="ignore"):
        x = raw.astype(session.input_dtype)
    if floats:  # a value finite in the request may overflow the model's dtype
        if options.allow_non_finite:
            overflow = np.flatnonzero(np.isfinite(raw) & ~np.isfinite(x))
            bad = int(overflow[0]) if overflow.size else -1
        else:
            bad = first_non_finite(x)
        _refuse(bad, raw, place, f"value {{!r}} is out of the {x.dtype} range")
    return x


def _refuse(flat_index: int, raw: np.ndarray, place: Callable[[int], str], why: str) -> None:
    """Raise InvalidInput naming the value at `flat_index` of `raw`, unless the index is -1."""
    if flat_index < 0:
        return
    reason = why.format(raw.reshape(-1)[flat_index].item())
    path = place(flat_index)
    raise InvalidInput(f"{reason} - at `{path}`", detail={"path": path, "index": flat_index}, reason=reason)
