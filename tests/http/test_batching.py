"""Batching through the real server, with real concurrent clients."""

import asyncio
import re
import socket
import time

import httpx
import msgpack
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS, copy_model, start_server
from tests.loadclient import Answer, post_many

MSGPACK = {"content-type": "application/msgpack"}


def reference(model: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(x):
        return dict(zip(names, session.run(names, {"inputs": x}), strict=True))
    return run


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def tensor_body(x: np.ndarray, **extra) -> bytes:
    return msgpack.packb({"inputs": {"dtype": "float32", "shape": list(x.shape), "data": x.tobytes()}, **extra})


async def fire(url: str, bodies: list[bytes], connections: int, headers=None) -> list[Answer]:
    """Send every msgpack body to churn_mlp, `connections` at a time, and return the answers in order."""
    port = int(url.rsplit(":", 1)[1])
    return await post_many(port, "/v1/models/churn_mlp/predict", bodies, connections, {**MSGPACK, **(headers or {})})


@pytest.fixture(scope="module")
def mlp_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("batching")
    copy_model("churn_mlp", models, config="[batching]\nmax_batch_size = 256\nmax_delay_us = 2000\n")
    srv = start_server(models)
    yield srv
    log = srv.stop()
    assert "Traceback" not in log and " ERROR " not in log, log


def test_concurrent_requests_form_batches_and_each_gets_its_own_rows(mlp_server):
    rng = np.random.default_rng(1)
    golden = np.load(MODELS / "churn_mlp" / "1" / "validation.npz")["inputs"]
    xs = [golden[rng.integers(0, len(golden), size=int(rng.integers(1, 9)))] for _ in range(600)]
    before = httpx.get(f"{mlp_server.url}/metrics").text
    answers = asyncio.run(fire(mlp_server.url, [tensor_body(x) for x in xs], connections=64))
    after = httpx.get(f"{mlp_server.url}/metrics").text
    run = reference("churn_mlp")
    for x, r in zip(xs, answers, strict=True):
        assert r.status_code == 200, r.content
        out = msgpack.unpackb(r.content)["outputs"]
        expected = run(x)
        assert out["label"] == expected["label"].tolist()
        np.testing.assert_allclose(np.float32(out["probabilities"]), expected["probabilities"], atol=1e-6)
    batches = (metric(after, "fastserve_batch_size_rows_count") - metric(before, "fastserve_batch_size_rows_count"))
    rows = metric(after, "fastserve_batch_size_rows_sum") - metric(before, "fastserve_batch_size_rows_sum")
    assert rows == sum(len(x) for x in xs)
    assert batches < len(xs) / 2, f"{len(xs)} requests in {batches} batches: they did not share batches"


def test_ten_thousand_requests_none_lost_none_twice_all_correct(mlp_server):
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 65, size=10_000)
    data = rng.normal(size=(int(sizes.sum()), 22)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    xs = [data[offsets[i]:offsets[i + 1]] for i in range(len(sizes))]
    bodies = [tensor_body(x) for x in xs]
    before = httpx.get(f"{mlp_server.url}/metrics").text
    answers = asyncio.run(fire(mlp_server.url, bodies, connections=128))
    after = httpx.get(f"{mlp_server.url}/metrics").text
    run = reference("churn_mlp")
    expected = run(data)
    for i, r in enumerate(answers):
        assert r.status_code == 200, r.content
        out = msgpack.unpackb(r.content)["outputs"]
        lo, hi = offsets[i], offsets[i + 1]
        np.testing.assert_allclose(np.float32(out["probabilities"]), expected["probabilities"][lo:hi], atol=1e-5)
    served = metric(after, "fastserve_requests_total", code="200") - metric(before, "fastserve_requests_total",
                                                                            code="200")
    assert served == 10_000
    assert metric(after, "fastserve_queue_rows") == 0 and metric(after, "fastserve_batches_in_flight") == 0


@pytest.fixture
def small_queue_server(tmp_path):
    # Every run on a worker thread: a run short enough for the event loop's thread (64 rows on a fast machine) holds
    # the loop, and requests wait in their sockets instead of in the queue whose bound is tested here.
    config = ("[runtime]\ninline_run_max_us = 0\n[inputs]\nmax_rows = 128\n"
              "[batching]\nmax_batch_size = 64\nmax_queue_rows = 128\noversize = 'refuse'\n")
    copy_model("churn_mlp", tmp_path, config=config)
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


def test_queue_bound_refuses_with_429_and_retry_after(small_queue_server):
    x = np.ones((64, 22), dtype=np.float32)
    answers = asyncio.run(fire(small_queue_server.url, [tensor_body(x)] * 300, connections=100))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}, set(codes)
    assert codes.count(429) > 0 and codes.count(200) > 0
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    err = msgpack.unpackb(refused.content)["error"]
    assert err["code"] == "queue_full" and "queue full" in err["message"]
    text = httpx.get(f"{small_queue_server.url}/metrics").text
    assert metric(text, "fastserve_shed_requests_total", reason="queue_full") == codes.count(429)


def test_oversize_refused_when_configured(small_queue_server):
    url = f"{small_queue_server.url}/v1/models/churn_mlp/predict"
    r = httpx.post(url, headers=MSGPACK, content=tensor_body(np.ones((64, 22), dtype=np.float32)))
    assert r.status_code == 200  # 64 rows = max_batch_size: fits
    r = httpx.post(url, headers=MSGPACK, content=tensor_body(np.ones((65, 22), dtype=np.float32)))
    assert r.status_code == 422
    assert "over this model's max_batch_size of 64" in msgpack.unpackb(r.content)["error"]["message"]


def test_deadline_that_cannot_be_met_is_refused_before_running(mlp_server):
    x = np.ones((1, 22), dtype=np.float32)
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict",
                   headers={**MSGPACK, "x-request-timeout-ms": "0.0001"}, content=tensor_body(x))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert msgpack.unpackb(r.content)["error"]["code"] == "deadline_exceeded"
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict", headers=MSGPACK,
                   content=tensor_body(x, timeout_ms=0.0001))
    assert r.status_code == 503
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict",
                   headers={**MSGPACK, "x-request-timeout-ms": "5000"}, content=tensor_body(x, timeout_ms=5000))
    assert r.status_code == 200


@pytest.mark.parametrize("header", ["abc", "-5", "0", "nan", "inf"])
def test_bad_timeout_header(mlp_server, header):
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict",
                   headers={**MSGPACK, "x-request-timeout-ms": header},
                   content=tensor_body(np.ones((1, 22), dtype=np.float32)))
    assert r.status_code == 422
    assert "X-Request-Timeout-Ms header" in msgpack.unpackb(r.content)["error"]["message"]


def test_bad_timeout_field(mlp_server):
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict", headers=MSGPACK,
                   content=tensor_body(np.ones((1, 22), dtype=np.float32), timeout_ms="soon"))
    assert r.status_code == 422
    assert "at `$.timeout_ms`" in msgpack.unpackb(r.content)["error"]["message"]


def test_deadlines_under_overload_refuse_rather_than_serve_late(mlp_server):
    """With a 20 ms timeout and far more work than fits in it, the excess is refused, none are lost: with 503 for
    the deadline, or 429 where the queue filled first."""
    x = np.ones((256, 22), dtype=np.float32)
    answers = asyncio.run(fire(mlp_server.url, [tensor_body(x, timeout_ms=20)] * 400, connections=200))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429, 503}, set(codes)
    assert codes.count(503) > 0 and codes.count(200) > 0
    text = httpx.get(f"{mlp_server.url}/metrics").text
    shed = (metric(text, "fastserve_shed_requests_total", reason="deadline_at_arrival")
            + metric(text, "fastserve_shed_requests_total", reason="deadline_in_queue"))
    assert shed >= codes.count(503)
    assert metric(text, "fastserve_shed_requests_total", reason="queue_full") >= codes.count(429)


def _raw_request(port: int, body: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return s


def _until(srv, name: str, value: float) -> None:
    """Wait (up to 20 s) until the server's metric `name` reads `value`."""
    for _ in range(2000):
        if metric(httpx.get(f"{srv.url}/metrics").text, name) == value:
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} never reached {value}")


def test_client_that_leaves_while_queued_leaves_no_work_behind(tmp_path):
    """A request of 65,536 rows (a run of about 0.2 s) takes the model's one instance; eight requests of 8,192 rows
    queue behind it, and one of their clients hangs up while they wait: its request is dropped unrun, the others
    answered. The run in progress holds the queue, seen through the server's own gauges, however fast or loaded the
    machine (a loaded one only runs longer)."""
    copy_model("churn_mlp", tmp_path, config="[inputs]\nmax_rows = 65536\n[batching]\nmax_batch_size = 262144\n"
                                             "max_queue_rows = 262144\n")
    srv = start_server(tmp_path)
    try:
        socks = [_raw_request(srv.port, tensor_body(np.ones((65536, 22), dtype=np.float32)))]
        _until(srv, "fastserve_batches_in_flight", 1)
        body = tensor_body(np.ones((8192, 22), dtype=np.float32))
        socks += [_raw_request(srv.port, body) for _ in range(8)]
        _until(srv, "fastserve_queue_rows", 8 * 8192)  # all queued, the first still running
        socks.pop(4).close()
        replies = []
        for s in socks:
            s.settimeout(20)
            replies.append(s.recv(64))
            s.close()
        _until(srv, "fastserve_batches_in_flight", 0)
        text = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies), replies
    assert metric(text, "fastserve_shed_requests_total", reason="cancelled") == 1
    assert metric(text, "fastserve_batch_size_rows_sum") == 65536 + 7 * 8192  # the others, in batches
    assert metric(text, "fastserve_requests_total", code="499") == 1


def test_batching_metrics_are_exported(client):
    client.post("/v1/models/churn/predict", json={"inputs": [[1.0] * 22]})
    text = client.get("/metrics").text
    for name in ("fastserve_batch_size_rows_bucket", "fastserve_queue_wait_seconds_bucket",
                 "fastserve_batch_run_seconds_bucket", "fastserve_queue_rows", "fastserve_batches_in_flight",
                 "fastserve_shed_requests_total"):
        assert re.search(rf'^{name}\{{.*model="churn"', text, re.M), name


def test_request_larger_than_a_batch_runs_alone(mlp_server):
    x = np.random.default_rng(3).normal(size=(300, 22)).astype(np.float32)  # max_batch_size is 256
    r = httpx.post(f"{mlp_server.url}/v1/models/churn_mlp/predict", headers=MSGPACK, content=tensor_body(x))
    assert r.status_code == 200
    np.testing.assert_allclose(np.float32(msgpack.unpackb(r.content)["outputs"]["probabilities"]),
                               reference("churn_mlp")(x)["probabilities"], atol=1e-5)
