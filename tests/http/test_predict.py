"""Predictions over real HTTP match in-process onnxruntime and the original scikit-learn models."""

import msgpack
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS

JSON = {"content-type": "application/json"}
MSGPACK = {"content-type": "application/msgpack"}


def local_outputs(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    # The server's options (one intra-op thread): a tree ensemble split over threads sums in another order.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"inputs": x.astype(np.float32)}), strict=True))


@pytest.mark.parametrize("model", ["churn", "churn_mlp", "spend"])
def test_json_outputs_equal_in_process_onnxruntime(client, golden, model):
    x = golden[model]["inputs"]
    r = client.post(f"/v1/models/{model}/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and body["version"] == 1
    assert r.headers["x-model-version"] == "1"
    expected = local_outputs(model, x)
    assert set(body["outputs"]) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(np.asarray(body["outputs"][name], dtype=value.dtype), value)


@pytest.mark.parametrize("model", ["churn", "churn_mlp"])
def test_classifier_probabilities_match_scikit_learn(client, golden, model):
    g = golden[model]
    r = client.post(f"/v1/models/{model}/predict", json={"inputs": g["inputs"].tolist()})
    outputs = r.json()["outputs"]
    np.testing.assert_allclose(np.asarray(outputs["probabilities"]), g["probabilities"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(outputs["label"], g["label"])


def test_regressor_matches_scikit_learn(client, golden):
    g = golden["spend"]
    r = client.post("/v1/models/spend/predict", json={"inputs": g["inputs"].tolist()})
    np.testing.assert_allclose(np.asarray(r.json()["outputs"]["prediction"]), g["prediction"], rtol=1e-5)


def test_msgpack_rows_and_raw_tensor_give_the_json_answer(client, golden):
    x = golden["churn"]["inputs"][:17]
    by_json = client.post("/v1/models/churn/predict", json={"inputs": x.tolist()}).json()
    rows = client.post("/v1/models/churn/predict", headers=MSGPACK, content=msgpack.packb({"inputs": x.tolist()}))
    assert rows.status_code == 200 and rows.headers["content-type"] == "application/msgpack"
    tensor = {"dtype": "float32", "shape": list(x.shape), "data": x.astype("<f4").tobytes()}
    raw = client.post("/v1/models/churn/predict", headers=MSGPACK, content=msgpack.packb({"inputs": tensor}))
    assert raw.status_code == 200
    for answer in (rows, raw):
        body = msgpack.unpackb(answer.content)
        assert body["model"] == "churn" and body["version"] == 1
        assert body["outputs"]["label"] == by_json["outputs"]["label"]
        np.testing.assert_array_equal(np.float32(body["outputs"]["probabilities"]),
                                      np.float32(by_json["outputs"]["probabilities"]))


def test_float64_raw_tensor_is_cast_to_the_model_dtype(client, golden):
    x = golden["spend"]["inputs"][:3].astype(np.float64)
    tensor = {"dtype": "float64", "shape": [3, 22], "data": x.astype("<f8").tobytes()}
    r = client.post("/v1/models/spend/predict", headers=MSGPACK, content=msgpack.packb({"inputs": tensor}))
    assert r.status_code == 200
    expected = local_outputs("spend", x)["prediction"]
    np.testing.assert_array_equal(np.float32(msgpack.unpackb(r.content)["outputs"]["prediction"]), expected)


def test_explicit_version_route(client, golden):
    x = golden["churn"]["inputs"][:2].tolist()
    r = client.post("/v1/models/churn/versions/1/predict", json={"inputs": x})
    assert r.status_code == 200 and r.json()["version"] == 1


@pytest.mark.parametrize(
    ("request_headers", "answer_type"),
    [
        ({**JSON, "accept": "application/msgpack"}, "application/msgpack"),
        ({**MSGPACK, "accept": "application/json"}, "application/json"),
        ({**MSGPACK, "accept": "*/*"}, "application/msgpack"),
        ({**JSON, "accept": "application/json;q=0.5, application/msgpack"}, "application/msgpack"),
        ({**JSON, "accept": "text/html, application/*;q=0.8"}, "application/json"),
    ],
)
def test_answer_format_follows_accept(client, golden, request_headers, answer_type):
    row = golden["churn"]["inputs"][:1].tolist()
    body = msgpack.packb({"inputs": row}) if "msgpack" in request_headers["content-type"] else None
    r = client.post("/v1/models/churn/predict", headers=request_headers,
                    content=body if body is not None else None, json=None if body is not None else {"inputs": row})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == answer_type
    decoded = msgpack.unpackb(r.content) if answer_type == "application/msgpack" else r.json()
    assert decoded["outputs"]["label"] == [int(golden["churn"]["label"][0])]


def test_content_type_parameters_are_ignored(client, golden):
    row = golden["churn"]["inputs"][:1].tolist()
    import orjson

    r = client.post("/v1/models/churn/predict", headers={"content-type": "application/json; charset=utf-8"},
                    content=orjson.dumps({"inputs": row}))
    assert r.status_code == 200


def test_a_request_pipelined_behind_a_short_one_keeps_its_connection(server):
    # The health check is answered while the predict pipelined behind it is still sending its 2 MB body: that body
    # is the predict's own, read whole and answered in its turn, not a reason to close the connection.
    import socket

    from tests.realclients import read_answer

    body = b'{"inputs": [[' + b", ".join([b"0.5"] * 22) + b"]]}" + b" " * (2 * 1024 * 1024)
    head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body[:65536])
        assert read_answer(s)[0] == 200  # the health check, with most of the predict's body still to come
        s.sendall(body[65536:])
        status, _, answer = read_answer(s)
        assert status == 200, answer[:200]
        assert b'"probabilities"' in answer


def test_a_client_that_does_not_read_its_answers_holds_its_next_requests_back(server):
    # 120 pipelined predicts of 4,096 rows (answers of ~170 KB each) from a client that reads nothing: once the
    # socket's buffers and the transport's are full, the server starts no more of them, rather than piling answers
    # up in its memory; once the client reads, every one is answered, in order.
    import re
    import socket
    import threading
    import time

    import httpx

    x = np.full((4096, 22), 0.5, dtype=np.float32)
    body = msgpack.packb({"inputs": {"dtype": "float32", "shape": [4096, 22], "data": x.tobytes()}})
    request = (b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\n"
               b"Accept: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    n = 120

    def answered() -> int:
        text = httpx.get(f"{server.url}/metrics").text
        found = re.search(r'^fastserve_requests_total\{code="200",model="churn",version="1"\} (\S+)$', text, re.M)
        return int(float(found.group(1))) if found else 0

    before = answered()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # (no autotuning to tens of MB)
        s.connect(("127.0.0.1", server.port))
        threading.Thread(target=s.sendall, args=(request * n,), daemon=True).start()
        counts = [-1]
        for _ in range(150):  # until the count has not moved for a second
            time.sleep(0.2)
            counts.append(answered() - before)
            if len(counts) > 6 and counts[-1] == counts[-6]:
                break
        held_at = counts[-1]
        buffered = b""
        statuses = []
        s.settimeout(30)
        while len(statuses) < n:
            while b"\r\n\r\n" not in buffered:
                buffered += s.recv(1 << 20)
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            while len(buffered) < length:
                buffered += s.recv(1 << 20)
            answer, buffered = buffered[:length], buffered[length:]
            statuses.append(int(head.split()[1]))
            assert answer.startswith(b'{"model":"churn"'), answer[:200]
    assert 0 < held_at < n // 2, f"{held_at} of {n} answered while the client read nothing"
    assert statuses == [200] * n


def test_a_client_that_leaves_while_sending_its_body_is_counted_and_the_server_serves_on(server, client, golden):
    # Headers and the first bytes of a predict's body, then the client hangs up: the request is counted as closed by
    # its client (499) once, and the next request is answered.
    import re
    import socket
    import time

    def closed() -> float:
        text = client.get("/metrics").text
        return sum(float(v) for v in re.findall(r'^fastserve_requests_total\{code="499"[^}]*\} (\S+)$', text, re.M))

    before = closed()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b'Content-Length: 100000\r\n\r\n{"inputs": [[')
        time.sleep(0.3)  # its turn has come: it waits for the rest of its body
    for _ in range(100):
        if closed() > before:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    assert closed() == before + 1
    r = client.post("/v1/models/churn/predict", json={"inputs": golden["churn"]["inputs"][:1].tolist()})
    assert r.status_code == 200, r.text
