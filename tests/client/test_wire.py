"""What the client puts on the wire, seen by a loopback listener that records each request and answers it."""

import socket
import threading

import httpx
import msgpack
import numpy as np
import orjson
import pytest

from fastserve.client import Client

ANSWER = msgpack.packb({"model": "m", "version": 3, "outputs": {"label": [1], "probabilities": [[0.25, 0.75]]}})


class Recorder:
    """Accepts connections on a loopback port, keeps each request's head and body, answers `ANSWER`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append((line, headers, body))
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\ncontent-length: "
                             + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


def test_a_float_array_goes_as_a_raw_little_endian_tensor_with_the_time_left(recorder):
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    with Client(recorder.url, timeout=2.0, headers={"x-team": "risk"}) as client:
        answer = client.predict("churn model", x, version=2, headers={"x-user-id": "42"})
    assert (answer.model, answer.version) == ("m", 3)
    np.testing.assert_array_equal(answer["probabilities"], [[0.25, 0.75]])
    line, headers, body = recorder.requests[0]
    assert line == "POST /v1/models/churn%20model/versions/2/predict HTTP/1.1"
    assert headers["content-type"] == headers["accept"] == "application/msgpack"
    assert headers["x-team"] == "risk" and headers["x-user-id"] == "42"
    assert 1000 < float(headers["x-request-timeout-ms"]) <= 2000
    tensor = msgpack.unpackb(body)["inputs"]
    assert tensor["dtype"] == "float64" and tensor["shape"] == [2, 3]
    np.testing.assert_array_equal(np.frombuffer(tensor["data"], "<f8").reshape(2, 3), x)


def test_json_and_widened_dtypes(recorder):
    with Client(recorder.url, format="json", timeout=None) as client:
        client.predict("m", np.array([[1, 2]], dtype=np.int8))
        client.predict_records("m", [{"age": np.float32(41.5), "country": "FR"}])
        client.predict_columns("m", {"age": np.array([41.5]), "country": np.array(["FR"])})
    with Client(recorder.url) as client:
        client.predict("m", np.array([[1, 2]], dtype=np.uint16))
        client.predict("m", np.array([[0.5]], dtype=np.float16))
    (_, h0, b0), (_, _, b1), (_, _, b2), (_, _, b3), (_, _, b4) = recorder.requests
    assert h0["content-type"] == "application/json" and "x-request-timeout-ms" not in h0  # no deadline
    assert orjson.loads(b0) == {"inputs": [[1, 2]]}
    assert orjson.loads(b1) == {"records": [{"age": 41.5, "country": "FR"}]}
    assert orjson.loads(b2) == {"columns": {"age": [41.5], "country": ["FR"]}}
    assert msgpack.unpackb(b3)["inputs"]["dtype"] == "int32"
    assert msgpack.unpackb(b4)["inputs"]["dtype"] == "float32"


def test_one_connection_is_kept_alive_across_calls(recorder):
    with Client(recorder.url) as client:
        for _ in range(5):
            client.predict("m", [[1.0]])
            client.health()
    assert len(recorder.requests) == 10 and recorder.connections == 1


def test_a_transport_of_ones_own_carries_the_calls():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=ANSWER, headers={"content-type": "application/msgpack"})

    with Client("http://fastserve.invalid", transport=httpx.MockTransport(answer)) as client:
        assert client.predict("m", [[1.0]]).version == 3
    assert seen == ["/v1/models/m/predict"]
