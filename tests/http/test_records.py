"""Raw records over HTTP give what the scikit-learn pipeline gives on the same records."""

import json
import warnings

import httpx
import msgpack
import numpy as np
import pytest

from fastserve.export.sklearn import export_pipeline
from tests import pipelines
from tests.conftest import MODELS, copy_model, start_server

MSGPACK = {"content-type": "application/msgpack", "accept": "application/msgpack"}


@pytest.fixture(scope="module")
def records_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("records")
    pipeline, frame = pipelines.fitted()
    export_pipeline(pipeline, frame, "demo", models)
    copy_model("churn_mlp", models)  # a model without a feature spec
    strict = export_pipeline(pipeline, frame, "strict", models)
    (strict.parent / "fastserve.toml").write_text("[inputs]\nunknown_fields = \"error\"\n")
    srv = start_server(models)
    yield srv
    log = srv.stop()
    assert "Traceback" not in log, log


def expected_probabilities(records):
    pipeline, _ = pipelines.fitted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pipeline.predict_proba(pipelines.as_frame(records))


def some_records(n=40, seed=5):
    _, frame = pipelines.fitted()
    rng = np.random.default_rng(seed)
    records = json.loads(frame.iloc[rng.choice(len(frame), n)].to_json(orient="records"))
    records[0]["country"] = "unseen"       # an infrequent slot
    records[1].pop("age")                  # imputed
    records[2]["rooms"] = 9                # an unknown integer category, ignored
    records[3]["score"] = None             # imputed
    return records


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_records_answer_like_the_pipeline(records_server, fmt):
    records = some_records()
    url = f"{records_server.url}/v1/models/demo/predict"
    if fmt == "json":
        r = httpx.post(url, json={"records": records})
        body = r.json()
    else:
        r = httpx.post(url, content=msgpack.packb({"records": records}), headers=MSGPACK)
        body = msgpack.unpackb(r.content)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(body["outputs"]["probabilities"]), expected_probabilities(records), atol=1e-5)
    assert body["version"] == 1


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_columns_answer_like_records(records_server, fmt):
    records = some_records(seed=9)
    columns = {f: [r.get(f) for r in records] for f in pipelines.FIELDS}
    url = f"{records_server.url}/v1/models/demo/predict"
    if fmt == "json":
        body = httpx.post(url, json={"columns": columns}).json()
    else:
        body = msgpack.unpackb(httpx.post(url, content=msgpack.packb({"columns": columns}), headers=MSGPACK).content)
    np.testing.assert_allclose(np.array(body["outputs"]["probabilities"]), expected_probabilities(records), atol=1e-5)


@pytest.mark.parametrize(("change", "path", "message"), [
    ({"balance": "high"}, "$.records[1].balance", "expected a number, got string 'high'"),
    ({"plan": "gold"}, "$.records[1].plan", "unknown category 'gold'"),
    ({"spend": None}, "$.records[1].spend", "missing required field"),
    ({"spend": -1.0}, "$.records[1].spend", "feature 'spend' became -inf"),
])
def test_bad_records_get_422_naming_record_and_field(records_server, change, path, message):
    records = some_records()[:3]
    records[1].update(change)
    r = httpx.post(f"{records_server.url}/v1/models/demo/predict", json={"records": records})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and message in error["message"], error
    assert error["detail"]["path"] == path and error["detail"]["record"] == 1
    ok = httpx.post(f"{records_server.url}/v1/models/demo/predict", json={"records": some_records()[:2]})
    assert ok.status_code == 200  # and the server serves on


def test_strict_model_refuses_unknown_fields(records_server):
    records = some_records()[:2]
    records[1]["user_id"] = "u-17"
    r = httpx.post(f"{records_server.url}/v1/models/strict/predict", json={"records": records})
    assert r.status_code == 422 and r.json()["error"]["detail"]["field"] == "user_id"
    r = httpx.post(f"{records_server.url}/v1/models/demo/predict", json={"records": records})
    assert r.status_code == 200


def test_model_without_a_spec_takes_inputs_only(records_server):
    r = httpx.post(f"{records_server.url}/v1/models/churn_mlp/predict", json={"records": [{"age": 3}]})
    assert r.status_code == 422
    assert "this model has no feature spec, so it takes `inputs` (rows of 22 numbers)" in r.json()["error"]["message"]


def test_one_body_one_kind_of_data(records_server):
    r = httpx.post(f"{records_server.url}/v1/models/demo/predict", json={"records": [], "inputs": []})
    assert r.status_code == 422 and "more than one of inputs, records" in r.json()["error"]["message"]
    r = httpx.post(f"{records_server.url}/v1/models/demo/predict", json={"records": []})
    assert r.status_code == 422 and "empty batch" in r.json()["error"]["message"]


def test_status_lists_the_features(records_server):
    version = httpx.get(f"{records_server.url}/v1/models/demo").json()["versions"][0]
    assert version["features"][0] == {"name": "age", "field": "age", "kind": "number", "width": 1}
    assert sum(f["width"] for f in version["features"]) == version["inputs"][0]["shape"][1]


def test_bundled_churn_answers_its_golden_records(client):
    """The bundled classifier was exported from a scikit-learn pipeline: its golden records, sent raw, give the
    pipeline's own probabilities."""
    folder = MODELS / "churn" / "1"
    records = json.loads((folder / "validation_records.json").read_text())
    golden = np.load(folder / "validation.npz")
    assert any(len(r) < 22 for r in records)  # some fields are missing and get imputed
    body = client.post("/v1/models/churn/predict", json={"records": records}).json()
    np.testing.assert_allclose(np.array(body["outputs"]["probabilities"]), golden["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(body["outputs"]["label"], golden["label"])
