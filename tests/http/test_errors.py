"""Every bad request gets its status code and an error body that says what and where; the server keeps serving."""

import json
import math

import httpx
import msgpack
import numpy as np
import orjson
import pytest

from tests.conftest import copy_model, start_server

ROW = [1.0] * 22
MSGPACK = {"content-type": "application/msgpack"}


def error_of(r: httpx.Response) -> dict:
    body = msgpack.unpackb(r.content) if r.headers["content-type"] == "application/msgpack" else r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    return body["error"]


@pytest.fixture(autouse=True)
def still_serving(client):
    """After each bad request, a good one is still answered."""
    yield
    r = client.post("/v1/models/churn/predict", json={"inputs": [ROW]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("/v1/models/nope/predict", 404, "model_not_found", "no model named 'nope' (models: churn, churn_mlp, spend)"),
        ("/v1/models/churn/versions/9/predict", 404, "version_not_found", "model 'churn' has no version '9'"),
        ("/v1/models/churn/versions/x/predict", 404, "version_not_found", "model 'churn' has no version 'x'"),
    ],
)
def test_unknown_model_or_version(client, path, status, code, message):
    r = client.post(path, json={"inputs": [ROW]})
    assert r.status_code == status
    err = error_of(r)
    assert err["code"] == code and message in err["message"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"inputs": [[1, 2', 400, "body is not valid JSON"),
        (b"", 400, "empty body"),
        (b"\xff\xfe{}", 400, "body is not valid JSON"),
        (b'{"inputs": [[NaN]]}', 400, "body is not valid JSON"),
        (b"[1, 2]", 422, "expected an object with `inputs` or `records`, got array - at `$`"),
        (b'{"rows": []}', 422, "unknown field `rows`"),
        (b"{}", 422, "missing `inputs`, `records` or `columns`"),
        (b'{"inputs": 3}', 422, "expected `inputs` to be an array of rows or a tensor object, got int"),
        (b'{"inputs": []}', 422, "empty batch: send at least one row - at `$.inputs`"),
        (b'{"inputs": [[1, 2, 3]]}', 422, "expected 22 features per row, got 3 - at `$.inputs[0]`"),
        (orjson.dumps({"inputs": [ROW, ROW[:21]]}), 422, "expected 22 features per row, got 21 - at `$.inputs[1]`"),
        (orjson.dumps({"inputs": [ROW, [*ROW[:5], "x", *ROW[6:]]]}), 422,
         "expected a number, got string - at `$.inputs[1][5]`"),
        (orjson.dumps({"inputs": [[*ROW[:3], None, *ROW[4:]]]}), 422,
         "expected a number, got null - at `$.inputs[0][3]`"),
        (orjson.dumps({"inputs": [[*ROW[:3], True, *ROW[4:]]]}), 422,
         "expected a number, got bool - at `$.inputs[0][3]`"),
        (orjson.dumps({"inputs": [[*ROW[:3], 1e39, *ROW[4:]]]}), 422, "out of the float32 range - at `$.inputs[0][3]`"),
        (orjson.dumps({"inputs": [ROW] * 4097}), 422, "batch of 4097 rows is over this model's limit of 4096"),
        (b'{"inputs": ' + b"[" * 2_000 + b"]" * 2_000 + b"}", 400, "depth limit exceeded"),  # deeply nested
        # As deep, and more arrays than the model takes values: refused before the parser reads it.
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "request holds about 100001 values"),
        (b'{"inputs": [[1]], "inputs": ' + orjson.dumps([ROW]) + b"}", 400, "duplicate key 'inputs'"),
        (b'{"records": [{"age": 1, "plan": "pro", "age": 2}]}', 400, "duplicate key 'age': which value is meant "
         "is ambiguous - at `$.records[0]`"),
        (b'{"inputs": [[1]], "in\\u0070uts": [[2]]}', 400, "duplicate key 'inputs'"),  # the same key, escaped
        (b'{"inputs": [[1, 2, "\xff\xfe"]]}', 400, "body is not valid JSON"),  # invalid UTF-8 inside a string
        (orjson.dumps({"records": [{"age": 1}] * 5000}), 422,
         "this model's limit of 4096 - at `$.records`"),  # a huge number of records
        (orjson.dumps({"inputs": [ROW, {"a": 1}]}), 422,
         "expected a row (an array of 22 numbers), got object - at `$.inputs[1]`"),
        (json.dumps({"inputs": [[*ROW[:3], 2**200, *ROW[4:]]]}).encode(), 422, "out of the float32 range"),
    ],
)
def test_bad_json_bodies(client, body, status, message):
    r = client.post("/v1/models/churn/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = error_of(r)
    assert message in err["message"], err
    assert err["code"] == ("malformed_body" if status == 400 else "invalid_input")
    if "duplicate key" in message:
        assert err["detail"]["path"].startswith("$")


def test_error_detail_names_the_place(client):
    r = client.post("/v1/models/churn/predict", json={"inputs": [ROW, ROW, [*ROW[:7], "a", *ROW[8:]]]})
    assert error_of(r)["detail"] == {"path": "$.inputs[2][7]", "row": 2, "column": 7}


def tensor(dtype="float32", shape=(1, 22), data=None):
    return {"dtype": dtype, "shape": list(shape), "data": data if data is not None else b"\0" * (4 * 22)}


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"\x81\xa6inputs\x91", 400, "body is not valid msgpack"),  # truncated
        (b"\xdd\xff\xff\xff\xff", 400, "body is not valid msgpack"),  # array declaring 4G items
        (b"\xdf\xff\xff\xff\xff", 400, "body is not valid msgpack"),  # map declaring 4G pairs
        (b"\x81\xa6inputs\xc6\xff\xff\xff\xff", 400, "body is not valid msgpack"),  # bin declaring 4 GiB
        (b"\x81\xa6inputs" + b"\x91" * 100_000 + b"\x90", 400, "body is not valid msgpack"),  # deeply nested
        (b"\x81\xa6inputs\xa2\xff\xfe", 400, "body is not valid msgpack: UnicodeDecodeError"),  # invalid UTF-8
        (b"\x81\x01\x90", 400, "body is not valid msgpack"),  # a map key that is not a string
        (b"\x82\xa6inputs\x90\xa6inputs" + msgpack.packb([ROW]), 400, "duplicate key 'inputs'"),
        (msgpack.packb({"inputs": [[msgpack.ExtType(1, b"x")] * 22]}), 400, "ext type 1 is not accepted"),
        (msgpack.packb({"inputs": [ROW]}) + b"\x00", 400, "body is not valid msgpack"),  # trailing data
        (msgpack.packb(msgpack.ExtType(5, b"abc")), 400, "ext type 5 is not accepted"),
        (msgpack.packb({"inputs": [[*ROW[:2], math.nan, *ROW[3:]]]}), 422,
         "non-finite value nan refused (the model's inputs must be finite) - at `$.inputs[0][2]`"),
        (msgpack.packb({"inputs": [[*ROW[:2], math.inf, *ROW[3:]]]}), 422, "non-finite value inf refused"),
        (msgpack.packb({"inputs": tensor(dtype="float16")}), 422, "tensor dtype must be one of"),
        (msgpack.packb({"inputs": tensor(shape=(1, 21), data=b"\0" * 84)}), 422,
         "expected 22 features per row, got 21 - at `$.inputs.shape[1]`"),
        (msgpack.packb({"inputs": tensor(shape=(-1, 22))}), 422, "tensor shape must be [rows, features]"),
        (msgpack.packb({"inputs": tensor(shape=(1, 22, 1))}), 422, "tensor shape must be [rows, features]"),
        (msgpack.packb({"inputs": tensor(shape=(0, 22), data=b"")}), 422, "empty batch"),
        (msgpack.packb({"inputs": tensor(shape=(2**40, 22))}), 422, "over this model's limit of 4096"),
        (msgpack.packb({"inputs": tensor(data=b"\0" * 87)}), 422,
         "tensor data has 87 bytes; shape [1, 22] of float32 needs 88"),
        (msgpack.packb({"inputs": tensor(data=[0.0] * 22)}), 422, "tensor data must be raw bytes (msgpack bin)"),
        (msgpack.packb({"inputs": {"dtype": "float32", "shape": [1, 22]}}), 422, "missing ['data']"),
        (msgpack.packb({"inputs": tensor(data=b"\0" * 84 + b"\x00\x00\xc0\x7f")}), 422,
         "non-finite value nan refused (the model's inputs must be finite) - at `$.inputs.data[0][21]`"),
    ],
)
def test_bad_msgpack_bodies(client, payload, status, message):
    r = client.post("/v1/models/churn/predict", content=payload, headers=MSGPACK)
    assert r.status_code == status, r.content
    assert r.headers["content-type"] == "application/msgpack"
    err = error_of(r)
    assert message in err["message"], err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e300, "value 1e+300 is out of the float32 range - at `$.inputs.data[1][4]`"),
        (math.inf, "non-finite value inf refused (the model's inputs must be finite) - at `$.inputs.data[1][4]`"),
    ],
)
def test_float64_tensor_values_the_model_cannot_take(client, value, message):
    x = np.ones((2, 22), dtype="<f8")
    x[1, 4] = value
    r = client.post("/v1/models/churn/predict", headers=MSGPACK,
                    content=msgpack.packb({"inputs": tensor(dtype="float64", shape=(2, 22), data=x.tobytes())}))
    assert r.status_code == 422
    assert message in error_of(r)["message"]


def test_unsupported_media_type(client):
    r = client.post("/v1/models/churn/predict", content=b"inputs=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"


def test_not_acceptable(client):
    r = client.post("/v1/models/churn/predict", json={"inputs": [ROW]}, headers={"accept": "text/html"})
    assert r.status_code == 406
    assert "accept application/json or application/msgpack" in error_of(r)["message"]


def test_errors_answer_in_the_accepted_format(client):
    r = client.post("/v1/models/churn/predict", json={"inputs": [[1]]}, headers={"accept": "application/msgpack"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/msgpack"
    assert "expected 22 features per row, got 1" in error_of(r)["message"]


def test_predict_takes_post_only(client):
    r = client.get("/v1/models/churn/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert error_of(r)["code"] == "method_not_allowed"


def test_unknown_route_is_a_json_404(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


@pytest.mark.parametrize("length", [b"12abc", b"-1", b"99999999999999999999999999", b"1, 2"])
def test_invalid_content_length(client, server, length):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + length + b"\r\n\r\n{}")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b'"error"' in reply  # a JSON error body, never a bare text or a stack trace


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    copy_model("churn", models, config="[inputs]\nallow_non_finite = true\nmax_rows = 8\n")
    srv = start_server(models, "--max-body-bytes", "2048")
    yield srv
    srv.stop()


def test_body_over_the_limit_declared(small_limit_server):
    r = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", json={"inputs": [ROW] * 40})
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "body_too_large" and "over the limit of 2048 bytes" in err["message"]


def test_body_over_the_limit_chunked(small_limit_server):
    def chunks():
        yield b'{"inputs": ['
        for _ in range(100):
            yield orjson.dumps(ROW) + b","
        yield orjson.dumps(ROW) + b"]}"

    r = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", content=chunks(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "over the limit of 2048 bytes" in error_of(r)["message"]


def test_non_finite_values_served_when_the_model_allows_them(small_limit_server):
    row = [*ROW[:3], math.nan, *ROW[4:]]
    r = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", headers=MSGPACK,
                   content=msgpack.packb({"inputs": [row]}))
    assert r.status_code == 200, r.content
    assert set(msgpack.unpackb(r.content)["outputs"]) == {"label", "probabilities"}


def test_configured_max_rows(small_limit_server):
    r = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", json={"inputs": [ROW] * 9})
    assert r.status_code == 422
    assert error_of(r)["detail"] == {"path": "$.inputs", "rows": 9, "max_rows": 8}


def test_float64_tensor_with_allowed_non_finite_still_refuses_overflow(small_limit_server):
    x = np.ones((2, 22), dtype="<f8")
    x[0, 1] = math.nan
    ok = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", headers=MSGPACK,
                    content=msgpack.packb({"inputs": tensor(dtype="float64", shape=(2, 22), data=x.tobytes())}))
    assert ok.status_code == 200, ok.content
    x[1, 3] = -1e300
    r = httpx.post(f"{small_limit_server.url}/v1/models/churn/predict", headers=MSGPACK,
                   content=msgpack.packb({"inputs": tensor(dtype="float64", shape=(2, 22), data=x.tobytes())}))
    assert r.status_code == 422
    assert "value -1e+300 is out of the float32 range - at `$.inputs.data[1][3]`" in error_of(r)["message"]


def test_integer_tensors_are_accepted(client):
    x = np.arange(44, dtype="<i8").reshape(2, 22)
    r = client.post("/v1/models/churn/predict", headers=MSGPACK,
                    content=msgpack.packb({"inputs": tensor(dtype="int64", shape=(2, 22), data=x.tobytes())}))
    assert r.status_code == 200
    assert len(msgpack.unpackb(r.content)["outputs"]["label"]) == 2


def test_a_body_holding_more_values_than_the_model_takes_is_refused_before_parsing(client):
    """100,000 empty arrays in one row: a decoder would make an object of each; the body is refused from a scan of
    its bytes instead (the model takes 4,096 rows of 22 values)."""
    body = b'{"inputs": [[' + b",".join([b"[]"] * 100_000) + b"]]}"
    r = client.post("/v1/models/churn/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert error_of(r)["message"].startswith("request holds about 200002 values, over this model's limit of 4096 rows")
    r = client.post("/v1/models/churn/predict", content=msgpack.packb({"inputs": [[[]] * 100_000]}), headers=MSGPACK)
    assert r.status_code == 422, r.content
    assert error_of(r)["message"].startswith("request holds more than 91136 values")
