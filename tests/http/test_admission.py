"""Admission at the headers for a model with a latency SLO: past its limit of requests in the server, a request is
answered 503 + Retry-After before its body is read, on a connection that stays open; admitted requests are answered
right; nothing is lost; and a place is held only by a request whose body is in, until it is answered."""

import asyncio
import re
import socket
import time

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from fastserve.http.admission import MAX_LIMIT, MIN_LIMIT, START_LIMIT, AdmissionLimit
from tests.conftest import MODELS, copy_model, start_server
from tests.loadclient import Answer, post_many

SLO = "[batching]\nlatency_slo_ms = 10\nmax_batch_size = 64\n"


def _admission(metrics: str) -> dict[str, float]:
    """fastserve_admission_* values for churn_mlp, by metric name."""
    found = {}
    for line in metrics.splitlines():
        if line.startswith("fastserve_admission_") and 'model="churn_mlp"' in line:
            found[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return found


def _wait_in_flight(url: str, expected: float) -> dict[str, float]:
    """The admission metrics once the count of requests in the server is `expected` (answers are written before
    their places are given back, so a scrape may race the last release)."""
    until = time.monotonic() + 5
    while True:
        values = _admission(httpx.get(f"{url}/metrics").text)
        if values.get("fastserve_admission_in_flight") == expected or time.monotonic() > until:
            return values
        time.sleep(0.05)


@pytest.fixture(scope="module")
def slo_server(tmp_path_factory):
    models = tmp_path_factory.mktemp("admission")
    copy_model("churn_mlp", models, config=SLO)
    srv = start_server(models)
    yield srv
    srv.stop()


def test_gate_refuses_over_its_limit_and_adapts_to_latency():
    gate = AdmissionLimit("m", slo_ms=10)
    assert gate.limit == START_LIMIT and gate.target_s == pytest.approx(10 / 3e3)
    gate.in_flight = START_LIMIT
    assert gate.full() and gate.refused == 1
    gate.in_flight = START_LIMIT - 1
    assert not gate.full() and gate.refused == 1
    gate.in_flight = 0
    # A round (`limit` answers) with more than 5% over the target shrinks the limit by a fifth...
    for i in range(START_LIMIT):
        gate.in_flight += 1
        gate.release(0.009 if i < 4 else 0.001)
    assert gate.limit == pytest.approx(START_LIMIT * 0.8) and gate.in_flight == 0
    # ...a round within it that used half the limit at once grows it by one; answers from lost connections are not
    # counted...
    limit = gate.limit
    gate.in_flight = int(limit) // 2
    for _ in range(int(limit) + 1):
        gate.in_flight += 1
        gate.release(0.001)
    gate.in_flight = 1
    gate.release(None)
    assert gate.limit == pytest.approx(limit + 1) and gate.in_flight == 0
    # ...and one that did not use it leaves it as it is: requests one at a time, however fast, do not raise it.
    for _ in range(10 * START_LIMIT):
        gate.in_flight += 1
        gate.release(0.0)
    assert gate.limit == pytest.approx(limit + 1)
    for _ in range(1000):  # slow rounds bring it down to the floor, never under
        gate.in_flight += 1
        gate.release(1.0)
    assert gate.limit == MIN_LIMIT
    gate.limit = MAX_LIMIT
    gate.in_flight = MAX_LIMIT
    for _ in range(MAX_LIMIT + 1):
        gate.release(0.0)
        gate.in_flight += 1
    assert gate.limit == MAX_LIMIT


async def _flood(port: int, path: str, bodies: list[bytes]) -> list[Answer]:
    """Three quarters of `bodies` at once, then the rest once the first ones are all sent: the server is then busy
    with far more requests than the gate's starting limit when the last ones' headers come."""
    first, sent = len(bodies) * 3 // 4, asyncio.Event()
    headers = {"Content-Type": "application/json"}
    early = asyncio.create_task(post_many(port, path, bodies[:first], first, headers, sent))
    await sent.wait()
    late = await post_many(port, path, bodies[first:], len(bodies) - first, headers)
    return await early + late


@pytest.mark.parametrize("route", ["native", "v2"])
def test_flood_is_refused_at_the_headers_and_admitted_requests_are_right(slo_server, route):
    # 200-row requests, 160 at once: answering them takes the server far longer than the SLO, so in-flight
    # requests pass the gate's starting limit and the rest are refused at their headers.
    rows = np.random.default_rng(1).normal(size=(160, 200, 22)).astype(np.float32)
    if route == "native":
        path = "/v1/models/churn_mlp/predict"
        bodies = [orjson.dumps({"inputs": r.tolist()}) for r in rows]
    else:
        path = "/v2/models/churn_mlp/infer"
        name = ort.InferenceSession(str(MODELS / "churn_mlp" / "1" / "model.onnx")).get_inputs()[0].name
        bodies = [orjson.dumps({"inputs": [{"name": name, "shape": [200, 22], "datatype": "FP32",
                                            "data": r.ravel().tolist()}]}) for r in rows]
    for _ in range(3):  # how far the server gets while the flood is sent is up to the scheduler: a few tries
        answers = asyncio.run(_flood(slo_server.port, path, bodies))
        if any(b"as many requests" in a.content for a in answers):
            break
    after = httpx.post(f"{slo_server.url}/v1/models/churn_mlp/predict", json={"inputs": rows[0, :1].tolist()})
    values = _wait_in_flight(slo_server.url, 0)

    assert {a.status_code for a in answers} <= {200, 503}
    refused = [a for a in answers if a.status_code == 503]
    at_headers = [a for a in refused if b"as many requests" in a.content]  # not the batcher's deadline refusals
    assert at_headers, "160 concurrent 200-row requests were never refused at the headers"
    for a in at_headers:
        assert a.headers["retry-after"] == "1" and a.headers.get("connection") != "close"
        body = orjson.loads(a.content)
        if route == "native":
            assert body["error"]["code"] == "overloaded" and "churn_mlp" in body["error"]["message"]
        else:
            assert isinstance(body["error"], str) and "latency SLO" in body["error"]
    assert all("retry-after" in a.headers for a in refused)
    session = ort.InferenceSession(str(MODELS / "churn_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    served = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert served
    for i in served:
        expected = session.run(["probabilities"], {session.get_inputs()[0].name: rows[i]})[0]
        body = orjson.loads(answers[i].content)
        got = body["outputs"]["probabilities"] if route == "native" else \
            next(o["data"] for o in body["outputs"] if o["name"] == "probabilities")
        np.testing.assert_allclose(np.asarray(got, dtype=np.float32).reshape(expected.shape), expected, atol=1e-5)
    assert after.status_code == 200
    assert values["fastserve_admission_refused_total"] >= len(at_headers)
    assert values["fastserve_admission_in_flight"] == 0
    assert MIN_LIMIT <= values["fastserve_admission_limit"] <= MAX_LIMIT


def _request(body: bytes) -> bytes:
    return (b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _read_answers(sock: socket.socket, n: int) -> list[bytes]:
    data, answers = b"", []
    while len(answers) < n:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            if len(rest) < length:
                break
            answers.append(head.split(b" ", 2)[1])
            data = rest[length:]
    return answers


def test_pipelined_requests_and_slow_bodies_hold_no_place(slo_server):
    body = orjson.dumps({"inputs": [[0.5] * 22]})
    with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
        sock.sendall(_request(body) * 3)  # pipelined: answered in order, each place given back once
        assert _read_answers(sock, 3) == [b"200"] * 3
    assert _wait_in_flight(slo_server.url, 0)["fastserve_admission_in_flight"] == 0

    with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
        raw = _request(body)
        sock.sendall(raw[:-5])  # headers and part of the body: no place is taken until the body is in
        time.sleep(0.2)
        assert _admission(httpx.get(f"{slo_server.url}/metrics").text)["fastserve_admission_in_flight"] == 0
        sock.sendall(raw[-5:])
        # Admitted; its SLO ran from its headers, so it may be past its deadline by now (refused unrun).
        assert _read_answers(sock, 1)[0] in (b"200", b"503")
    assert _wait_in_flight(slo_server.url, 0)["fastserve_admission_in_flight"] == 0


def _received(url: str) -> float:
    """fastserve_requests_received once only the scrape asking for it is left (or after 5 s)."""
    until = time.monotonic() + 5
    while True:
        text = httpx.get(f"{url}/metrics").text
        value = float(re.search(r"^fastserve_requests_received (\S+)$", text, re.M).group(1))
        if value == 1 or time.monotonic() > until:
            return value
        time.sleep(0.05)


def test_each_request_read_is_counted_until_answered_whatever_becomes_of_it(slo_server):
    # Requests read in one turn of the loop are known not to be alone by this count; a count that drifted up
    # would keep a lone request off its fast path for good. After floods with refusals at the headers (the
    # tests above), pipelined requests, clients gone mid-body or mid-run, and bad HTTP, it is back to the scrape.
    body = orjson.dumps({"inputs": [[0.5] * 22]})
    with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
        sock.sendall(_request(body) * 3)
        assert _read_answers(sock, 3) == [b"200"] * 3
    with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
        sock.sendall(_request(body)[:-5])  # gone before its body is in
    big = orjson.dumps({"inputs": np.ones((200, 22)).tolist()})
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
            sock.sendall(_request(big))  # gone while it is decoded, queued or run
    with socket.create_connection(("127.0.0.1", slo_server.port)) as sock:
        sock.sendall(b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    assert _received(slo_server.url) == 1
