"""A budget of loaded versions (`--max-loaded-versions`): every model answers, the least recently used version is
evicted to make room and loaded again on its next request, once however many wait, within their deadlines."""

import asyncio

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from fastserve.http.door import door_supported
from tests.conftest import MODELS, copy_model, start_server
from tests.loadclient import post_many

ROW = np.random.default_rng(4).normal(size=(1, 22)).astype(np.float32)


def expected():
    session = ort.InferenceSession(str(MODELS / "spend" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: ROW})[0]


def repository(tmp_path, n, keep_first=False):
    for i in range(n):
        copy_model("spend", tmp_path, name=f"m{i}",
                   config="[model]\nkeep_loaded = true\n" if keep_first and i == 0 else None)


def states(srv):
    return {m["name"]: m["versions"][0]["state"] for m in httpx.get(f"{srv.url}/v1/models").json()["models"]}


def predict(srv, name, **headers):
    return httpx.post(f"{srv.url}/v1/models/{name}/predict", json={"inputs": ROW.tolist()}, headers=headers,
                      timeout=30)


def loads(srv, name):
    events = httpx.get(f"{srv.url}/v1/models/{name}").json()["events"]
    return sum(1 for e in events if e["event"] == "loaded")


def test_every_model_answers_within_a_budget_and_evictions_say_why(tmp_path):
    repository(tmp_path, 6, keep_first=True)
    want = expected()
    srv = start_server(tmp_path, "--poll-interval", "0", "--max-loaded-versions", "3")
    try:
        first = states(srv)
        assert sorted(first.values()).count("ready") == 3 and first["m0"] == "ready", first
        assert list(first.values()).count("evicted") == 3
        for _ in range(2):
            for i in range(6):
                r = predict(srv, f"m{i}")
                assert r.status_code == 200, r.text
                np.testing.assert_allclose(np.array(r.json()["outputs"]["prediction"]).ravel(), want.ravel(),
                                           rtol=1e-5)
                now = states(srv)
                assert list(now.values()).count("ready") <= 3, now  # never over the budget
                assert now["m0"] == "ready"  # keep_loaded: never evicted
        status = httpx.get(f"{srv.url}/v1/models/m1").json()
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    evicted = [e for e in status["events"] if e["event"] == "evicted"]
    assert evicted and "least recently used" in evicted[0]["detail"] and "budget is 3" in evicted[0]["detail"]
    assert 'fastserve_model_evictions_total{model="m0"} 0.0' in metrics
    total = sum(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith("fastserve_model_evictions_total{"))
    assert total >= 8, total  # 5 models share 2 places, called in turn twice
    assert "Traceback" not in log, log


def test_concurrent_requests_for_a_cold_model_trigger_one_load_and_a_short_deadline_gets_503(tmp_path):
    repository(tmp_path, 3)
    srv = start_server(tmp_path, "--poll-interval", "0", "--max-loaded-versions", "1")
    try:
        cold = next(name for name, state in states(srv).items() if state == "evicted")
        before = loads(srv, cold)
        answers = asyncio.run(post_many(srv.port, f"/v1/models/{cold}/predict",
                                        [httpx.Request("POST", "http://x", json={"inputs": ROW.tolist()}).content]
                                        * 40, 20, {"content-type": "application/json"}))
        assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
        assert loads(srv, cold) == before + 1  # forty requests, one load
        other = next(name for name, state in states(srv).items() if state == "evicted")
        r = predict(srv, other, **{"X-Request-Timeout-Ms": "0.01"})  # no load finishes in 10 µs
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"]["code"] == "model_loading"
        assert predict(srv, other).status_code == 200  # the load went on: the next request is served
    finally:
        srv.stop()


@pytest.mark.skipif(not door_supported(), reason="worker processes need the door process (Linux)")
def test_with_workers_the_budget_is_the_servers_and_a_cold_load_is_one_decision(tmp_path):
    from tests.workers.test_workers import start_workers

    repository(tmp_path, 4)
    srv = start_workers(tmp_path, "--poll-interval", "0", "--max-loaded-versions", "2", "--workers", "2")
    try:
        for _ in range(2):
            for i in range(4):
                for _ in range(3):  # new connections: both workers
                    assert predict(srv, f"m{i}").status_code == 200
                assert list(states(srv).values()).count("ready") <= 2
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert log.count("evicted (idle") == sum(float(line.split()[-1]) for line in metrics.splitlines()
                                             if line.startswith("fastserve_model_evictions_total{"))
    assert log.count("evicted (idle") >= 4  # decided once, in the supervisor
    assert "Traceback" not in log, log


def test_traffic_over_more_models_than_the_budget_is_all_answered(tmp_path):
    """Loads and evictions back to back (a version evicted while requests for it arrive): every request answered."""
    from fastserve.bench.engine import run_trial

    repository(tmp_path, 10)
    srv = start_server(tmp_path, "--poll-interval", "0", "--max-loaded-versions", "2")
    body = httpx.Request("POST", "http://x", json={"inputs": ROW.tolist()}).content
    raws = [f"POST /v1/models/m{i % 10}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body for i in range(0, 70, 7)]
    try:
        trial = run_trial("127.0.0.1", srv.port, raws, 300.0, 2.0, connections=8, timeout_ms=30_000)
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert trial.statuses == {200: trial.answered} and trial.answered > 400, (trial.statuses, trial.errors)
    evictions = sum(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("fastserve_model_evictions_total{"))
    assert evictions > 20 and "no version ready" not in log


def gate_of(srv, name):
    return httpx.get(f"{srv.url}/v1/models/{name}").json()["versions"][0].get("gate")


def test_lazy_start_is_ready_at_once_and_the_first_request_loads_its_model(tmp_path):
    repository(tmp_path, 3)
    srv = start_server(tmp_path, "--poll-interval", "0", "--lazy")
    try:
        assert set(states(srv).values()) == {"evicted"}  # ready (the /readyz the server waited for) with none loaded
        assert predict(srv, "m1").status_code == 200
        after = states(srv)
    finally:
        srv.stop()
    assert after == {"m0": "evicted", "m1": "ready", "m2": "evicted"}


def test_a_gate_passed_is_not_run_again_for_the_same_files_even_after_a_restart(tmp_path):
    models, state = tmp_path / "models", tmp_path / "state"
    models.mkdir()
    repository(models, 2)
    args = ("--poll-interval", "0", "--max-loaded-versions", "1", "--state-dir", str(state))
    srv = start_server(models, *args)
    try:
        loaded_first = next(name for name, s in states(srv).items() if s == "ready")
        other = "m1" if loaded_first == "m0" else "m0"
        assert gate_of(srv, loaded_first) == "passed"
        assert predict(srv, other).status_code == 200 and gate_of(srv, other) == "passed"
        assert predict(srv, loaded_first).status_code == 200  # loaded again: its gate result stands
        assert gate_of(srv, loaded_first) == "passed (cached)"
    finally:
        srv.stop()
    assert (state / "gates.json").exists()
    golden = models / other / "1" / "validation.npz"
    golden.write_bytes(golden.read_bytes())  # the same content, a new modification time: gated again
    srv = start_server(models, *args)
    try:
        assert predict(srv, loaded_first).status_code == 200 and predict(srv, other).status_code == 200
        gates = {name: gate_of(srv, name) for name in (loaded_first, other)}
        assert predict(srv, loaded_first).status_code == 200
        gates_again = gate_of(srv, loaded_first)
    finally:
        srv.stop()
    assert gates[other] == "passed" and gates_again == "passed (cached)", (gates, gates_again)


def test_v2_metadata_of_an_evicted_version_is_answered_and_of_one_never_loaded_says_so(tmp_path):
    repository(tmp_path, 3)
    srv = start_server(tmp_path, "--poll-interval", "0", "--max-loaded-versions", "1", "--lazy")
    try:
        never = httpx.get(f"{srv.url}/v2/models/m2")
        assert predict(srv, "m0").status_code == 200
        assert predict(srv, "m1").status_code == 200  # m0 evicted to make room
        assert states(srv)["m0"] == "evicted"
        evicted = httpx.get(f"{srv.url}/v2/models/m0")
    finally:
        log = srv.stop()
    assert evicted.status_code == 200, evicted.text
    assert evicted.json()["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, 22]}]
    assert never.status_code == 503 and "has not been loaded yet; its first request loads it" in never.text
    assert "Traceback" not in log, log
