"""Drift through the real server: batches feed the sketches, windows close, the endpoint and metrics show it."""

import json

import httpx
import numpy as np

from tests.conftest import MODELS, copy_model, start_server


def test_shifted_traffic_shows_in_drift_endpoint_and_metrics(tmp_path):
    copy_model("churn", tmp_path, config="[drift]\nwindow_rows = 500\nwindow_seconds = 0\n")
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    srv = start_server(tmp_path)
    try:
        base = f"{srv.url}/v1/models/churn"
        assert httpx.get(f"{base}/drift").json()["versions"][0]["drift"]["windows"] == 0
        rng = np.random.default_rng(0)
        for _ in range(12):  # 12 x 64 rows: one window of 500 rows closes
            batch = [dict(r, age=r["age"] + 25.0) for r in rng.choice(records, 64)]  # everyone 25 years older
            assert httpx.post(f"{base}/predict", json={"records": batch}).status_code == 200
        report = httpx.get(f"{base}/drift").json()["versions"][0]["drift"]
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert report["windows"] == 1 and report["status"] == "alert"
    last = report["last_window"]
    assert last["top"][0] == "age" and last["rows"] >= 500
    age = next(c for c in last["inputs"] if c["name"] == "age")
    assert age["status"] == "alert" and age["psi"] > 0.25 and age["z"] > 10
    assert 'fastserve_drift_status{model="churn",version="1"} 2.0' in metrics
    assert 'fastserve_drift_psi{column="age",model="churn",version="1"}' in metrics
    assert "drift status ok -> alert (age" in log


def test_model_without_profile_says_why(tmp_path):
    copy_model("churn", tmp_path)
    (tmp_path / "churn" / "1" / "profile.json").unlink()
    srv = start_server(tmp_path)
    try:
        body = httpx.get(f"{srv.url}/v1/models/churn/drift").json()
    finally:
        srv.stop()
    assert body["versions"][0]["drift"] is None and "no profile.json" in body["versions"][0]["why"]


def test_drift_command_prints_a_table(tmp_path):
    import subprocess
    import sys

    copy_model("churn", tmp_path, config="[drift]\nwindow_rows = 100\nwindow_seconds = 0\n")
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    srv = start_server(tmp_path)
    try:
        for _ in range(2):
            httpx.post(f"{srv.url}/v1/models/churn/predict", json={"records": [dict(r, age=90.0) for r in records]})
        done = subprocess.run([sys.executable, "-m", "fastserve", "drift", srv.url, "churn"], capture_output=True,
                              text=True, timeout=60)
    finally:
        srv.stop()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("v1  ready  status alert  windows 1")
    assert lines[2].split()[:2] == ["age", "alert"]  # drifting first


def test_raw_fields_are_sketched_before_transforms(tmp_path):
    """churn's profile describes the fields clients send: a value clipped or imputed by the spec, an unknown
    category and a field left out all show as they were sent."""
    copy_model("churn", tmp_path, config="[drift]\nwindow_rows = 600\nwindow_seconds = 0\n")
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    srv = start_server(tmp_path)
    try:
        base = f"{srv.url}/v1/models/churn"
        rng = np.random.default_rng(1)
        for _ in range(10):
            batch = []
            for r in rng.choice(records, 64):
                r = dict(r, country="ZZ")  # unknown to the vocabulary: the spec encodes -1
                r.pop("days_since_login", None)  # imputed by the spec
                batch.append(r)
            assert httpx.post(f"{base}/predict", json={"records": batch}).status_code == 200
        rows = [[0.0] * 22]  # model inputs as rows carry no raw fields; they are not counted in the fields
        assert httpx.post(f"{base}/predict", json={"inputs": rows}).status_code == 200
        report = httpx.get(f"{base}/drift").json()["versions"][0]["drift"]
    finally:
        srv.stop()
    last = report["last_window"]
    assert last["source"] == "fields" and {c["name"] for c in last["inputs"]} >= {"country", "plan", "age"}
    columns = {c["name"]: c for c in last["inputs"]}
    country = columns["country"]
    assert country["status"] == "alert"
    assert country["categories"][0] == {"category": "(unknown)", "share": 1.0, "reference": 0.0}
    missing = columns["days_since_login"]
    assert missing["status"] == "alert" and missing["nan"] == 640 and missing["rows"] == 0  # rows: values present
    assert missing["missing_z"] > 10
    assert country["rows"] == 640 and last["rows"] == 641  # the row sent as model inputs counts in the window only
    assert columns["plan"]["status"] == "ok"
