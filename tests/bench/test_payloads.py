"""What `fastserve bench` sends is what the server takes: every format and protocol answered 200 by a real server."""

import socket
from collections import Counter

import httpx
import numpy as np
import pytest

from fastserve.bench import payloads
from fastserve.bench.data import read_validation
from fastserve.bench.target import is_fastserve, model_input, parse_url
from tests.conftest import MODELS

CASES = [("native", "json"), ("native", "msgpack"), ("native", "tensor"), ("v2", None), ("v2-binary", None)]


@pytest.mark.parametrize(("protocol", "fmt"), CASES)
def test_each_format_and_protocol_is_answered_200(server, protocol, fmt):
    x = np.random.default_rng(0).normal(size=(3, 22)).astype(np.float32)
    body = payloads.rows_body(x, fmt or "json", protocol, "inputs")
    r = httpx.post(server.url + payloads.predict_path("churn_mlp", None, protocol), content=body.content,
                   headers={"content-type": body.content_type, **dict(body.headers)})
    assert r.status_code == 200, r.text
    if protocol == "native":
        assert r.headers["x-model-version"] == "1"
    else:
        assert r.json()["model_version"] == "1"


def _send_raw(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        return answer


@pytest.mark.parametrize(("protocol", "fmt"), [("native", "tensor"), ("v2-binary", None)])
def test_raw_requests_are_whole_http_requests(server, protocol, fmt):
    target = parse_url(server.url)
    model = model_input(target, "spend", "1", is_fastserve(target))
    assert (model.input_name, model.width, model.dtype) == ("inputs", 22, "float32")
    rows = read_validation(MODELS, "spend", None).rows
    body = payloads.rows_body(rows[:5], fmt or "json", protocol, model.input_name)
    raw = payloads.raw_request(target.host_header, payloads.predict_path("spend", "1", protocol), body,
                               [("X-Request-Timeout-Ms", "5000")])
    assert raw.count(b"\r\n\r\n") >= 1 and raw.endswith(body.content)
    assert _send_raw(server.port, raw).startswith(b"HTTP/1.1 200 ")


def test_records_reach_a_model_with_a_feature_spec(server):
    import json

    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    for fmt in ("json", "msgpack"):
        body = payloads.records_body(records[:4], fmt)
        r = httpx.post(server.url + "/v1/models/churn/predict", content=body.content,
                       headers={"content-type": body.content_type})
        assert r.status_code == 200, r.text


def test_v2_metadata_gives_what_the_model_takes(server):
    target = parse_url(server.url)
    model = model_input(target, "churn_mlp", None, fastserve=False)  # as for Triton, MLServer, KServe
    assert (model.input_name, model.width, model.dtype) == ("inputs", 22, "float32")


def test_a_mix_follows_its_weights_in_a_fixed_shuffled_order():
    groups = [[b"a1", b"a2"], [b"b"], [b"c"]]
    weights = payloads.mix_weights("zipf:1.1", 3)
    assert weights[0] > weights[1] > weights[2] and abs(sum(weights) - 1) < 1e-12
    requests = payloads.mixed(groups, weights, seed=7)
    counts = Counter(r[:1] for r in requests)
    assert len(requests) == payloads.MIX_LENGTH
    for (key, count), w in zip(sorted(counts.items()), weights, strict=True):
        assert abs(count - w * payloads.MIX_LENGTH) <= 1, key
    assert requests == payloads.mixed(groups, weights, seed=7) != payloads.mixed(groups, weights, seed=8)
    assert requests[:50] != sorted(requests[:50])  # shuffled, not in blocks
    assert payloads.mix_weights("uniform", 4) == [0.25] * 4
    assert payloads.shares([0.999, 0.001 / 2, 0.001 / 2], 10) == [8, 1, 1]  # every model gets a share


@pytest.mark.parametrize("text", ["X-Bad\r\nInjected: 1", "no-colon", "Content-Length: 5", "Bad Name: v", "X: a\nb"])
def test_headers_that_would_break_the_request_are_refused(text):
    with pytest.raises(ValueError):
        payloads.parse_header(text)


def test_header_parsed():
    assert payloads.parse_header("X-Request-Timeout-Ms: 20") == ("X-Request-Timeout-Ms", "20")
