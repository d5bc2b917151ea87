"""SIGTERM under a pool of keep-alive connections: no request is lost. A connection idle between two requests is
not closed before it has been idle for the keep-alive timeout (or the grace period ends): a request its client
sends on it meanwhile is read and answered, never reset, and the answer says `Connection: close`, as does every
answer once the server has begun to drain. The only requests that fail are those whose connection is refused at
connect, once the listener is closed; and the process exits 0."""

import signal
import socket
import subprocess
import time

import pytest

from tests.conftest import copy_model, start_server
from tests.realclients import ONE_ROW, PREDICT, raw_request, read_answer, shutdown_run

RUNS = 10
ACCEPTORS = {"door": (), "no-door": ("--no-door-process",)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    models = tmp_path_factory.mktemp("pooled")
    copy_model("churn", models)  # one small model: a fresh server per run starts in well under a second
    return models


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("acceptor", ACCEPTORS)
def test_sigterm_under_pooled_clients_loses_no_request(models, acceptor, run):
    srv = start_server(models, *ACCEPTORS[acceptor])
    try:
        # 600 one-row predicts from 100 tasks over a pool of 100 connections; SIGTERM after the 300th answer.
        result = shutdown_run(srv.url, srv.proc)
    finally:
        log = srv.stop()
    lost = result.lost()
    assert not lost, f"{len(lost)} requests lost: {sorted({r.error for r in lost})}"
    assert result.count("answered") >= 300 and result.count("answered") + result.count("refused") == 600
    assert result.answered_after_signal(), "no request begun after SIGTERM was answered: the pool was not kept"
    assert result.closing(), "no answer said Connection: close"
    kept_open = result.kept_open_after_close()
    assert not kept_open, f"{len(kept_open)} answers without Connection: close to requests sent once the server " \
        f"had said it: {kept_open[:3]}"
    assert {r.status for r in result.results if r.kind == "answered"} <= {200, 503}
    assert result.exit_code == 0, log


@pytest.mark.parametrize("acceptor", ACCEPTORS)
def test_an_idle_keep_alive_connection_is_answered_after_sigterm(models, acceptor):
    srv = start_server(models, *ACCEPTORS[acceptor])
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(raw_request(PREDICT, ONE_ROW))
            assert read_answer(s)[0] == 200
            srv.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            while True:  # the shutdown has begun once new connections are refused
                try:
                    socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                except OSError:
                    break
                assert time.monotonic() - signalled < 5, "new connections still accepted 5 s after SIGTERM"
                time.sleep(0.02)
            # The connection has been idle about half a second, a tenth of the keep-alive timeout: still open.
            time.sleep(max(0.0, 0.5 - (time.monotonic() - signalled)))
            s.sendall(raw_request(PREDICT, ONE_ROW))
            try:
                status, headers, body = read_answer(s)
            except OSError as exc:  # (ConnectionError for an end without an answer)
                pytest.fail(f"a request on a kept-alive connection after SIGTERM got no answer: {exc!r}")
            assert status in (200, 503), body
            assert headers.get("connection", "").lower() == "close"
            assert s.recv(1) == b""  # and the server ends the connection
        code = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        log = srv.stop()
    assert code == 0, log
