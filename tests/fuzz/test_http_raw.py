"""Arbitrary bytes, Content-Types and headers to the predict route of a real server: never a 5xx, always an error
body the client can read, and the server keeps answering."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import CLIENT_LIMITS, MODELS, Server, start_server
from tests.fuzz import targets
from tests.fuzz.conftest import fuzz_settings

PATH = "/v1/models/churn/predict"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the fuzzing feeds its drift windows and metrics, which other tests read."""
    models = tmp_path_factory.mktemp("fuzz-models")
    for name in ("churn", "spend"):
        shutil.copytree(MODELS / name, models / name)
    server = start_server(models)
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def client(fuzzed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed.url, timeout=10.0, limits=CLIENT_LIMITS) as c:
        yield c


@fuzz_settings(300, deadline_s=5.0)
@given(targets.predict_paths, targets.encoded_bodies(), targets.content_types, targets.extra_headers, st.booleans())
@example("/v1/models/churn/versions/%C2%B2/predict", b'{"inputs": [[1]]}', None, {}, False)  # int('²') fails
@example(f"/v1/models/churn/versions/{'9' * 5000}/predict", b"{}", None, {}, False)  # int() of 5000 digits fails
@example(PATH, b"\x82\xc4\x01a\x01\xa1b\x02", "application/msgpack", {}, False)  # keys of bytes and str
@example(PATH, b"\x82\xc4\x01a\x01\xa1b\x02", "application/msgpack", {"accept": "application/json"}, False)
@example(PATH, b'{"inputs": [[1]]}', "application/json", {"x-request-timeout-ms": "0.000001"}, True)
def test_predict_takes_any_bytes(client, path, body, content_type, headers, chunked):
    targets.check_predict_http(client, path, body, content_type, headers, chunked)


def test_still_serving_after_fuzzing(client):
    targets.check_still_serving(client, PATH)
