"""`fastserve models ...` and `fastserve drift` talking to a server (`remote.py`): the token's sources, what an
unreachable server or a refusal says, and the status as text. (The commands end to end:
tests/registry/test_hot_swap.py, `test_cli_talks_to_a_running_server`; tests/http/test_drift.py, the drift table.)"""

import pytest

from fastserve import remote
from tests.conftest import free_port


def test_the_token_comes_from_the_file_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSERVE_ADMIN_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\n")
    assert remote.token(str(tmp_path / "token")) == "from-file"
    assert remote.token(None) == "from-env"
    monkeypatch.delenv("FASTSERVE_ADMIN_TOKEN")
    assert remote.token(None) is None


def test_an_unreachable_server_says_where_it_was_looked_for():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(remote.RemoteError, match=rf"cannot reach {url}: .*; is the server running there\?"):
        remote.call(url, "GET", "/v1/models", None, timeout=5)


def test_a_refusal_carries_the_servers_message(server):
    with pytest.raises(remote.RemoteError) as info:
        remote.call(server.url, "GET", "/v1/models/nothing", None)
    assert str(info.value).startswith("GET /v1/models/nothing: 404 ") and "nothing" in str(info.value)
    with pytest.raises(remote.RemoteError, match="POST /v1/admin/reload: 403 "):
        remote.call(server.url, "POST", "/v1/admin/reload", "some-token-of-16-chars")


def test_a_status_reads_as_lines(server):
    text = remote.describe(remote.call(server.url, "GET", "/v1/models/churn", None))
    first, *rest = text.splitlines()
    assert first == "churn  primary: 1"
    assert rest[0].startswith("  v1  serving  load ") and any("loaded v1" in line for line in rest)
