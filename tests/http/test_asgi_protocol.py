"""uvicorn's protocol, extended (`fastserve serve --http asgi`, http/protocol.py), held to the tests of the default,
compiled one: the modules imported below run again here, and every server they start speaks uvicorn's protocol
($FASTSERVE_HTTP, read by `fastserve serve`, set for this module's duration)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CLIENT_LIMITS, MODELS, Server, start_server
from tests.http.test_connection_limits import *  # noqa: F403
from tests.http.test_door import *  # noqa: F403
from tests.http.test_errors import *  # noqa: F403
from tests.http.test_predict import *  # noqa: F403
from tests.http.test_shutdown import *  # noqa: F403
from tests.http.v2.conftest import golden_records, repo, tc  # noqa: F401 (the V2 tests' fixtures)
from tests.http.v2.test_infer import *  # noqa: F403
from tests.http.v2.test_metadata import *  # noqa: F403
from tests.http.v2.test_request import *  # noqa: F403
from tests.http.v2.test_tensors import *  # noqa: F403


@pytest.fixture(scope="module", autouse=True)
def asgi_protocol() -> Iterator[None]:
    before = os.environ.get("FASTSERVE_HTTP")
    os.environ["FASTSERVE_HTTP"] = "asgi"
    try:
        yield
    finally:
        if before is None:
            del os.environ["FASTSERVE_HTTP"]
        else:
            os.environ["FASTSERVE_HTTP"] = before


@pytest.fixture(scope="module")
def server(asgi_protocol: None) -> Iterator[Server]:
    srv = start_server(MODELS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, limits=CLIENT_LIMITS) as c:
        yield c


def test_the_server_speaks_uvicorns_protocol(server: Server, client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert "http=uvicorn's httptools protocol" in server.log.read_text()
    answer = client.get("/v1/models")
    assert answer.status_code == 200 and "date" in answer.headers
