"""Model listing and status, health, readiness and metrics, on the real server."""

import re

import httpx
import pytest

from tests.conftest import copy_model, start_server, write_tiny_model

ROW = [1.0] * 22


def test_list_models(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"churn", "churn_mlp", "spend"}
    assert models["churn"] == {"name": "churn", "ready": True, "primary": 1,
                               "versions": [{"version": 1, "state": "ready"}]}


def test_model_status_shows_metadata_and_providers(client):
    r = client.get("/v1/models/churn")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["primary"] == 1
    (version,) = body["versions"]
    assert version["state"] == "serving"  # ready, and the primary
    assert version["inputs"] == [{"name": "inputs", "datatype": "float32", "shape": [-1, 22]}]
    assert version["outputs"] == [{"name": "label", "datatype": "int64", "shape": [-1]},
                                  {"name": "probabilities", "datatype": "float32", "shape": [-1, 2]}]
    assert version["providers"][-1] == "CPUExecutionProvider"
    assert version["device"] == "auto"
    assert version["load_seconds"] > 0 and version["warmup_seconds"] > 0


def test_unknown_model_status_is_404(client):
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "loading": False, "shutting_down": False,
                        "models": {"churn": True, "churn_mlp": True, "spend": True}}


def _sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_happened(client):
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/v1/models/spend/predict", json={"inputs": [ROW]}).status_code == 200
    assert client.post("/v1/models/spend/predict", json={"inputs": [[1]]}).status_code == 422
    assert client.post("/v1/models/missing/predict", json={"inputs": [ROW]}).status_code == 404
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = r.text

    def delta(name, **labels):
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("fastserve_requests_total", model="spend", version="1", code="200") == 3
    assert delta("fastserve_requests_total", model="spend", version="1", code="422") == 1
    assert delta("fastserve_requests_total", model="", version="", code="404") == 1
    assert delta("fastserve_request_duration_seconds_count", model="spend", version="1") == 4
    assert delta("fastserve_request_duration_seconds_bucket", model="spend", version="1", le="+Inf") == 4
    assert _sample(after, "fastserve_requests_in_flight") == 0
    assert _sample(after, "fastserve_model_version_ready", model="churn", version="1",
                   provider="CPUExecutionProvider") == 1
    assert re.search(r'^fastserve_build_info\{core="compiled",python="[\d.]+",version="[\d.]+"\} 1\.0$', after, re.M)
    assert re.search(r"^fastserve_process_resident_memory_bytes \d", after, re.M)


@pytest.fixture
def mixed_repository(tmp_path):
    """One good model, one whose version fails to load (a ZipMap output), and junk that is not a model."""
    copy_model("spend", tmp_path)
    write_tiny_model(tmp_path / "zipmapped" / "1", zipmap=True)
    (tmp_path / "_scratch" / "1").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("not a model")
    return tmp_path


def test_a_failed_version_is_reported_and_others_serve(mixed_repository):
    srv = start_server(mixed_repository, ready_status=503)
    try:
        ready = httpx.get(f"{srv.url}/readyz").json()
        assert ready == {"ready": False, "loading": False, "shutting_down": False,
                         "models": {"spend": True, "zipmapped": False}}
        status = httpx.get(f"{srv.url}/v1/models/zipmapped").json()
        (version,) = status["versions"]
        assert version["state"] == "failed"
        assert "ZipMap" in version["error"] and "zipmap" in version["error"]
        r = httpx.post(f"{srv.url}/v1/models/zipmapped/predict", json={"inputs": [[1, 2, 3, 4]]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "model_not_ready"
        assert httpx.post(f"{srv.url}/v1/models/spend/predict", json={"inputs": [ROW]}).status_code == 200
    finally:
        log = srv.stop()
    assert "zipmapped v1: failed to load" in log


def test_the_default_server_speaks_the_compiled_protocol(server, client):
    # (tests/http/test_asgi_protocol.py runs the http tests again on uvicorn's)
    assert client.get("/healthz").status_code == 200
    assert "http=the compiled protocol" in server.log.read_text()
