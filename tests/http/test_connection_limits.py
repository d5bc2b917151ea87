"""The connection guard below the app: slow, oversized and surplus clients get an answer and a close, in bounded
time, while everyone else is served."""

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import MODELS, start_server

HEADER_TIMEOUT_S = 1.0


# Each guarantee holds whichever process accepts the connections: the door process (the default) or the serving one.
ACCEPTORS = {"params": [(), ("--no-door-process",)], "ids": ["door", "no-door"]}


@pytest.fixture(scope="module", **ACCEPTORS)
def guarded(request):
    srv = start_server(MODELS, "--header-timeout", str(HEADER_TIMEOUT_S), "--max-connections", "300",
                       "--max-header-bytes", "4096", *request.param)
    yield srv
    srv.stop()


def connect(srv) -> socket.socket:
    """A connection whose reads give up after 15 s: an answer the server owes within its 1 s deadlines (and the
    once-a-second sweep) and never sends fails the test, however loaded the machine (no elapsed-time bound)."""
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.settimeout(15)
    return s


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += s.recv(65536)
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_closed(s: socket.socket) -> None:
    with contextlib.suppress(ConnectionResetError):
        assert s.recv(1) == b""


def test_slow_headers_get_408_within_the_deadline(guarded):
    with connect(guarded) as s:
        started = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        status, _, body = read_answer(s)
        elapsed = time.monotonic() - started
        assert status == 408 and body["error"]["code"] == "request_timeout", body
        assert elapsed >= HEADER_TIMEOUT_S, elapsed  # not before its deadline
        assert_closed(s)


def test_idle_new_connection_is_closed_too(guarded):
    with connect(guarded) as s:
        status, _, _ = read_answer(s)
        # Accepted a second after it opened (no bytes came), then the deadline and the once-a-second sweep.
        assert status == 408


def test_open_connections_are_exported(guarded):
    def open_now() -> float:
        text = httpx.get(f"{guarded.url}/metrics").text
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("fastserve_connections_open ")))

    def settles(done: Callable[[float], bool]) -> bool:
        deadline = time.monotonic() + 5  # the door process reports its count each second
        while not done(open_now()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return done(open_now())

    before = open_now()
    held = [connect(guarded) for _ in range(20)]
    try:
        for h in held:
            h.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert settles(lambda n: n >= before + 20)
    finally:
        for h in held:
            h.close()
    assert settles(lambda n: n <= before)


def test_body_under_the_minimum_rate_gets_408(guarded):
    with connect(guarded) as s:
        s.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000\r\n\r\n{\"inputs\"")
        started = time.monotonic()
        s.settimeout(0.25)
        answer = b""
        while time.monotonic() - started < 10:  # one byte every 250 ms: 4 bytes/s against a minimum of 1024
            try:
                s.sendall(b" ")
                answer += s.recv(65536)
                if b"\r\n\r\n" in answer:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"under the minimum of 1024" in answer


@pytest.mark.parametrize("headers", [
    b"X-Big: " + b"a" * 5000 + b"\r\n",
    b"".join(b"X-%d: 1\r\n" % i for i in range(150)),
])
def test_headers_over_the_limit_get_431(guarded, headers):
    with connect(guarded) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        status, _, body = read_answer(s)
        assert status == 431 and body["error"]["code"] == "headers_too_large"
        assert_closed(s)


def test_not_http_gets_a_json_400(guarded):
    with connect(guarded) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")  # a TLS hello, say
        status, _, body = read_answer(s)
        assert status == 400 and body["error"]["code"] == "bad_request"


def test_not_http_gets_its_400_before_any_end_of_headers(guarded):
    with connect(guarded) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # no line break ever comes
        status, _, body = read_answer(s)
        assert status == 400 and body["error"]["code"] == "bad_request"  # not the header deadline's 408


def test_headers_over_the_limit_get_431_before_their_end(guarded):
    with connect(guarded) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000)  # limit 4096; never finished
        status, _, body = read_answer(s)
        assert status == 431 and body["error"]["code"] == "headers_too_large"


def test_a_header_line_that_never_ends_on_a_kept_connection_gets_431(guarded):
    """httptools holds a header's value until its line ends: without a count of the bytes read, a client could
    stream one line into the server's memory until the header deadline."""
    with connect(guarded) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[0] == 200
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(OSError):  # the server may close while the line is still being sent
            for _ in range(10):
                time.sleep(0.02)
                s.sendall(b"a" * 1000)  # limit 4096
        status, _, body = read_answer(s)
        assert status == 431 and body["error"]["code"] == "headers_too_large"  # not the deadline's 408


def test_a_header_line_over_the_limit_in_one_read_on_a_kept_connection_gets_431_at_once(guarded):
    with connect(guarded) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[0] == 200
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000)  # limit 4096; never finished
        status, _, body = read_answer(s)
        assert status == 431 and body["error"]["code"] == "headers_too_large"


@pytest.mark.parametrize(("request_bytes", "expected"), [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),  # an empty line before the request line is allowed
    (b"\r\n\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),  # empty lines are not the end of headers
    (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),  # bare line feeds: the parser refuses them once the block ends
], ids=["crlf", "leading-empty-line", "leading-empty-lines", "lf"])
def test_a_request_written_a_byte_at_a_time_is_answered(guarded, request_bytes, expected):
    """A new connection's bytes are held until its header block is complete, then parsed: however they are cut,
    the request is answered as soon as its last byte is in."""
    with connect(guarded) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for k in range(len(request_bytes)):
            s.sendall(request_bytes[k:k + 1])
            time.sleep(0.002)
        status, _, body = read_answer(s)
        assert status == expected, body  # (were it held until a deadline, the answer would be a 408)
        if status == 200:
            assert body["status"] == "alive"
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # and the connection goes on
            assert read_answer(s)[0] == 200


@pytest.mark.parametrize("accepted_by", ACCEPTORS["params"], ids=ACCEPTORS["ids"])
def test_surplus_connections_get_503_with_retry_after_and_others_are_served(accepted_by):
    # The default header timeout: held ones stay open.
    srv = start_server(MODELS, "--max-connections", "50", *accepted_by)
    try:
        held = [connect(srv) for _ in range(50)]
        for h in held:  # a connection is accepted once its first bytes arrive; accepted in order of arrival
            h.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            with connect(srv) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, headers, body = read_answer(s)
            assert status == 503 and headers["retry-after"] == "1", (status, headers)
            assert body["error"]["code"] == "too_many_connections"
        finally:
            for h in held:
                h.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server sees the closes within moments
            try:
                if httpx.get(f"{srv.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    finally:
        srv.stop()


def test_slow_clients_do_not_stop_good_ones_and_are_counted(guarded):
    """200 slowloris connections trickling headers while a good client keeps predicting: every good request is
    answered, every slow connection is closed with a 408 within the deadline."""
    async def slow(i: int) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 40
        for k in range(len(request)):
            writer.write(request[k:k + 1])
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                continue
            writer.close()
            return answer, time.monotonic() - started
        writer.close()
        return b"", time.monotonic() - started

    async def good() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(base_url=guarded.url) as client:
            body = {"inputs": [[0.0] * 22]}
            for _ in range(40):
                statuses.append((await client.post("/v1/models/churn/predict", json=body)).status_code)
                await asyncio.sleep(0.02)
        return statuses

    async def run():
        return await asyncio.gather(good(), *(slow(i) for i in range(200)))

    statuses, *slow_answers = asyncio.run(run())
    assert statuses == [200] * 40
    for answer, elapsed in slow_answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert elapsed < HEADER_TIMEOUT_S + 3, elapsed
    metrics = httpx.get(f"{guarded.url}/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith('fastserve_connections_refused_total{reason="request_timeout"}'))
    assert float(line.split()[-1]) >= 200


@pytest.mark.parametrize("accepted_by", ACCEPTORS["params"], ids=ACCEPTORS["ids"])
def test_connections_closed_a_moment_ago_no_longer_count_against_the_limit(accepted_by):
    srv = start_server(MODELS, "--max-connections", "20", *accepted_by)
    try:
        held = [connect(srv) for _ in range(20)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[0] == 200
        time.sleep(1.3)  # counts reported once a second see them all open
        for s in held:
            s.close()
        time.sleep(0.3)  # the server reads the closes
        for _ in range(5):
            with connect(srv) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(s)[0] == 200
    finally:
        srv.stop()


def test_a_body_in_tiny_chunks_is_refused(server):
    """Each chunk is a parser callback and a copy: a body in chunks of a few bytes is refused once it has sent
    more than a few thousand, while the same rows in ordinary chunks are answered."""
    head = (b"POST /v1/models/churn_mlp/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body = b'{"inputs": [[' + b",".join([b"0.5"] * 22) + b"]]}"
    for chunk, expected in ((1, b"400 Bad Request"), (256, b"200 OK")):
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] + [b" " * chunk] * 5000
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head + wire)
            answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 " + expected), answer[:300]
        assert (b"chunks of under 64 bytes" in answer) == (chunk == 1)


KEEP_ALIVE_S = 0.5


@pytest.fixture(scope="module")
def short_keep_alive():
    srv = start_server(MODELS, "--keep-alive-timeout", str(KEEP_ALIVE_S))
    yield srv
    srv.stop()


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout_and_not_before(short_keep_alive):
    with connect(short_keep_alive) as s:
        for _ in range(3):  # each request starts the idle time again: 0.3 s apart, the connection stays
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[0] == 200
            time.sleep(0.3)
        answered = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[0] == 200
        assert_closed(s)  # by the sweep, once idle past the timeout (the read gives up after 15 s)
        assert time.monotonic() - answered >= KEEP_ALIVE_S
