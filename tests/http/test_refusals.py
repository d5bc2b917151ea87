"""Answers sent before a request's body is read whole reach the client: a 413 from the Content-Length, a 503 at
the headers from admission or past the connection limit. After such an answer the server half-closes and reads
what the client still sends, for at most 5 s in all and 2 s idle, before it closes: closed at once, the unread
bytes make its kernel reset the connection, and the reset takes the answer with it (urllib then raises
ConnectionResetError or BrokenPipeError instead of the 413). urllib, requests, httpx (blocking and asyncio) and
aiohttp each read the answer and its JSON error, every time, with 11 MB and 100 MB bodies."""

import contextlib
import functools
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Server, copy_model, start_server
from tests.realclients import (
    CLIENTS,
    OVERLOADED,
    PREDICT,
    SLO_CONFIG,
    SLO_MODEL,
    SLO_PREDICT,
    TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    Crowd,
    hold_connections,
    json_body,
    outcome,
    raw_request,
    read_answer,
)

TRIES = 5
SIZES = {"11MB": 11_000_000, "100MB": 100_000_000}
ACCEPTORS = {"door": (), "no-door": ("--no-door-process",)}
# Every client with the door process (the default); one client, the one that shows the reset, without it.
CASES = [pytest.param(client, "door", id=f"{client}-door") for client in CLIENTS] + \
    [pytest.param("urllib", "no-door", id="urllib-no-door")]
LINGER_S, LINGER_IDLE_S = 5.0, 2.0
SLACK_S = 1.5  # timers on a loaded two-core machine


@functools.cache
def _body(size: int) -> bytes:
    return json_body(size)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Callable[[str], Server]]:
    """The server with each acceptor, started when first asked for: `churn`, and `churn_slo` under admission."""
    models = tmp_path_factory.mktemp("refusals")
    copy_model("churn", models)
    copy_model("churn", models, config=SLO_CONFIG, name=SLO_MODEL)
    started: dict[str, Server] = {}

    def get(acceptor: str) -> Server:
        if acceptor not in started:
            started[acceptor] = start_server(models, *ACCEPTORS[acceptor])
        return started[acceptor]

    yield get
    for srv in started.values():
        srv.stop()


@pytest.mark.parametrize("size", SIZES.values(), ids=list(SIZES))
@pytest.mark.parametrize(("client", "acceptor"), CASES)
def test_413_from_the_content_length_reaches_the_client(servers, client, acceptor, size):
    srv = servers(acceptor)
    outcomes = [outcome(CLIENTS[client], f"{srv.url}{PREDICT}", _body(size)) for _ in range(TRIES)]
    assert outcomes == [TOO_LARGE] * TRIES, Counter(outcomes)


@pytest.mark.parametrize("size", SIZES.values(), ids=list(SIZES))
@pytest.mark.parametrize(("client", "acceptor"), CASES)
def test_503_at_the_headers_under_admission_reaches_the_client(servers, client, acceptor, size):
    srv = servers(acceptor)
    crowd = Crowd(srv.url, srv.port)
    outcomes = []
    try:
        for _ in range(TRIES):
            crowd.ensure_full()  # every place held: the request is refused at its headers, not at its length
            outcomes.append(outcome(CLIENTS[client], f"{srv.url}{SLO_PREDICT}", _body(size)))
    finally:
        crowd.release()
    assert outcomes == [OVERLOADED] * TRIES, Counter(outcomes)


@pytest.fixture(scope="module")
def two_connections(tmp_path_factory) -> Iterator[Server]:
    models = tmp_path_factory.mktemp("two-connections")
    copy_model("churn", models)
    srv = start_server(models, "--max-connections", "2")
    yield srv
    srv.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_503_past_the_connection_limit_reaches_the_client(two_connections, client):
    outcomes = []
    for _ in range(TRIES):
        held = hold_connections(two_connections.port, 2)  # the request under test is one more
        try:
            outcomes.append(outcome(CLIENTS[client], f"{two_connections.url}{PREDICT}", _body(SIZES["11MB"])))
        finally:
            for s in held:
                s.close()
    assert outcomes == [TOO_MANY_CONNECTIONS] * TRIES, Counter(outcomes)


def _after_the_answer(s: socket.socket) -> str:
    """What the server does after its answer: "end" (it half-closed), "reset", "open" (nothing within the socket's
    timeout), or "more" (it sent more bytes)."""
    try:
        return "more" if s.recv(1) else "end"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"


# The client's Connection header: `close` (urllib sends it) or none (HTTP/1.1 keeps the connection; requests,
# httpx and aiohttp). Either way the server half-closes after an early answer, so a keep-alive client cannot have it
# read a body it refused for as long as it likes.
CONNECTION = {"close": b"Connection: close\r\n", "keep-alive": b""}


def _declaring(size: int, connection: bytes) -> bytes:
    head = raw_request(PREDICT, b"").replace(b"Content-Length: 0\r\n", b"Content-Length: %d\r\n" % size)
    return head.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\n" + connection)


@contextlib.contextmanager
def _early_413(srv: Server, connection: bytes) -> Iterator[socket.socket]:
    """A connection whose request (100 MB declared) was answered 413 after its headers and a first part of its
    body; the answer is read, and the end of the server's side after it (its half-close)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=3) as s:
        s.sendall(_declaring(100_000_000, connection) + _body(SIZES["11MB"])[:1_000_000])
        status, _, body = read_answer(s)
        assert status == 413 and b"body_too_large" in body
        assert _after_the_answer(s) == "end", "the server did not half-close after its early answer"
        yield s


def _closed_within(s: socket.socket, seconds: float, chunk: bytes, every: float) -> float | None:
    """Seconds until a send on `s` fails (the server closed and reset the connection), sending `chunk` every
    `every` seconds; None if it did not fail within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            s.sendall(chunk)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        time.sleep(every)  # the client's pace: what is measured
    return None


@pytest.mark.parametrize("connection", CONNECTION.values(), ids=list(CONNECTION))
def test_after_an_early_answer_the_server_reads_an_active_client_for_at_most_5_s(servers, connection):
    with _early_413(servers("door"), connection) as s:
        # 640 KB/s: never idle, and the 100 MB declared would take longer than the server reads.
        closed = _closed_within(s, LINGER_S + 3 * SLACK_S, b" " * 65536, 0.1)
    assert closed is not None, f"still reading after {LINGER_S + 3 * SLACK_S} s"
    assert closed < LINGER_S + SLACK_S


@pytest.mark.parametrize("connection", CONNECTION.values(), ids=list(CONNECTION))
def test_after_an_early_answer_the_server_waits_on_an_idle_client_for_at_most_2_s(servers, connection):
    with _early_413(servers("door"), connection) as s:
        time.sleep(LINGER_IDLE_S + SLACK_S)  # the client sends nothing for longer than the server waits
        # The server closed: the next bytes meet a reset. Still reading, it would take them (and go on waiting).
        assert _closed_within(s, 1.0, b" ", 0.05) is not None, \
            f"the connection was still open {LINGER_IDLE_S + SLACK_S} s after its client went quiet"


@pytest.mark.parametrize("connection", CONNECTION.values(), ids=list(CONNECTION))
def test_a_client_that_sends_its_whole_body_reads_the_early_answer_and_the_end(servers, connection):
    """The lingering close itself, on a raw socket: the client sends all 11 MB after the server has answered,
    without a reset, then reads the answer and the server's end of the connection."""
    srv = servers("door")
    body = _body(SIZES["11MB"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=3) as s:
        s.sendall(_declaring(len(body), connection) + body)
        status, _, answer = read_answer(s)
        assert status == 413 and b"body_too_large" in answer
        assert _after_the_answer(s) == "end"
