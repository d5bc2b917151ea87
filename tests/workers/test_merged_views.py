"""With worker processes, routing and monitoring decide on all the traffic: the canary guard on every worker's
evidence, shadow comparisons and drift sketches merged, the sticky split the same in every worker."""

import asyncio
import json

import httpx
import numpy as np
import pytest

from fastserve.http.door import door_supported
from fastserve.routing.canary import key_position
from tests.conftest import MODELS, copy_model
from tests.loadclient import post_many
from tests.registry.test_hot_swap import wait_for
from tests.routing.test_canary_shadow import GUARD, MSGPACK, TOKEN, repository, tensor
from tests.workers.test_workers import metric, serve_workers, start_workers

pytestmark = pytest.mark.skipif(not door_supported(), reason="worker processes need the door process (Linux)")


def formula_repository(tmp_path, config, **versions):
    return repository(tmp_path, config, "--workers", "2", start=start_workers, **versions)


def fire(srv, bodies, connections=8, headers=None):
    return asyncio.run(post_many(srv.port, "/v1/models/m/predict", bodies, connections, {**MSGPACK, **(headers or {})}))


def status(srv):
    return httpx.get(f"{srv.url}/v1/models/m").json()


def both_served(srv):
    text = httpx.get(f"{srv.url}/metrics").text
    return min(metric(text, "fastserve_worker_requests", worker=w) for w in ("0", "1")) > 0


def test_the_guard_judges_every_workers_answers_and_pulls_the_canary_back_once(tmp_path):
    srv = formula_repository(tmp_path, "[routing]\ncanary = { version = 2, weight = 0.5 }\n" + GUARD, v1={},
                             v2={"fails_above": 10})
    x = np.zeros((1, 22), dtype=np.float32)
    x[0, 0] = 50.0  # the canary's run fails on it; the primary's does not
    try:
        first = fire(srv, [tensor(x)] * 200, connections=8)
        wait_for(lambda: status(srv)["routing"]["canary"]["weight"] == 0, timeout=10)
        after = fire(srv, [tensor(x)] * 200, connections=8)
        body = status(srv)
        assert both_served(srv)
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert {a.status_code for a in first} == {200, 500}
    assert all(a.status_code == 200 and a.headers["x-model-version"] == "1" for a in after)  # in every worker
    canary = body["routing"]["canary"]
    assert canary["rollbacks"] == 1 and any("error rate" in r for r in canary["tripped"]["reasons"]), canary
    assert metric(metrics, "fastserve_canary_rollbacks_total", model="m") == 1  # one decision, not one a worker
    assert log.count("canary v2 pulled back") == 1, log


def test_a_sticky_key_lands_on_the_same_version_in_every_worker(tmp_path):
    srv = formula_repository(tmp_path, "[routing]\ncanary = { version = 2, weight = 0.5, sticky_key = "
                             "\"header:X-User\" }\n", v1={}, v2={})
    body = tensor(np.zeros((1, 22), dtype=np.float32))
    try:
        seen: dict[str, set[str]] = {}
        for _ in range(3):  # new connections each round: spread over both workers
            for user in range(60):
                key = f"user-{user}"
                with httpx.Client(base_url=srv.url) as client:
                    r = client.post("/v1/models/m/predict", content=body, headers={**MSGPACK, "X-User": key})
                seen.setdefault(key, set()).add(r.headers["x-model-version"])
        assert both_served(srv)
    finally:
        srv.stop()
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {k: v.pop() for k, v in seen.items()} == {k: "2" if key_position(k) < 0.5 else "1" for k in seen}


def test_shadow_comparisons_of_every_worker_are_merged(tmp_path):
    srv = formula_repository(tmp_path, "[[routing.shadows]]\nversion = 2\nsample = 1.0\n", v1={},
                             v2={"xor_column": 1})
    rng = np.random.default_rng(7)
    try:
        answers = fire(srv, [tensor(rng.normal(size=(1, 22)).astype(np.float32)) for _ in range(300)],
                       connections=8)
        wait_for(lambda: status(srv)["routing"]["shadows"][0]["total"]["compared"] == 300, timeout=10)
        shadow = status(srv)["routing"]["shadows"][0]
        assert both_served(srv)
    finally:
        srv.stop()
    assert all(a.status_code == 200 and a.headers["x-model-version"] == "1" for a in answers)
    assert shadow["total"]["dropped"] == 0 and 0 < shadow["total"]["label_agreement"] < 1, shadow


def test_drift_covers_the_traffic_of_every_worker(tmp_path):
    copy_model("churn", tmp_path, config="[drift]\nwindow_rows = 500\nwindow_seconds = 0\n")
    (tmp_path / "token").write_text(TOKEN)
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    srv = serve_workers(tmp_path)
    rng = np.random.default_rng(0)
    try:
        for _ in range(12):  # 12 x 64 rows on new connections: one window of 500 rows closes, over both workers
            batch = [dict(r, age=r["age"] + 25.0) for r in rng.choice(records, 64)]
            assert httpx.post(f"{srv.url}/v1/models/churn/predict", json={"records": batch}).status_code == 200
        report = httpx.get(f"{srv.url}/v1/models/churn/drift").json()["versions"][0]["drift"]
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert min(metric(metrics, "fastserve_worker_requests", worker=w) for w in ("0", "1")) > 0
    assert report["windows"] == 1 and report["status"] == "alert"
    assert report["last_window"]["rows"] + report["current_window_rows"] == 12 * 64  # every row, counted once
    assert report["last_window"]["top"][0] == "age"
    assert 'fastserve_drift_status{model="churn",version="1"} 2.0' in metrics
    assert log.count("drift status ok -> alert") == 1, log
