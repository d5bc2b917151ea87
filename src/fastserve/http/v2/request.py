"""A V2 inference request: the JSON object (and the binary tensor data after it) checked and split into its parts,
before any model version is chosen; then, for the chosen version, its input matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from fastserve._core import FeatureTransform, fill_rows
from fastserve._core.rows import type_name
from fastserve.config import InputOptions
from fastserve.exceptions import InvalidInput, MalformedBody, RequestError
from fastserve.http.inputs import check_rows, refuse_transformed, to_input_dtype
from fastserve.http.v2.tensors import NUMERIC, Tensor, check_datatype, fail
from fastserve.runtime import ModelSession

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs", "model_name", "model_version"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
# Parameters of other extensions, refused rather than ignored: ignoring them would answer something else.
_UNSUPPORTED = {"shared_memory_region": "shared memory", "classification": "the classification extension"}


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[tuple[str, bool | None]] | None  # (name, binary) as asked; None: every output
    binary_output: bool  # `binary_data_output`: the default for outputs that do not say
    timeout_ms: float | None  # the `timeout` parameter (microseconds, as Triton's clients send it)


def split_body(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """(the request object's JSON, the binary tensor data after it) by Inference-Header-Content-Length."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise RequestError(f"Inference-Header-Content-Length {header_length.decode('latin-1')!r} must be a byte "
                           f"count within the body's {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def load_request(head: bytes) -> Any:
    """The request object's JSON, decoded (not yet checked)."""
    if not head:
        raise MalformedBody("empty body; send an inference request object such as {\"inputs\": [...]}")
    try:
        return orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"inference request is not valid JSON: {exc}") from exc


def parse_request(request: Any, tail: memoryview) -> InferRequest:
    """The request object (as `load_request` decoded it), with each input's data as sent: a JSON array, or its slice
    of the binary tail."""
    if type(request) is not dict:
        raise fail(f"expected an inference request object, got {type_name(request)}", "$")
    if not request.keys() <= _REQUEST_KEYS:
        unknown = min(request.keys() - _REQUEST_KEYS)
        raise fail(f"unknown field `{unknown}`; an inference request has {', '.join(sorted(_REQUEST_KEYS))}", unknown)
    request_id = request.get("id")
    if request_id is not None and type(request_id) is not str:
        raise fail(f"expected a string, got {type_name(request_id)}", "id")
    parameters = _parameters(request.get("parameters"), "parameters")
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    timeout = parameters.get("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout < 1e12):
        raise fail(f"expected a timeout in microseconds (a number > 0), got {timeout!r}", "parameters.timeout")
    inputs = _inputs(request.get("inputs"), tail)
    outputs = _outputs(request["outputs"]) if "outputs" in request else None
    return InferRequest(request_id, inputs, outputs, binary_output, timeout / 1000 if timeout is not None else None)


def _parameters(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise fail(f"expected an object of parameters, got {type_name(value)}", path)
    for key, what in _UNSUPPORTED.items():
        if key in value:
            raise fail(f"{what} is not supported by this server", f"{path}.{key}")
    return value


def _flag(parameters: dict[str, Any], key: str, path: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise fail(f"expected true or false, got {type_name(value)} {value!r}", f"{path}.{key}")
    return value


def _inputs(value: Any, tail: memoryview) -> list[Tensor]:
    if type(value) is not list or not value:
        raise fail(f"expected a non-empty array of input tensors, got {type_name(value)}", "inputs")
    tensors, offset = [], 0
    for i, item in enumerate(value):
        if type(item) is not dict:
            raise fail(f"expected an input tensor object, got {type_name(item)}", f"inputs[{i}]")
        if not item.keys() <= _INPUT_KEYS:
            unknown = min(item.keys() - _INPUT_KEYS)
            raise fail(f"unknown field `{unknown}`; an input has {', '.join(sorted(_INPUT_KEYS))}", f"inputs[{i}]")
        name, shape = item.get("name"), item.get("shape")
        if type(name) is not str or not name:
            raise fail(f"expected the input's name (a string), got {type_name(name)}", f"inputs[{i}].name")
        datatype = check_datatype(item.get("datatype"), f"inputs[{i}].datatype")
        if type(shape) is not list or not shape or not all(type(d) is int and d >= 0 for d in shape):
            raise fail(f"expected a shape (an array of non-negative integers), got {shape!r}", f"inputs[{i}].shape")
        parameters = item.get("parameters")
        size = None if parameters is None else _parameters(parameters, f"inputs[{i}].parameters").get(
            "binary_data_size")
        if size is None:
            data = item.get("data")
            if type(data) is not list:
                raise fail(f"expected `data` (an array) or parameters.binary_data_size, got {type_name(data)}",
                           f"inputs[{i}].data")
            tensors.append(Tensor(i, name, datatype, shape, data, False))
            continue
        path = f"inputs[{i}]"
        if type(size) is not int or size < 0:
            raise fail(f"expected a byte count, got {size!r}", f"{path}.parameters.binary_data_size")
        if "data" in item:
            raise fail("an input has `data` or binary data (binary_data_size), not both", f"{path}.data")
        if offset + size > len(tail):
            raise fail(f"binary data ends at byte {len(tail)} of the binary part; this input needs bytes {offset} to "
                       f"{offset + size} (is Inference-Header-Content-Length right?)",
                       f"{path}.parameters.binary_data_size")
        tensors.append(Tensor(i, name, datatype, shape, tail[offset:offset + size], True))
        offset += size
    if offset != len(tail):
        raise RequestError(f"the body has {len(tail)} bytes of binary data after the JSON object; the inputs' "
                           f"binary_data_size add up to {offset}")
    return tensors


def _outputs(value: Any) -> list[tuple[str, bool | None]]:
    if type(value) is not list:
        raise fail(f"expected an array of requested outputs, got {type_name(value)}", "outputs")
    out: list[tuple[str, bool | None]] = []
    asked: dict[str, int] = {}
    for i, item in enumerate(value):
        path = f"outputs[{i}]"
        if type(item) is not dict or type(item.get("name")) is not str:
            raise fail(f"expected an object with the output's `name`, got {type_name(item)}", path)
        # Each output once: an answer holding an output every time it is asked for grows as rows times asks.
        if item["name"] in asked:
            raise fail(f"output `{item['name']}` is requested twice (also at outputs[{asked[item['name']]}])",
                       f"{path}.name")
        asked[item["name"]] = i
        unknown = sorted(item.keys() - _OUTPUT_KEYS)
        if unknown:
            raise fail(f"unknown field `{unknown[0]}`; a requested output has name and parameters", path)
        parameters = _parameters(item.get("parameters"), f"{path}.parameters")
        # None: the request's binary_data_output decides.
        out.append((item["name"], _flag(parameters, "binary_data", f"{path}.parameters")
                    if "binary_data" in parameters else None))
    return out


def selected_outputs(request: InferRequest, session: ModelSession) -> list[tuple[str, bool]]:
    """(output name, as binary data) for each output the answer holds, in the order asked, checked against the
    model's outputs."""
    if request.outputs is None:
        return [(name, request.binary_output) for name in session.output_names]
    known = session.output_names
    for i, (name, _) in enumerate(request.outputs):
        if name not in known:
            raise fail(f"the model has no output `{name}`; its outputs are {', '.join(known)}", f"outputs[{i}].name")
    return [(name, request.binary_output if binary is None else binary) for name, binary in request.outputs]


def model_input(request: InferRequest, session: ModelSession, options: InputOptions,
                transform: FeatureTransform | None, raw_fields: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The chosen version's `[rows, features]` matrix: from the one input named as the model's input, or, for a model
    with a feature spec, from one input per raw field (then, with `raw_fields`, also their raw codes for the drift
    sketches)."""
    tensors = request.inputs
    model_name = session.input.name
    if len(tensors) == 1 and tensors[0].name == model_name:
        return _tensor_input(tensors[0], session, options), None
    for t in tensors:
        if t.name == model_name:
            raise fail(f"input `{model_name}` (the model's input tensor) comes alone, not with other inputs",
                       f"{t.path}.name")
    if transform is None:
        raise fail(f"this model's input is `{model_name}` ({session.input.dtype} [-1, {session.n_features}]), got "
                   f"`{tensors[0].name}`", f"{tensors[0].path}.name")
    return _field_inputs(tensors, session, options, transform, raw_fields)


def _tensor_input(t: Tensor, session: ModelSession, options: InputOptions) -> np.ndarray:
    if t.datatype not in NUMERIC:
        raise fail(f"input `{t.name}` takes numbers ({session.input.dtype} or any of {', '.join(NUMERIC)}), got "
                   f"{t.datatype}", f"{t.path}.datatype")
    width = session.n_features
    if len(t.shape) != 2 or t.shape[1] != width:
        raise fail(f"expected shape [rows, {width}], got {t.shape}", f"{t.path}.shape")
    rows = t.shape[0]
    check_rows(rows, session, options, f"{t.path}.shape[0]")
    if t.binary:
        raw = t.array().reshape(rows, width)
        return to_input_dtype(raw, session, options, lambda i: f"{t.path}.data[{i}]")
    data = t.data
    if t.datatype in ("INT32", "INT64"):
        data, flat = t.values(), True  # flattened, each value checked as an integer in its datatype's range
    else:
        flat = len(data) == rows * width and type(data[0]) is not list
        if not flat and len(data) != rows:
            raise fail(f"data has {len(data)} values; shape {t.shape} needs {rows * width} (flat) or {rows} rows of "
                       f"{width}", f"{t.path}.data")
    out = np.empty((rows, width), dtype=session.input_dtype)
    try:
        fill_rows([data[i * width:(i + 1) * width] for i in range(rows)] if flat else data, out,
                  options.allow_non_finite, f"{t.path}.data")
    except InvalidInput as exc:
        if not flat or not isinstance(exc.detail, dict) or "column" not in exc.detail:
            raise
        i = exc.detail["row"] * width + exc.detail["column"]  # name the place in the flat array as sent
        raise fail(exc.reason, f"{t.path}.data[{i}]", index=i) from None
    return out


def _field_inputs(tensors: list[Tensor], session: ModelSession, options: InputOptions,
                  transform: FeatureTransform, raw_fields: bool) -> tuple[np.ndarray, np.ndarray | None]:
    fields = set(transform.fields)
    index: dict[str, Tensor] = {}
    rows = -1
    for t in tensors:
        if t.name not in fields:
            if transform.strict:
                raise fail(f"unknown field `{t.name}`; this model reads {', '.join(transform.fields)} (or one input "
                           f"`{session.input.name}` [rows, {session.n_features}])", f"{t.path}.name")
            continue
        if t.name in index:
            raise fail(f"input `{t.name}` is given twice (also at {index[t.name].path})", f"{t.path}.name")
        if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)):
            raise fail(f"a raw field's input has shape [rows] or [rows, 1], got {t.shape}", f"{t.path}.shape")
        if rows < 0:
            rows = t.shape[0]
            # Before any element is read: binary data is not bounded by the request object's values.
            check_rows(rows, session, options, f"{t.path}.shape[0]")
        elif t.shape[0] != rows:
            first = next(iter(index.values()))
            raise fail(f"input `{t.name}` has {t.shape[0]} rows, `{first.name}` has {rows}: one row per record",
                       f"{t.path}.shape[0]")
        index[t.name] = t
    if rows < 0:
        raise fail(f"no input this model reads: send `{session.input.name}` [rows, {session.n_features}], or raw "
                   f"fields ({', '.join(transform.fields)})", "inputs")
    columns = {name: t.values() for name, t in index.items()}
    x = np.empty((rows, transform.width), dtype=session.input_dtype)
    raw = np.empty((rows, len(transform.fields))) if raw_fields else None
    try:
        transform.fill_columns(columns, x, raw)
    except InvalidInput as exc:
        if not isinstance(exc.detail, dict) or exc.detail.get("field") not in index:
            raise
        i, t = exc.detail["record"], index[exc.detail["field"]]
        raise fail(exc.reason, f"{t.path}.data[{i}]", index=i, field=t.name) from None
    if not options.allow_non_finite:
        refuse_transformed(x, transform, lambda i, field: f"{index[field].path}.data[{i}]")
    return x, raw


def first_values(request: InferRequest, field: str) -> dict[str, Any] | None:
    """`{"columns": {field: [first value]}}` when an input named `field` has a raw field's shape and a first value:
    what a canary sticky on a field reads. Only that value is read (the input is checked whole later, once a version
    is chosen)."""
    for t in request.inputs:
        if t.name == field and (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)) and t.shape[0] > 0:
            try:
                return {"columns": {field: t.first().values()}}
            except InvalidInput:
                return None  # refused, with its place in the whole input, once a version is chosen
    return None
