"""V2 server and model metadata, readiness, and the 404s, by the real Triton client."""

import httpx
import numpy as np
import pytest

from tests.http.v2.helpers import failure, tensor_input


def test_server_health_and_metadata(tc):
    assert tc.is_server_live() and tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "fastserve" and meta["version"]
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize(("model", "outputs"), [
    ("churn", [{"name": "label", "datatype": "INT64", "shape": [-1]},
               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]),
    ("spend", [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]),
])
def test_model_metadata_and_readiness(tc, model, outputs):
    meta = tc.get_model_metadata(model)
    assert meta == {"name": model, "versions": ["1"], "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "inputs", "datatype": "FP32", "shape": [-1, 22]}], "outputs": outputs}
    assert tc.get_model_metadata(model, "1") == meta
    assert tc.is_model_ready(model) and tc.is_model_ready(model, "1")


def test_unknown_model_and_version_are_404s(tc, server):
    for call in (lambda: tc.get_model_metadata("nope"), lambda: tc.get_model_metadata("churn", "7"),
                 lambda: tc.infer("nope", [tensor_input(np.zeros((1, 22), np.float32), False)]),
                 lambda: tc.infer("churn", [tensor_input(np.zeros((1, 22), np.float32), True)], model_version="7")):
        exc = failure(call)
        assert exc.status() == "404", exc
    assert "no model named 'nope'" in failure(lambda: tc.get_model_metadata("nope")).message()
    assert "has no version '7' (versions: 1)" in failure(lambda: tc.get_model_metadata("churn", "7")).message()
    assert not tc.is_model_ready("nope")
    r = httpx.get(f"{server.url}/v2/models/churn/versions/7/ready")
    assert r.status_code == 404 and r.json() == {"error": "model 'churn' has no version '7' (versions: 1)"}
    assert httpx.get(f"{server.url}/v2/nothing/here").json() == {"error": "no route for GET /v2/nothing/here"}
