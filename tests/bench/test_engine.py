"""The compiled open-loop generator against its compiled sink, a real fastserve server, and small plain-Python
servers that answer in the ways HTTP allows (chunked, split heads, Connection: close, read to close) or misbehave
(never answer, close, reset, stall)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from fastserve.bench.engine import ERROR_KINDS, run_trial
from tests.conftest import Server, free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the generator needs epoll (Linux)")

LOOPBACK = "127.0.0.1"
MS = 1_000_000


def request(path: str = "/", body: bytes = b"", method: str | None = None) -> bytes:
    method = method or ("POST" if body else "GET")
    head = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the sink exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def sink(**options: object) -> Iterator[int]:
    port = free_port()
    args = ", ".join(f"{k}={v!r}" for k, v in options.items())
    code = f"from fastserve.bench.engine import sink; sink({LOOPBACK!r}, {port}{', ' if args else ''}{args})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def python_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A thread per connection running `handle(conn)`."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, 0))
    listener.listen(128)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            handle(conn)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def read_requests(conn: socket.socket) -> Iterator[bytes]:
    """Each request's head (these tests send no bodies to the Python servers)."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        yield head


def no_errors(trial) -> bool:
    return not any(trial.errors.values())


def test_counts_add_up_against_the_sink():
    with sink() as port:
        trial = run_trial(LOOPBACK, port, [request("/v1/models/m/predict", b'{"inputs": [[1.0, 2.0]]}')],
                          2000, 0.5, connections=8, seed=1)
    assert set(trial.errors) == set(ERROR_KINDS)
    assert no_errors(trial), trial.errors
    assert 800 <= trial.sent <= 1200  # Poisson arrivals: about rate x duration
    assert trial.sent == trial.written == trial.answered == trial.statuses[200] == trial.latency.count
    assert trial.send_lag.count == trial.written
    assert trial.achieved_rate() >= 0.6 * 2000  # a shared machine may hold the last answers back a little
    assert 0.45 <= trial.elapsed_s <= 1.0
    assert trial.cpu_s > 0 and 0 <= trial.spin_s <= trial.cpu_s + 0.05 and 0 <= trial.cpu_wait_s < trial.elapsed_s
    assert 0 < trial.latency.percentile(50) < 50 * MS
    assert trial.offered_rate == 2000 and trial.duration_s == 0.5


def test_constant_arrivals_send_exactly_rate_times_duration():
    with sink(busy_poll=True) as port:
        trial = run_trial(LOOPBACK, port, [request()], 1000, 0.5, poisson=False, connections=256)
    assert trial.sent == trial.answered == 500
    assert no_errors(trial)


def test_requests_taken_in_turn_and_statuses_counted_against_fastserve(server: Server):
    rows = json.dumps({"inputs": np.zeros((1, 22)).tolist()}).encode()
    requests = [request("/v1/models/churn_mlp/predict", rows), request("/v1/models/no_such_model/predict", rows),
                request("/nowhere")]
    trial = run_trial(LOOPBACK, server.port, requests, 300, 1.0, poisson=False, connections=4)
    assert no_errors(trial), trial.errors
    assert trial.sent == trial.answered == 300
    assert trial.statuses == {200: 100, 404: 200}


def test_a_refused_port_counts_refused_errors_and_is_tried_again():
    port = free_port()
    trial = run_trial(LOOPBACK, port, [request()], 500, 0.2, poisson=False, connections=4)
    assert trial.answered == 0 and trial.written == 0
    assert trial.errors["refused"] == trial.sent == 100
    assert sum(trial.errors.values()) == trial.sent


def test_a_stalled_server_shows_in_latencies_not_in_the_rate():
    # Open loop: requests keep coming during the sink's 200 ms stall, at the intended rate, and every one due then
    # waits; a closed-loop generator would show a lower rate and at most `connections` slow requests.
    rate, duration = 2000, 1.0
    with sink(stall_after=600, stall_ms=200.0) as port:
        trial = run_trial(LOOPBACK, port, [request()], rate, duration, poisson=False, connections=16)
    assert no_errors(trial) and trial.answered == trial.sent == rate * duration
    assert 190 * MS <= trial.latency.max <= 400 * MS
    # ~400 requests were due in the 200 ms: their latencies spread from ~200 ms down to ~0
    slow = trial.latency.percentile(100 - 100 * 0.05 * rate / trial.sent)  # the slowest 5% (100 requests)
    assert slow >= 90 * MS, slow
    assert trial.latency.percentile(50) < 20 * MS
    assert trial.achieved_rate() >= 0.75 * rate
    assert trial.conn_wait.max >= 100 * MS  # the wait for a connection counted


def test_records_keep_each_request_in_order_of_intended_time():
    # the per-request outcomes the repository's benchmarks use for timelines: the requests due in the sink's
    # 200 ms stall have latencies falling from ~200 ms as their intended times approach its end
    rate = 2000
    with sink(stall_after=600, stall_ms=200.0) as port:
        trial = run_trial(LOOPBACK, port, [request()], rate, 1.0, poisson=False, connections=16, record=1500)
    r = trial.records
    assert r is not None and set(r) == {"intended_ns", "latency_ns", "status", "send_lag_ns"}
    assert trial.sent == 2000 and all(len(a) == 1500 for a in r.values())  # only the first 1,500 kept
    assert np.all(r["status"] == 200) and np.all(r["latency_ns"] > 0) and np.all(r["send_lag_ns"] >= 0)
    assert np.all(np.diff(r["intended_ns"]) == MS // 2)  # evenly spaced, by request number
    slow = np.flatnonzero(r["latency_ns"] > 50 * MS)
    assert 80 <= len(slow) <= 500, len(slow)
    worst = int(np.argmax(r["latency_ns"]))
    assert slow[0] <= worst and r["latency_ns"][slow[-1]] < r["latency_ns"][worst]  # it falls after the stall
    assert run_trial(LOOPBACK, free_port(), [request()], 100, 0.05).records is None  # none unless asked


def test_warm_up_keeps_each_connections_first_request_out_of_the_trial():
    # A server slow on a connection's first request (as one that accepts at the first bytes and hands the connection
    # to another process): with warm, that request is sent and answered before the trial, and counted nowhere.
    seen = []

    def handle(conn: socket.socket) -> None:
        for k, _ in enumerate(read_requests(conn)):
            seen.append(k)
            if k == 0:
                time.sleep(0.15)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with python_server(handle) as port:
        cold = run_trial(LOOPBACK, port, [request()], 200, 0.25, poisson=False, connections=4)
        assert len(seen) == 50 and cold.latency.max >= 140 * MS  # the first requests paid for it
        seen.clear()
        warm = run_trial(LOOPBACK, port, [request()], 200, 0.25, poisson=False, connections=4, warm=True, record=60)
    assert len(seen) == 54 and seen.count(0) == 4  # one more request a connection, before the trial
    assert warm.sent == warm.answered == warm.written == warm.statuses[200] == warm.latency.count == 50
    assert warm.latency.max < 100 * MS and no_errors(warm)
    assert warm.records is not None and len(warm.records["status"]) == 50


def test_answers_framed_every_way_http_allows():
    answers = {
        b"/length": [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
        b"/split": [b"HTTP/1.1 201 Created\r\nContent-", b"Length: 5\r\nX: y\r", b"\n\r\nhel", b"lo"],
        b"/chunked": [b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
                      b"1", b"0\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n", b"\r\n"],
        b"/empty": [b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n"],
        b"/continue": [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        b"/close": [b"HTTP/1.1 203 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"],
        b"/eof": [b"HTTP/1.0 206 OK\r\n\r\nthe body runs to the end"],
        b"/head": [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"],
    }

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for head in read_requests(conn):
            path = head.split(b" ")[1]
            for part in answers[path]:
                conn.sendall(part)
                time.sleep(0.001)
            if path in (b"/close", b"/eof"):
                return

    requests = [request(p.decode(), method="HEAD" if p == b"/head" else None) for p in answers]
    with python_server(handle) as port:
        trial = run_trial(LOOPBACK, port, requests, 400, 0.5, poisson=False, connections=8)
    assert no_errors(trial), trial.errors
    n = 200 // len(answers)
    assert trial.sent == trial.answered == 200
    assert trial.statuses == {200: 3 * n, 201: n, 202: n, 203: n, 204: n, 206: n}


def test_no_answer_counts_timeouts_and_max_in_flight_drops():
    def handle(conn: socket.socket) -> None:
        for _ in read_requests(conn):
            pass

    with python_server(handle) as port:
        trial = run_trial(LOOPBACK, port, [request()], 200, 0.25, poisson=False, connections=2, timeout_ms=100)
        assert trial.answered == 0 and trial.sent == 50
        assert trial.errors["timeout"] == 50  # two on the wire each time, the rest timed out waiting for them
        assert trial.elapsed_s < 1.0  # 0.25 s of sends, the last timing out 0.1 s later
        trial = run_trial(LOOPBACK, port, [request()], 200, 0.25, poisson=False, connections=2, timeout_ms=100,
                          max_in_flight=4)
        assert trial.errors["dropped"] > 0
        assert trial.errors["dropped"] + trial.errors["timeout"] == trial.sent == 50


def test_closed_and_reset_connections_are_told_apart():
    def closes(conn: socket.socket) -> None:
        next(read_requests(conn))

    def resets(conn: socket.socket) -> None:
        next(read_requests(conn))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    for handle, kind in ((closes, "closed"), (resets, "reset")):
        with python_server(handle) as port:
            trial = run_trial(LOOPBACK, port, [request()], 200, 0.25, poisson=False, connections=4)
        assert trial.answered == 0
        assert trial.errors[kind] == trial.sent == 50, trial.errors


def test_arguments_checked():
    with pytest.raises(ValueError, match="raw requests"):
        run_trial(LOOPBACK, 1, [], 10, 1)
    with pytest.raises(ValueError, match="rate"):
        run_trial(LOOPBACK, 1, [b"GET / HTTP/1.1\r\n\r\n"], 0, 1)
    with pytest.raises(ValueError, match="record"):
        run_trial(LOOPBACK, 1, [b"GET / HTTP/1.1\r\n\r\n"], 10, 1, record=-1)
