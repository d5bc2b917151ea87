"""V2 inference (`http/v2/infer.py`) by the real Triton client: answers equal in-process onnxruntime's, output
selection, the request id, pinned versions, deadlines, metrics, canary and shadows, the body limit."""

import json
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.conftest import MODELS
from tests.http.v2.helpers import (
    failure,
    field_inputs,
    in_process,
    tensor_input,
)
from tests.routing import formula_models


@pytest.mark.parametrize("model", ["churn", "churn_mlp", "spend"])
@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, False), (True, True), (True, False), (False, True)])
def test_outputs_equal_in_process_onnxruntime(tc, golden, model, binary_in, binary_out):
    x = golden[model]["inputs"][:25].astype(np.float32)
    expected = in_process(MODELS / model / "1" / "model.onnx", x)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_out) for name in expected]
    result = tc.infer(model, [tensor_input(x, binary_in)], outputs=outputs)
    response = result.get_response()
    assert response["model_name"] == model and response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == list(expected)
    for out in response["outputs"]:
        assert ("data" not in out) == binary_out and ("binary_data_size" in out.get("parameters", {})) == binary_out
        assert out["shape"] == list(expected[out["name"]].shape)
    for name, value in expected.items():
        got = result.as_numpy(name)
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_without_outputs_every_output_comes_back_as_binary(tc, golden):
    """tritonclient asks for binary_data_output when it names no output."""
    x = golden["churn"]["inputs"][:3].astype(np.float32)
    result = tc.infer("churn", [tensor_input(x, False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label", "probabilities"]
    assert all(o["parameters"]["binary_data_size"] > 0 for o in result.get_response()["outputs"])
    expected = in_process(MODELS / "churn" / "1" / "model.onnx", x)
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])


def test_output_selection_and_request_id(tc, golden):
    x = golden["churn"]["inputs"][:4].astype(np.float32)
    result = tc.infer("churn", [tensor_input(x, True)], request_id="req-42",
                      outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)])
    response = result.get_response()
    assert response["id"] == "req-42"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert "id" not in tc.infer("churn", [tensor_input(x, True)]).get_response()


def test_pinned_version(tc, golden):
    x = golden["spend"]["inputs"][:2].astype(np.float32)
    result = tc.infer("spend", [tensor_input(x, True)], model_version="1")
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("prediction"),
                                  in_process(MODELS / "spend" / "1" / "model.onnx", x)["prediction"])


def test_deadlines_from_the_timeout_parameter_and_the_header(tc, server):
    x = np.zeros((1, 22), np.float32)
    exc = failure(lambda: tc.infer("churn", [tensor_input(x, True)], timeout=1))  # 1 us cannot be met
    assert exc.status() == "503" and "cannot answer within the request's deadline" in exc.message()
    body = {"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body, headers={"x-request-timeout-ms": "0.001"})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert httpx.post(f"{server.url}/v2/models/churn/infer", json=body,
                      headers={"x-request-timeout-ms": "5000"}).status_code == 200


def test_v2_requests_are_counted_like_native_ones(tc, server):
    def count():
        for line in httpx.get(f"{server.url}/metrics").text.splitlines():
            if line.startswith('fastserve_requests_total{code="200",model="spend",version="1"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    for _ in range(3):
        tc.infer("spend", [tensor_input(np.zeros((1, 22), np.float32), True)])
    assert count() - before == 3


def test_canary_and_pinned_version_as_on_the_native_route(repo):
    srv, tc, _ = repo
    x = np.random.default_rng(5).normal(size=(40, 22)).astype(np.float32)
    assert tc.get_model_metadata("m")["versions"] == ["1", "2"]
    routed = tc.infer("m", [tensor_input(x, True)])  # the canary takes every unversioned request
    assert routed.get_response()["model_version"] == "2"
    np.testing.assert_array_equal(routed.as_numpy("label"), formula_models.reference(x, xor_column=1)[0])
    pinned = tc.infer("m", [tensor_input(x, False)], model_version="1")
    assert pinned.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(pinned.as_numpy("label"), formula_models.reference(x)[0])
    canary = httpx.get(f"{srv.url}/v1/models/m").json()["routing"]["canary"]
    assert canary["version"] == 2 and canary["weight"] == 1.0


def test_shadow_gets_copies_of_v2_requests(repo):
    srv, tc, _ = repo
    x = np.random.default_rng(6).normal(size=(1, 22)).astype(np.float32)
    for _ in range(20):
        assert tc.infer("s", [tensor_input(x, True)]).get_response()["model_version"] == "1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        total = httpx.get(f"{srv.url}/v1/models/s").json()["routing"]["shadows"][0]["total"]
        if total["compared"] >= 20:
            break
        time.sleep(0.05)
    assert total["compared"] == 20 and total["dropped"] == 0 and total["errors"] == 0


def test_sticky_field_canary_routes_raw_fields_like_native_records(repo, golden_records):
    srv, tc, _ = repo
    seen = {}
    for country in ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR"):
        records = [dict(golden_records[0], country=country)]
        native = httpx.post(f"{srv.url}/v1/models/sticky/predict", json={"records": records}).json()
        for binary in (False, True):
            version = tc.infer("sticky", field_inputs(records, binary)).get_response()["model_version"]
            assert version == str(native["version"]), country
        seen[country] = native["version"]
    assert set(seen.values()) == {1, 2}  # both sides are reached, each country always on its own


def test_body_limit(repo):
    srv, _, _ = repo
    x = np.zeros((800, 22), np.float32)  # 70 KB of binary data, over the 64 KiB limit
    head = json.dumps({"inputs": [{"name": "inputs", "shape": [800, 22], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    r = httpx.post(f"{srv.url}/v2/models/m/infer", content=head + x.tobytes(),
                   headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 413 and "over the limit of 65536 bytes" in r.json()["error"]
