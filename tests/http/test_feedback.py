"""Ground truth on a real server: request ids on every answer, labels joined late and out of order, live quality per
version against its reference, and feedback bodies refused with the path of what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest

from fastserve.config import FeedbackOptions
from fastserve.http.feedback import parse_feedback
from fastserve.quality.store import Store
from tests.conftest import ROOT, copy_model, customers, start_server
from tests.timing import judge, ratio

QUALITY = """
[versions]
policy = "all"
[quality]
window_rows = 300
window_seconds = 0
min_rows = 100
"""


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """churn_mlp as versions 1 and 2 (the same model): one gets true labels, the other flipped ones."""
    repo = tmp_path_factory.mktemp("feedback")
    target = copy_model("churn_mlp", repo, QUALITY)
    (target / "2").mkdir()
    for f in (target / "1").iterdir():
        (target / "2" / f.name).write_bytes(f.read_bytes())
    return repo


@pytest.fixture(scope="module")
def served(two_versions: Path):
    srv = start_server(two_versions)
    with httpx.Client(base_url=srv.url, timeout=20.0) as c:
        yield srv, c
    srv.stop()


def _predict(c: httpx.Client, path: str, rows: np.ndarray, request_id: str | None = None) -> httpx.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    r = c.post(path, json={"inputs": rows.tolist()}, headers=headers)
    assert r.status_code == 200, r.text
    return r


def test_every_answer_carries_a_request_id(served) -> None:
    _, c = served
    x, _, _ = customers(3, 11)
    made = {_predict(c, "/v1/models/churn_mlp/predict", x[:1]).headers["x-request-id"] for _ in range(5)}
    assert len(made) == 5 and all(len(i) == 16 for i in made)  # one id each, made by the server
    assert _predict(c, "/v1/models/churn_mlp/predict", x, "order-17").headers["x-request-id"] == "order-17"
    v2 = c.post("/v2/models/churn_mlp/infer", json={"id": "v2-id-1", "inputs": [
        {"name": "inputs", "shape": [1, 22], "datatype": "FP32", "data": x[0].tolist()}]})
    assert v2.status_code == 200 and v2.headers["x-request-id"] == "v2-id-1" and v2.json()["id"] == "v2-id-1"
    refused = c.post("/v1/models/churn_mlp/predict", json={"inputs": [[1.0]]}, headers={"x-request-id": "e-1"})
    assert refused.status_code == 422 and refused.headers["x-request-id"] == "e-1"
    bad = c.post("/v1/models/churn_mlp/predict", json={"inputs": x[:1].tolist()}, headers={"x-request-id": "a b"})
    assert bad.status_code == 400 and "X-Request-Id" in bad.json()["error"]["message"]
    joined = c.post("/v1/models/churn_mlp/feedback", json={"ids": ["v2-id-1", "order-17:2"], "labels": [1, 0]})
    assert joined.json()["joined"] == 2


def test_labels_posted_late_and_out_of_order_all_join_once(served) -> None:
    _, c = served
    x, churn, _ = customers(400, 12)
    ids = []
    for i in range(0, 200):  # one-row requests, then requests of 10 rows
        ids.append(_predict(c, "/v1/models/churn_mlp/versions/1/predict", x[i:i + 1]).headers["x-request-id"])
    for i in range(200, 400, 10):
        rid = _predict(c, "/v1/models/churn_mlp/versions/1/predict", x[i:i + 10]).headers["x-request-id"]
        ids += [f"{rid}:{k}" for k in range(10)]
    order = np.random.default_rng(0).permutation(400)
    late = [ids[i] for i in order]
    labels = [int(churn[i]) for i in order]
    first = c.post("/v1/models/churn_mlp/feedback", json={"ids": late[:150], "labels": labels[:150]}).json()
    _predict(c, "/v1/models/churn_mlp/versions/1/predict", x[:5])  # more answers in between
    records = [{"id": i, "label": lab} for i, lab in zip(late[150:], labels[150:], strict=True)]
    body = msgpack.packb({"records": records})
    second = c.post("/v1/models/churn_mlp/feedback", content=body, headers={"content-type": "application/msgpack",
                                                                             "accept": "application/msgpack"})
    assert second.headers["content-type"] == "application/msgpack"
    second_answer = msgpack.unpackb(second.content)
    assert (first["joined"], second_answer["joined"]) == (150, 250)
    again = c.post("/v1/models/churn_mlp/feedback", json={"ids": [*late[:3], "never-sent"], "labels": [0, 1, 0, 1]})
    assert again.json() | {"not_joined": None} == {"model": "churn_mlp", "received": 4, "joined": 0, "unknown": 1,
                                                   "expired": 0, "repeated": 3, "not_joined": None}
    assert {"id": "never-sent", "outcome": "unknown"} in again.json()["not_joined"]


def test_a_label_flip_is_flagged_on_its_version_and_the_healthy_one_is_not(served) -> None:
    srv, c = served
    x, churn, _ = customers(1200, 13)
    rng = np.random.default_rng(1)
    for version, flip in ((1, 0.0), (2, 0.35)):
        ids = [_predict(c, f"/v1/models/churn_mlp/versions/{version}/predict", x[i:i + 1]).headers["x-request-id"]
               for i in range(600)]
        truth = np.where(rng.random(600) < flip, 1 - churn[:600], churn[:600])
        r = c.post("/v1/models/churn_mlp/feedback", json={"ids": ids, "labels": truth.tolist()})
        assert r.json()["joined"] == 600
    quality = {v["version"]: v["quality"] for v in c.get("/v1/models/churn_mlp/quality").json()["versions"]}
    assert quality[1]["status"] == "ok" and quality[2]["status"] == "alert", quality
    assert quality[2]["last_window"]["tests"]["zero_one"]["status"] == "alert"
    assert quality[2]["reference"]["accuracy"] == pytest.approx(0.797, abs=0.01)
    drift = {v["version"]: v["quality_status"] for v in c.get("/v1/models/churn_mlp/drift").json()["versions"]}
    assert drift == {1: "ok", 2: "alert"}
    metrics = c.get("/metrics").text
    assert 'fastserve_quality_status{model="churn_mlp",version="2"} 2.0' in metrics
    assert 'fastserve_quality_status{model="churn_mlp",version="1"} 0.0' in metrics
    table = subprocess.run([sys.executable, "-m", "fastserve", "quality", srv.url, "churn_mlp"], capture_output=True,
                           text=True, cwd=ROOT, check=True).stdout
    assert "v2  ready  classification  status alert" in table and "alert: zero_one" in table


@pytest.mark.parametrize(("body", "status", "path"), [
    ({"ids": ["a", "b"], "labels": [1]}, 422, "$.labels"),
    ({"ids": ["a"], "labels": ["yes"]}, 422, "$.labels[0]"),
    ({"ids": ["a", "b"], "labels": [1, 0.5]}, 422, "$.labels[1]"),
    ({"ids": ["a", 7], "labels": [1, 0]}, 422, "$.ids[1]"),
    ({"ids": ["a"], "labels": [[1]]}, 422, "$.labels[0]"),
    ({"records": [{"id": "a", "label": 1}, {"id": "b"}]}, 422, "$.records[1]"),
    ({"records": [{"id": "a", "label": 1}], "ids": []}, 422, "$"),
    ({"ids": [], "labels": []}, 422, "$"),
    ({"labels": [1]}, 422, "$.ids"),
    ([1, 2], 422, "$"),
])
def test_bad_feedback_bodies_get_4xx_with_the_path(served, body, status, path) -> None:
    _, c = served
    r = c.post("/v1/models/churn_mlp/feedback", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["detail"]["path"] == path


def test_feedback_for_an_unknown_model_or_in_a_broken_body_is_refused(served) -> None:
    _, c = served
    r = c.post("/v1/models/nope/feedback", json={"ids": ["a"], "labels": [1]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = c.post("/v1/models/churn_mlp/feedback", content=b'{"ids": [', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert c.post("/v1/models/churn_mlp/feedback", json={"ids": ["a"], "labels": [1]}).status_code == 200


def test_the_store_stays_in_its_budget_under_a_flood_of_unanswered_ids(tmp_path: Path) -> None:
    copy_model("spend", tmp_path, "[feedback]\nmax_bytes = 65536\n")
    x, _, _ = customers(2, 14)
    with start_server(tmp_path) as srv, httpx.Client(base_url=srv.url, timeout=20.0) as c:
        for i in range(3000):
            _predict(c, "/v1/models/spend/predict", x[:1], f"flood-{i}")
        store = c.get("/v1/models/spend/quality").json()["store"]
        assert store["bytes"] <= 65536 and store["stored"] == 3000 and store["fell_out"] > 2000
        r = c.post("/v1/models/spend/feedback", json={"ids": ["flood-0", "flood-2999"], "labels": [10.0, 20.5]})
        assert (r.json()["expired"], r.json()["joined"]) == (1, 1)
        quality = c.get("/v1/models/spend/quality").json()["versions"][0]["quality"]
        assert quality["kind"] == "regression" and quality["since_load"]["rows"] == 1
        assert "fastserve_feedback_answers_not_kept_total{model=\"spend\",reason=\"fell_out\"}" in \
            c.get("/metrics").text


def test_reading_feedback_costs_time_linear_in_its_size() -> None:
    """The worst body: ids of the longest length, each unknown, with a `:row` tail (two lookups and two filter
    checks each)."""
    store = Store(FeedbackOptions(), width=2)

    def body(n: int) -> dict:
        return {"ids": [f"{i:0>130}:{i % 10**9}" for i in range(n)], "labels": [1] * n}

    small, large = body(2000), body(20000)

    def work(b: dict):
        return lambda: store.join(parse_feedback(b)[0])

    judge("feedback", 2000, 20000, ratio(work(small), work(large), cold=False))


def test_labels_join_while_predictions_flow(served) -> None:
    """Four clients predict without pause while labels for what they were answered are posted as they come: every
    request and every feedback answered 200, every label joined once."""
    import threading
    import time

    srv, _ = served
    x, churn, _ = customers(64, 15)
    answered: list[tuple[str, int]] = []
    failures: list[int] = []
    stop = threading.Event()

    def predict(seed: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=20.0) as c:
            k = seed
            while not stop.is_set():
                r = c.post("/v1/models/churn_mlp/versions/1/predict", json={"inputs": x[k % 64:k % 64 + 1].tolist()})
                if r.status_code != 200:
                    failures.append(r.status_code)
                answered.append((r.headers["x-request-id"], int(churn[k % 64])))
                k += 4

    threads = [threading.Thread(target=predict, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    joined = sent = 0
    with httpx.Client(base_url=srv.url, timeout=20.0) as c:
        while sent < 2000:
            batch = answered[sent:]
            if not batch:
                time.sleep(0.001)
                continue
            r = c.post("/v1/models/churn_mlp/feedback", json={"ids": [i for i, _ in batch],
                                                             "labels": [label for _, label in batch]})
            assert r.status_code == 200, r.text
            joined += r.json()["joined"]
            sent += len(batch)
    stop.set()
    for t in threads:
        t.join()
    assert not failures and joined == sent >= 2000
