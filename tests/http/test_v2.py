"""The Open Inference protocol (KServe V2) over REST, spoken by the real Triton client (tritonclient[http]) to a real
server: JSON and binary tensor data, metadata, readiness, raw-field inputs, routing, deadlines and errors."""

import json
import shutil
import struct
import time

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import MODELS, copy_model, start_server, write_tiny_model
from tests.routing import formula_models


def in_process(model_file, x):
    """Every output of the model file, run by onnxruntime here with the server's thread settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}), strict=True))


def tensor_input(x, binary, name="inputs", datatype=None):
    t = triton.InferInput(name, list(x.shape), datatype or triton_datatype(x))
    t.set_data_from_numpy(x, binary_data=binary)
    return t


def triton_datatype(x):
    return {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "object": "BYTES",
            "bool": "BOOL"}[x.dtype.name]


def field_inputs(records, binary):
    """One V2 input per raw field: BYTES for strings, FP64 for numbers (missing numbers as NaN in binary)."""
    inputs = []
    for field in dict.fromkeys(f for r in records for f in r):
        values = [r.get(field) for r in records]
        if any(isinstance(v, str) for v in values):
            x = np.array([str(v).encode() for v in values], dtype=object)
        else:
            x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        inputs.append(tensor_input(x, binary, name=field))
    return inputs


def failure(call):
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def tc(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def golden_records():
    return json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())


# --- health and metadata ------------------------------------------------------------------------------------------

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


# --- inference: answers equal onnxruntime on the same model file -------------------------------------------------

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


# --- raw fields for a model with a feature spec -------------------------------------------------------------------

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


# --- errors -------------------------------------------------------------------------------------------------------

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


# --- routing, other datatypes and limits, on a repository of their own --------------------------------------------

def write_string_label_model(folder):
    """A real logistic regression whose class labels are strings: its `label` output is a BYTES tensor."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y = np.where(x[:, 0] > 0, "yes", "no")
    model = LogisticRegression().fit(x, y)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A server on a repository of its own, with a 64 KiB body limit: `words` (string labels), `double` (float64
    input), `m` (formula versions 1 and 2, the canary taking every unversioned request), `s` (formula version 1 with
    version 2 as a shadow of every request), `sticky` (two copies of churn, a canary sticky on the country field)."""
    models = tmp_path_factory.mktemp("v2")
    write_string_label_model(models / "words" / "1")
    write_tiny_model(models / "double" / "1", double=True)
    for name, routing in (("m", "canary = { version = 2, weight = 1.0 }"),
                          ("s", "shadows = [{ version = 2, sample = 1.0 }]")):
        (models / name).mkdir()
        (models / name / "fastserve.toml").write_text(
            f'[model]\nprimary = 1\n[versions]\npolicy = "all"\n[routing]\n{routing}\n')
        formula_models.write(models / name / "1")
        formula_models.write(models / name / "2", xor_column=1)
    sticky = copy_model("churn", models, name="sticky", config=(
        '[model]\nprimary = 1\n[versions]\npolicy = "all"\n'
        '[routing]\ncanary = { version = 2, weight = 0.5, sticky_key = "country" }\n'))
    shutil.copytree(sticky / "1", sticky / "2")
    srv = start_server(models, "--max-body-bytes", "65536")
    client = triton.InferenceServerClient(srv.url.removeprefix("http://"))
    yield srv, client, models
    client.close()
    log = srv.stop()
    assert "Traceback" not in log, log


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


def test_bytes_binary_input_encoding(repo):
    """BYTES elements in binary are a 4-byte little-endian length then the bytes; a cut element is refused."""
    srv, _, _ = repo
    head = json.dumps({"inputs": [{"name": "country", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 6}}]}).encode()
    r = httpx.post(f"{srv.url}/v2/models/sticky/infer", content=head + struct.pack("<I", 5) + b"US",
                   headers={"inference-header-content-length": str(len(head))})
    assert r.status_code == 400
    assert r.json()["error"] == "BYTES element 0 says 5 bytes, 2 are left - at `inputs[0].parameters.binary_data_size`"


def test_a_json_body_with_too_many_values_is_refused_before_parsing(server):
    """5,000 rows (over max_rows) in a V2 JSON body: refused from a count of its commas, with the place named."""
    data = [0.5] * (5000 * 22)
    body = {"inputs": [{"name": "inputs", "shape": [5000, 22], "datatype": "FP32", "data": data}]}
    r = httpx.post(f"{server.url}/v2/models/churn/infer", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("request holds about 110") and "$.inputs" in r.json()["error"]
    ok = {"inputs": [{"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": data[:22]}]}
    assert httpx.post(f"{server.url}/v2/models/churn/infer", json=ok).status_code == 200
