"""Admission control under overload: with a latency SLO set, requests the server is too far behind to answer in
time are refused at their headers (503 + Retry-After, the connection kept), the rest are answered correctly, and
the server answers at once when the load is gone."""

import asyncio

import httpx
import numpy as np
import onnxruntime as ort
import orjson

from tests.conftest import MODELS, copy_model, start_server
from tests.loadclient import post_many


def test_flood_is_refused_at_the_headers_and_admitted_requests_are_right(tmp_path):
    copy_model("churn_mlp", tmp_path, config="[batching]\nlatency_slo_ms = 5\n")
    srv = start_server(tmp_path)
    rows = np.random.default_rng(0).normal(size=(4000, 22)).astype(np.float32)
    bodies = [orjson.dumps({"inputs": [row.tolist()]}) for row in rows]
    try:
        for _ in range(4):  # floods until the loop falls behind long enough for the lag to show (a few seconds)
            answers = asyncio.run(post_many(srv.port, "/v1/models/churn_mlp/predict", bodies, connections=96,
                                            headers={"Content-Type": "application/json"}))
            if any(b'"overloaded"' in a.content for a in answers):
                break
        after = httpx.post(f"{srv.url}/v1/models/churn_mlp/predict", json={"inputs": [rows[0].tolist()]})
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    session = ort.InferenceSession(str(MODELS / "churn_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {session.get_inputs()[0].name: rows})[0]
    codes = {a.status_code for a in answers}
    assert codes <= {200, 429, 503}, codes
    overloaded = [a for a in answers if a.status_code == 503 and b'"overloaded"' in a.content]
    assert overloaded, "a flood on 96 connections with a 5 ms SLO was never refused at the headers"
    assert all(a.headers["retry-after"] == "1" and a.headers.get("connection") != "close" for a in overloaded)
    served = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert len(served) > 100
    for i in served:
        got = np.array(orjson.loads(answers[i].content)["outputs"]["probabilities"], dtype=np.float32)
        np.testing.assert_allclose(got[0], expected[i], atol=1e-5)
    assert after.status_code == 200
    refused = next(line for line in metrics.splitlines()
                   if line.startswith('fastserve_connections_refused_total{reason="overloaded"}'))
    assert float(refused.split()[-1]) >= len(overloaded)  # earlier floods may have been refused too
