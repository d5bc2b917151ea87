"""V2 requests (`http/v2/request.py`): raw-field inputs, the protocol's error form, binary sizes, and a body with too
many values refused before parsing."""

import json

import httpx
import numpy as np
import pytest

from tests.http.v2.helpers import (
    failure,
    field_inputs,
)


@pytest.mark.parametrize("binary", [False, True])
def test_raw_field_inputs_equal_the_native_records_answer(tc, server, golden_records, binary):
    records = [dict(r) for r in golden_records[:20]]
    records[3]["country"] = "BR"
    native = httpx.post(f"{server.url}/v1/models/churn/predict", json={"records": records}).json()
    result = tc.infer("churn", field_inputs(records, binary))
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("label"), native["outputs"]["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                  np.asarray(native["outputs"]["probabilities"], dtype=np.float32))


def test_raw_fields_shaped_n_by_1_with_missing_values_imputed(tc, server, golden_records):
    records = [dict(r) for r in golden_records[:6]]
    for r in records[:3]:
        r["nps_score"] = None  # imputed by the spec; sent as NaN in binary FP64
        r.pop("days_since_login")
    native = httpx.post(f"{server.url}/v1/models/churn/predict", json={"records": records}).json()
    inputs = []
    for t in field_inputs(records, True):
        t.set_shape([6, 1])
        inputs.append(t)
    result = tc.infer("churn", inputs)
    np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                  np.asarray(native["outputs"]["probabilities"], dtype=np.float32))


def test_raw_field_errors_name_the_input_and_the_row(tc, server, golden_records):
    records = [dict(r) for r in golden_records[:4]]
    records[2]["plan"] = "gold"
    k = list(records[0]).index("plan")
    exc = failure(lambda: tc.infer("churn", field_inputs(records, True)))
    assert exc.status() == "400"
    assert exc.message().startswith("unknown category 'gold' (known: 'basic', 'standard', 'pro', 'enterprise')")
    assert exc.message().endswith(f"- at `inputs[{k}].data[2]`")
    # A string among the numbers of an FP64 field, in plain JSON: the transform refuses it where it stands.
    records[2]["plan"], records[1]["age"] = "pro", "old"
    body = {"inputs": [{"name": f, "shape": [4], "datatype": "BYTES" if isinstance(v, str) else "FP64",
                        "data": [r[f] for r in records]} for f, v in records[0].items()]}
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body)
    assert r.status_code == 400
    assert r.json() == {"error": "expected a number, got string 'old' - at `inputs[0].data[1]`"}


def test_error_cases_in_the_protocol_form(server):
    url = f"{server.url}/v2/models/churn/infer"
    row = [0.0] * 22
    cases = [
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP16", "data": row}]},
         "datatype FP16 is not supported; send one of FP32, FP64, INT32, INT64, BOOL, BYTES - at `inputs[0].datatype`"),
        ({"inputs": [{"name": "x", "shape": [1, 22], "datatype": "FP32", "data": row}]},
         "no input this model reads"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": row}],
          "outputs": [{"name": "score"}]},
         "the model has no output `score`; its outputs are label, probabilities - at `outputs[0].name`"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": row}],
          "outputs": [{"name": "label"}, {"name": "probabilities"}, {"name": "label"}]},
         "output `label` is requested twice (also at outputs[0]) - at `outputs[2].name`"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": [*row[:-1], "a"]}]},
         "expected a number, got string - at `inputs[0].data[21]`"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "INT64", "data": row}]},
         "expected an integer (INT64), got float 0.0 - at `inputs[0].data[0]`"),
        ({"inputs": [{"name": "inputs", "shape": [2, 22], "datatype": "FP32", "data": row}]},
         "data has 22 values; shape [2, 22] needs 44 (flat) or 2 rows of 22 - at `inputs[0].data`"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": row}],
          "parameters": {"timeout": "soon"}},
         "expected a timeout in microseconds (a number > 0), got 'soon' - at `parameters.timeout`"),
        ({"input": []}, "unknown field `input`"),
        ({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32",
                      "parameters": {"binary_data_size": 88}}]}, "binary data ends at byte 0 of the binary part"),
    ]
    for body, message in cases:
        r = httpx.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["error"], (message, r.json())
        assert set(r.json()) == {"error"}
    r = httpx.post(url, content=b"{not json")
    assert r.status_code == 400 and "inference request is not valid JSON" in r.json()["error"]
    r = httpx.post(url, content=b'{"inputs": []}', headers={"inference-header-content-length": "99"})
    assert r.status_code == 400 and "Inference-Header-Content-Length '99'" in r.json()["error"]
    r = httpx.post(url, content=b"xx", headers={"content-encoding": "gzip"})
    assert r.status_code == 415 and "Content-Encoding 'gzip' is not supported" in r.json()["error"]
    r = httpx.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "takes POST" in r.json()["error"]


def test_binary_sizes_must_add_up(server):
    x = np.zeros((1, 22), np.float32)
    head = json.dumps({"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 80}}]}).encode()
    url = f"{server.url}/v2/models/churn/infer"
    r = httpx.post(url, content=head + x.tobytes(), headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400
    assert r.json()["error"] == ("the body has 88 bytes of binary data after the JSON object; the inputs' "
                                 "binary_data_size add up to 80")
    head = head.replace(b"80", b"88")
    r = httpx.post(url, content=head + x.tobytes()[:80] + b"\0" * 8 + b"extra",
                   headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400 and "add up to 88" in r.json()["error"]


def test_a_json_body_with_too_many_values_is_refused_before_parsing(server):
    """5,000 rows (over max_rows) in a V2 JSON body: refused from a count of its commas, with the place named."""
    data = [0.5] * (5000 * 22)
    body = {"inputs": [{"name": "inputs", "shape": [5000, 22], "datatype": "FP32", "data": data}]}
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("request holds about 110") and "$.inputs" in r.json()["error"]
    ok = {"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": data[:22]}]}
    assert httpx.post(f"{server.url}/v2/models/churn/infer", json=ok).status_code == 200
