"""Labels with `--workers N`: answers are kept by the worker that made them, feedback reaches every worker's store
whichever worker takes it, and quality is the supervisor's, over all of them."""

from __future__ import annotations

import httpx
import pytest

from fastserve.http.door import door_supported
from tests.conftest import copy_model, customers
from tests.workers.test_workers import metric, start_workers

pytestmark = pytest.mark.skipif(not door_supported(), reason="worker processes need the door process (Linux)")


def test_labels_join_answers_made_by_any_worker(tmp_path) -> None:
    copy_model("churn_mlp", tmp_path, "[quality]\nwindow_rows = 100\nwindow_seconds = 0\nmin_rows = 50\n")
    x, churn, _ = customers(300, 31)
    srv = start_workers(tmp_path, "--workers", "2")
    try:
        ids = []
        clients = [httpx.Client(base_url=srv.url, timeout=20.0) for _ in range(6)]  # open together: spread over
        try:                                                                       # the workers by the door
            for k in range(300):
                ids.append(clients[k % 6].post("/v1/models/churn_mlp/predict", json={"inputs": x[k:k + 1].tolist()},
                                               headers={"x-request-id": f"w-{k}"}).headers["x-request-id"])
        finally:
            for c in clients:
                c.close()
        text = httpx.get(f"{srv.url}/metrics").text
        answered = [metric(text, "fastserve_worker_requests", worker=str(w)) for w in (0, 1)]
        assert min(answered) > 0, f"one worker made every answer ({answered}): the test shows nothing"
        r = httpx.post(f"{srv.url}/v1/models/churn_mlp/feedback",
                       json={"ids": [*ids, "w-never"], "labels": [*churn.tolist(), 1]}, timeout=20.0).json()
        assert (r["joined"], r["unknown"], r["repeated"]) == (300, 1, 0)
        report = httpx.get(f"{srv.url}/v1/models/churn_mlp/quality").json()
        assert report["versions"][0]["quality"]["since_load"]["rows"] == 300
        assert report["ids"]["joined"] == 300 and report["store"]["stores"] == 2
        assert report["store"]["stored"] == 300
        again = httpx.post(f"{srv.url}/v1/models/churn_mlp/feedback", json={"ids": ids[:10], "labels": [0] * 10})
        assert again.json()["repeated"] == 10
        text = httpx.get(f"{srv.url}/metrics").text
        assert metric(text, "fastserve_feedback_ids_total", model="churn_mlp", outcome="joined") == 300
        assert metric(text, "fastserve_quality_labels_total", model="churn_mlp") == 300
    finally:
        srv.stop()
