"""V2 tensors (`http/v2/tensors.py`): datatypes converted to the model's input, JSON and binary layouts, BYTES, and
tensors refused with what and where."""

import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.conftest import MODELS
from tests.http.v2.helpers import (
    failure,
    in_process,
    tensor_input,
)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_other_numeric_datatypes_convert_to_the_model_input(tc, binary, dtype):
    x = np.arange(-22, 22, dtype=dtype).reshape(2, 22)
    result = tc.infer("churn", [tensor_input(x, binary)],
                      outputs=[triton.InferRequestedOutput("probabilities", binary_data=True)])
    expected = in_process(MODELS / "churn" / "1" / "model.onnx", x.astype(np.float32))["probabilities"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected)


def test_plain_json_nested_data_and_the_protocol_shapes(server, golden):
    """A request written by hand, as the protocol allows: nested data, no binary extension."""
    x = golden["churn"]["inputs"][:2].astype(np.float32)
    body = {"id": "7", "inputs": [{"name": "inputs", "shape": [2, 22], "datatype": "FP32", "data": x.tolist()}],
            "outputs": [{"name": "label"}]}
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in r.headers
    expected = in_process(MODELS / "churn" / "1" / "model.onnx", x)["label"]
    assert r.json() == {"model_name": "churn", "model_version": "1", "id": "7",
                        "outputs": [{"name": "label", "datatype": "INT64", "shape": [2], "data": expected.tolist()}]}


def test_binary_answer_layout(server, golden):
    """The binary tail follows the JSON header in the order of the outputs, sized by each output's parameters."""
    x = golden["churn"]["inputs"][:3].astype(np.float32)
    head = json.dumps({"inputs": [{"name": "inputs", "shape": [3, 22], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                                   {"name": "label", "parameters": {"binary_data": True}}]}).encode()
    r = httpx.post(f"{server.url}/v2/models/churn/infer", content=head + x.tobytes(),
                   headers={"inference-header-content-length": str(len(head)),
                            "content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    response = json.loads(r.content[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in response["outputs"]]
    assert sizes == [24, 24] and len(r.content) == n + 48
    expected = in_process(MODELS / "churn" / "1" / "model.onnx", x)
    np.testing.assert_array_equal(np.frombuffer(r.content[n:n + 24], "<f4").reshape(3, 2), expected["probabilities"])
    np.testing.assert_array_equal(np.frombuffer(r.content[n + 24:], "<i8"), expected["label"])


@pytest.mark.parametrize(("x", "datatype", "where", "what"), [
    (np.zeros((1, 21), np.float32), None, "inputs[0].shape", "expected shape [rows, 22], got [1, 21]"),
    (np.zeros((22,), np.float32), None, "inputs[0].shape", "expected shape [rows, 22], got [22]"),
    (np.array([[b"a"] * 22], dtype=object), None, "inputs[0].datatype", "takes numbers"),
    (np.zeros((1, 22), bool), None, "inputs[0].datatype", "got BOOL"),
    (np.full((1, 22), 1e300), None, "inputs[0].data[", "is out of the float32 range"),
    (np.zeros((0, 22), np.float32), None, "inputs[0].shape[0]", "empty batch"),
])
@pytest.mark.parametrize("binary", [False, True])
def test_bad_tensors_are_400s_that_say_what_and_where(tc, x, datatype, where, what, binary):
    exc = failure(lambda: tc.infer("churn", [tensor_input(x, binary, datatype=datatype)]))
    assert exc.status() == "400", exc
    assert what in exc.message() and f"at `{where}" in exc.message(), exc.message()


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_outputs(repo, binary):
    _, tc, models = repo
    assert tc.get_model_metadata("words")["outputs"][0] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    x = np.random.default_rng(3).normal(size=(9, 4)).astype(np.float32)
    result = tc.infer("words", [tensor_input(x, binary, name="X")],
                      outputs=[triton.InferRequestedOutput("label", binary_data=binary)])
    expected = in_process(models / "words" / "1" / "model.onnx", x)["label"]
    assert result.get_response()["outputs"][0]["datatype"] == "BYTES"
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert got == expected.tolist() and set(got) == {"yes", "no"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float64_model_input(repo, dtype):
    _, tc, models = repo
    assert tc.get_model_metadata("double")["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}]
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(dtype)
    expected = in_process(models / "double" / "1" / "model.onnx", x.astype(np.float64))
    result = tc.infer("double", [tensor_input(x, True, name="x")])
    for name, value in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), value)


def test_bytes_binary_input_encoding(repo):
    """BYTES elements in binary are a 4-byte little-endian length then the bytes; a cut element is refused."""
    srv, _, _ = repo
    head = json.dumps({"inputs": [{"name": "country", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 6}}]}).encode()
    r = httpx.post(f"{srv.url}/v2/models/sticky/infer", content=head + struct.pack("<I", 5) + b"US",
                   headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400
    assert r.json()["error"] == "BYTES element 0 says 5 bytes, 2 are left - at `inputs[0].parameters.binary_data_size`"
