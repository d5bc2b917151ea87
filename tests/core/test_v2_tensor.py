"""`v2_tensor` reads the common V2 inference request (one input of the model's float dtype, JSON or binary data) once
its JSON is decoded: for every request it either declines (None: the general way, http/v2/request.py, reads it) or
gives exactly what the general way gives (the matrix, the id, `binary_data_output`, the timeout)."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastserve._core.rows import v2_tensor
from fastserve.config import InputOptions
from fastserve.exceptions import FastserveError
from fastserve.http.inputs import row_limit
from fastserve.http.v2.request import model_input, parse_request, split_body
from fastserve.runtime import ModelSession
from fastserve.runtime.session import RuntimeOptions
from tests.conftest import write_tiny_model
from tests.timing import judge, ratio

MAX_ROWS = 8
OPTIONS = InputOptions(max_rows=MAX_ROWS)


@pytest.fixture(scope="module", params=["FP32", "FP64"])
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelSession:
    path = write_tiny_model(tmp_path_factory.mktemp(request.param), double=request.param == "FP64", n_features=3)
    return ModelSession(path, RuntimeOptions(device="cpu"), "tiny")


def datatype(session: ModelSession) -> str:
    return "FP32" if session.input_dtype == np.float32 else "FP64"


def body(session: ModelSession, x: np.ndarray, binary: bool, **changes: Any) -> tuple[bytes, bytes | None]:
    """(body, Inference-Header-Content-Length) of a request for `x`; `changes` replace the input's fields."""
    tensor: dict[str, Any] = {"name": session.input.name, "shape": list(x.shape), "datatype": datatype(session)}
    data = np.ascontiguousarray(x, dtype=session.input_dtype.newbyteorder("<")).tobytes()
    if binary:
        tensor["parameters"] = {"binary_data_size": len(data)}
    else:
        tensor["data"] = x.ravel().tolist()
    tensor.update(changes)
    head = json.dumps({"inputs": [tensor]}).encode()
    return (head + data, str(len(head)).encode()) if binary else (head, None)


def read(session: ModelSession, raw: bytes, header: bytes | None) -> Any:
    head, tail = split_body(raw, header)
    return v2_tensor(orjson.loads(head), tail, session.input.name, session.n_features, row_limit(session, OPTIONS),
                     session.input_dtype == np.float32)


def general(session: ModelSession, raw: bytes, header: bytes | None) -> Any:
    """The general way's reading, or None where it refuses."""
    try:
        head, tail = split_body(raw, header)
        request = parse_request(orjson.loads(head), tail)
        x, _ = model_input(request, session, OPTIONS, None)
    except (FastserveError, orjson.JSONDecodeError):
        return None
    return x, request.id, request.binary_output, request.timeout_ms


def agrees(session: ModelSession, raw: bytes, header: bytes | None) -> bool:
    """Declined, or read as the general way reads it."""
    try:
        got = read(session, raw, header)
    except orjson.JSONDecodeError:  # (NaN or Infinity as JSON: refused before either reads it)
        return True
    if got is None:
        return True
    want = general(session, raw, header)
    assert want is not None, "read a request the general way refuses"
    x, request_id, binary_output, timeout = got
    assert x.dtype == want[0].dtype
    np.testing.assert_array_equal(x, want[0])
    assert (request_id, binary_output, None if timeout is None else timeout / 1000) == want[1:]
    return False


@pytest.mark.parametrize("binary", [False, True])
def test_reads_the_common_request(session: ModelSession, binary: bool) -> None:
    x = (np.arange(6, dtype=np.float64).reshape(2, 3) / 7).astype(session.input_dtype)
    raw, header = body(session, x, binary)
    assert not agrees(session, raw, header)  # read, and alike
    np.testing.assert_array_equal(read(session, raw, header)[0], x)


def test_reads_rows_as_nested_data_and_the_request_fields(session: ModelSession) -> None:
    request = {"id": "r-1", "parameters": {"binary_data_output": True, "timeout": 2500, "other": 1},
               "model_name": "tiny", "inputs": [{"name": session.input.name, "shape": [2, 3],
                                                 "datatype": datatype(session), "data": [[1, 2, 3.5], [4, 5, 6]]}]}
    raw = orjson.dumps(request)
    assert not agrees(session, raw, None)
    assert read(session, raw, None)[1:] == ("r-1", True, 2500)


ONE = np.ones((2, 3))


def declined() -> list[tuple[str, dict[str, Any], bool]]:
    """(why, a change to the input, binary) of requests this reader leaves to the general way."""
    return [
        ("another datatype", {"datatype": "INT64"}, False),
        ("another name", {"name": "other"}, False),
        ("a row too wide", {"shape": [2, 4]}, False),
        ("a shape of one", {"shape": [6]}, False),
        ("no rows", {"shape": [0, 3], "data": []}, False),
        ("too many rows", {"shape": [MAX_ROWS + 1, 3], "data": [1.0] * 3 * (MAX_ROWS + 1)}, False),
        ("a bool in the shape", {"shape": [True, 3]}, False),
        ("a short row", {"data": [[1.0, 2.0], [3.0, 4.0, 5.0]]}, False),
        ("too few values", {"data": [1.0] * 5}, False),
        ("a string value", {"data": [1.0, "2", 3.0, 4.0, 5.0, 6.0]}, False),
        ("a bool value", {"data": [1.0, True, 3.0, 4.0, 5.0, 6.0]}, False),
        ("a null value", {"data": [1.0, None, 3.0, 4.0, 5.0, 6.0]}, False),
        ("an unknown field", {"extra": 1}, False),
        ("shared memory", {"parameters": {"shared_memory_region": "r"}}, False),
        ("data and binary data", {"data": [1.0] * 6}, True),
        ("a byte count that is not the shape's", {"parameters": {"binary_data_size": 8}}, True),
        ("a bool byte count", {"parameters": {"binary_data_size": True}}, True),
    ]


@pytest.mark.parametrize(("why", "change", "binary"), declined(), ids=[d[0] for d in declined()])
def test_declines_what_it_does_not_read_alike(session: ModelSession, why: str, change: dict[str, Any],
                                              binary: bool) -> None:
    raw, header = body(session, ONE, binary, **change)
    assert read(session, raw, header) is None


@pytest.mark.parametrize("request_change", [
    {"outputs": [{"name": "label"}]}, {"id": 7}, {"parameters": {"binary_data_output": 1}},
    {"parameters": {"timeout": 0}}, {"parameters": {"timeout": True}}, {"parameters": {"classification": 2}},
    {"parameters": []}, {"unknown": 1},
])
def test_declines_request_fields_it_does_not_read(session: ModelSession, request_change: dict[str, Any]) -> None:
    raw, _ = body(session, ONE, False)
    request = orjson.loads(raw)
    request.update(request_change)
    assert read(session, orjson.dumps(request), None) is None


def test_declines_non_finite_and_out_of_range_values(session: ModelSession) -> None:
    for value in (np.nan, np.inf, -np.inf):
        x = ONE.copy()
        x[1, 2] = value
        raw, header = body(session, x, True)
        assert read(session, raw, header) is None
    if session.input_dtype == np.float32:
        raw, _ = body(session, ONE, False, data=[1.0, 2.0, 1e39, 4.0, 5.0, 6.0])
        assert read(session, raw, None) is None


def test_declines_an_int_past_the_double_range(session: ModelSession) -> None:
    # (orjson reads such a number as a float, or refuses it; a decoder that gives ints is declined, not failed)
    request = {"inputs": [{"name": session.input.name, "shape": [1, 3], "datatype": datatype(session),
                           "data": [1.0, 10 ** 400, 3.0]}]}
    assert v2_tensor(request, memoryview(b""), session.input.name, 3, MAX_ROWS,
                     session.input_dtype == np.float32) is None


def test_declines_binary_data_left_over_or_missing(session: ModelSession) -> None:
    raw, header = body(session, ONE, True)
    assert read(session, raw + b"\x00" * 8, header) is None
    raw, _ = body(session, ONE, False)
    assert read(session, raw + b"\x00" * 8, str(len(raw)).encode()) is None


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-2**70, 2**70),
                   st.sampled_from([None, True, "1", [1.0]]))


@settings(max_examples=300, deadline=None)
@given(rows=st.integers(0, MAX_ROWS + 1), width=st.integers(1, 4), data=st.data(), nested=st.booleans(),
       binary=st.booleans())
def test_any_request_is_declined_or_read_as_the_general_way_reads_it(session: ModelSession, rows: int, width: int,
                                                                     data: st.DataObject, nested: bool,
                                                                     binary: bool) -> None:
    if binary:
        x = np.asarray(data.draw(st.lists(st.floats(width=32), min_size=rows * width, max_size=rows * width)))
        raw, header = body(session, x.reshape(rows, width), True)
    else:
        flat = data.draw(st.lists(values, min_size=rows * width, max_size=rows * width))
        items = [flat[i * width:(i + 1) * width] for i in range(rows)] if nested else flat
        tensor = {"name": session.input.name, "shape": [rows, width], "datatype": datatype(session), "data": items}
        raw, header = json.dumps({"inputs": [tensor]}).encode(), None
    agrees(session, raw, header)


def test_the_request_it_reads_is_not_changed(session: ModelSession) -> None:
    raw, _ = body(session, ONE, False)
    request = orjson.loads(raw)
    kept = copy.deepcopy(request)
    v2_tensor(request, memoryview(b""), session.input.name, 3, MAX_ROWS, session.input_dtype == np.float32)
    assert request == kept


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_time_is_linear_in_the_request(binary: bool) -> None:
    # Its worst request: the most rows, read to the last value, which it declines (a string in JSON data, NaN in
    # binary data).
    def request(rows: int) -> tuple[dict[str, Any], memoryview]:
        tensor: dict[str, Any] = {"name": "x", "shape": [rows, 100], "datatype": "FP32"}
        if binary:
            x = np.ones((rows, 100), dtype=np.float32)
            x[-1, -1] = np.nan
            tensor["parameters"] = {"binary_data_size": x.nbytes}
            return {"inputs": [tensor]}, memoryview(x.tobytes())
        data: list[Any] = [[1.5] * 100 for _ in range(rows)]
        data[-1][-1] = "1"
        tensor["data"] = data
        return {"inputs": [tensor]}, memoryview(b"")

    (small, small_tail), (large, large_tail) = request(2_000), request(20_000)
    assert v2_tensor(small, small_tail, "x", 100, 10 ** 6, True) is None
    judge(f"v2_tensor ({'binary' if binary else 'json'} data)", len(orjson.dumps(small)) + len(small_tail),
          len(orjson.dumps(large)) + len(large_tail),
          ratio(lambda: v2_tensor(small, small_tail, "x", 100, 10 ** 6, True),
                lambda: v2_tensor(large, large_tail, "x", 100, 10 ** 6, True), cold=False))
