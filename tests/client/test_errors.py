"""The client's errors carry the server's: status, code, message and the path in the request; the client's own
failures (nothing listening, no answer in time, wrong arguments) say what happened."""

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from fastserve.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    DeadlineExceeded,
    FastserveClientError,
    InvalidRequest,
    RetryPolicy,
    ServerError,
)
from fastserve.exceptions import FastserveError
from tests.client.conftest import churn_records
from tests.conftest import free_port
from tests.http.test_batching import metric


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_invalid_requests_raise_with_the_servers_code_and_path(server, golden, fmt):
    x = golden["churn_mlp"]["inputs"][:5]
    records, _ = churn_records()
    with Client(server.url, format=fmt) as client:
        cases = [
            (lambda: client.predict("churn_mlp", x[:, :21]), 422, "invalid_input",
             "$.inputs.shape[1]" if fmt == "msgpack" else "$.inputs[0]"),
            (lambda: client.predict("churn_mlp", [*x.tolist()[:3], [1.0] * 21]), 422, "invalid_input", "$.inputs[3]"),
            (lambda: client.predict("churn_mlp", [[float("nan")] * 22]), 422, "invalid_input", "$.inputs[0][0]"),
            (lambda: client.predict_records("churn", [*records[:3], {**records[3], "age": "old"}]), 422,
             "invalid_input", "$.records[3].age"),
            (lambda: client.predict_records("churn_mlp", records[:2]), 422, "invalid_input", "$.records"),
            (lambda: client.predict("nope", x), 404, "model_not_found", None),
            (lambda: client.model_status("nope"), 404, "model_not_found", None),
        ]
        for call, status, code, path in cases:
            with pytest.raises(InvalidRequest) as caught:
                call()
            err = caught.value
            assert (err.status, err.code, err.path) == (status, code, path), str(err)
            assert isinstance(err, ServerError) and isinstance(err, FastserveClientError)
            assert isinstance(err, FastserveError)
            text = str(err)
            assert text.startswith(("POST /v1/models/", "GET /v1/models/")) and f": {status} {code}: " in text
            assert err.message in text and (path is None or f"`{path}`" in text)


def test_str_names_the_path_the_message_leaves_out():
    err = InvalidRequest(422, "invalid_input", "bad value", {"path": "$.records[2].age"}, request="POST /x")
    assert str(err) == "POST /x: 422 invalid_input: bad value - at `$.records[2].age`"
    err = InvalidRequest(422, "invalid_input", "bad value - at `$.inputs[1]`", {"path": "$.inputs[1]"})
    assert str(err) == "422 invalid_input: bad value - at `$.inputs[1]`"


def test_4xx_is_never_retried(server, golden):
    before = metric(httpx.get(f"{server.url}/metrics").text, "fastserve_requests_total", code="422")
    slept = []
    with Client(server.url, max_retries=5) as client:
        client._sleep = slept.append
        with pytest.raises(InvalidRequest) as caught:
            client.predict("spend", golden["spend"]["inputs"][:2, :3])
    after = metric(httpx.get(f"{server.url}/metrics").text, "fastserve_requests_total", code="422")
    assert after - before == 1 and slept == [] and caught.value.attempts == 1


def test_connection_refused_raises_connection_failed_after_its_retries():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    slept = []
    policy = RetryPolicy(max_retries=2, backoff_base=0.01, random=lambda: 0.5)
    with Client(url, retry=policy) as client:
        client._sleep = slept.append
        with pytest.raises(ConnectionFailed) as caught:
            client.predict("churn", np.ones((1, 22), np.float32))
        assert caught.value.attempts == 3 and slept == [0.005, 0.01]
        assert "cannot reach the server" in str(caught.value) and "max_retries is 2" in str(caught.value)
        assert isinstance(caught.value, ConnectionError)
        assert not client.health() and not client.ready()
    slept.clear()
    with Client(url, retry=RetryPolicy(retry_connection_errors=False)) as client:
        client._sleep = slept.append
        with pytest.raises(ConnectionFailed) as caught:
            client.list_models()
        assert caught.value.attempts == 1 and slept == []


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_no_answer_within_the_timeout_raises_deadline_exceeded(silent_port):
    with Client(f"http://127.0.0.1:{silent_port}", timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.predict("churn", np.ones((1, 22), np.float32))
        assert 0.25 < time.monotonic() - started < 5.0
        assert isinstance(caught.value, TimeoutError) and "0.3 s timeout" in str(caught.value)
        with pytest.raises(DeadlineExceeded):
            client.model_status("churn", timeout=0.1)

    async def main():
        async with AsyncClient(f"http://127.0.0.1:{silent_port}") as client:
            await client.predict("churn", np.ones((1, 22), np.float32), timeout=0.2)

    with pytest.raises(DeadlineExceeded):
        asyncio.run(main())


def test_arguments_the_server_cannot_take_are_refused_before_sending():
    with Client("http://127.0.0.1:9") as client:  # never reached
        with pytest.raises(ValueError, match=r"2-D array.*reshape\(1, -1\)"):
            client.predict("m", np.ones(22))
        with pytest.raises(TypeError, match="cannot send a bool array"):
            client.predict("m", np.ones((1, 22), dtype=bool))
        with pytest.raises(TypeError, match="cannot send a uint64 array"):
            client.predict("m", np.ones((1, 22), dtype=np.uint64))
        with pytest.raises(TypeError, match="use predict_columns"):
            client.predict_records("m", {"age": [1]})
        with pytest.raises(TypeError, match="expected a 2-D numpy array or a list of rows"):
            client.predict("m", "1,2,3")
        with pytest.raises(ValueError, match="version must be"):
            client.predict("m", [[1.0]], version="2")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be"):
            client.predict("m", [[1.0]], timeout=0)
    with pytest.raises(ValueError, match="format must be one of msgpack, json"):
        Client("http://127.0.0.1:9", format="xml")
    with pytest.raises(ValueError, match="base URL"):
        Client("127.0.0.1:8000")
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_import_without_httpx_says_what_to_install():
    code = "import sys; sys.modules['httpx'] = None; import fastserve.client"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and 'ImportError: fastserve.client needs httpx' in r.stderr
    assert 'pip install "fastserve[client]"' in r.stderr
