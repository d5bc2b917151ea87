"""The door process: it accepts the connections and passes each to the serving process once its first request's head
is in; it stops with the server and is started again should it die."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fastserve.http.door_process import HAND_OVER, TOO_LARGE, WAIT, HeaderBlock
from tests.conftest import MODELS, start_server
from tests.http.test_connection_limits import read_answer


def door_pids(server_pid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == server_pid and b"fastserve.http.door_process" in cmdline:
                pids.append(int(entry.name))
    return pids


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaping is up to whatever adopts it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ends(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(pid)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the door process in /proc")


def test_a_killed_door_process_is_started_again():
    srv = start_server(MODELS)
    try:
        (first,) = door_pids(srv.proc.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not healthy(srv.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert healthy(srv.url)
        (second,) = door_pids(srv.proc.pid)
        assert second != first
    finally:
        log = srv.stop()
    assert "door process exited" in log


def test_a_door_process_that_stops_reporting_is_replaced():
    srv = start_server(MODELS)
    try:
        (stuck,) = door_pids(srv.proc.pid)
        os.kill(stuck, signal.SIGSTOP)  # alive, but accepting nothing
        deadline = time.monotonic() + 20  # silent for 10 s, then the next sweep
        while door_pids(srv.proc.pid) in ([stuck], []) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert door_pids(srv.proc.pid) not in ([stuck], [])
        assert ends(stuck)
        deadline = time.monotonic() + 5
        while not healthy(srv.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert healthy(srv.url)
    finally:
        log = srv.stop()
    assert "door process has not reported" in log


def test_the_door_process_ends_with_the_server():
    srv = start_server(MODELS)
    (door,) = door_pids(srv.proc.pid)
    srv.stop()
    assert srv.proc.returncode == 0
    assert ends(door)


def test_the_door_process_ends_when_the_server_is_killed():
    srv = start_server(MODELS)
    (door,) = door_pids(srv.proc.pid)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.stop()
    assert ends(door)  # it sees the end of its channel to the server


def test_a_head_longer_than_one_message_to_the_serving_process_is_passed_whole():
    srv = start_server(MODELS, "--max-header-bytes", "300000")
    try:
        value = b"v" * 200_000  # the door passes heads in parts of 32 KB
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.settimeout(15)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + value + b"\r\n\r\n")
            assert read_answer(s)[0] == 200
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # and the connection goes on
            assert read_answer(s)[0] == 200
    finally:
        srv.stop()


def test_a_head_cut_short_while_the_server_stalls_never_reaches_another_connection():
    """The door passes a long head in parts; when the server stalls for longer than the door waits (5 s), the
    client whose parts could not all be sent gets a 503, and what was sent of its head is dropped, not put in front
    of the next connection's."""
    headers = b"".join(b"X-P%02d: " % i + b"v" * 324 + b"\r\n" for i in range(99))  # 33 KB: two parts
    srv = start_server(MODELS)
    clients = []
    try:
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            for k in range(7):  # more than the channel's buffer holds
                s = socket.create_connection(("127.0.0.1", srv.port))
                s.settimeout(15)
                s.sendall(f"GET /v1/models/conn{k} HTTP/1.1\r\nHost: x\r\n".encode() + headers + b"\r\n")
                clients.append(s)
            time.sleep(6.5)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        answers = [read_answer(s) for s in clients]
        assert any(status == 503 and body["error"]["code"] == "server_busy" for status, _, body in answers)
        for k, (status, _, body) in enumerate(answers):
            assert status == 503 or (status == 404 and f"'conn{k}'" in body["error"]["message"]), (k, status, body)
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.settimeout(15)
            s.sendall(b"GET /v1/models/next HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_answer(s)
        assert status == 404 and "'next'" in body["error"]["message"]
    finally:
        for s in clients:
            s.close()
        srv.stop()


def feed_all(block: HeaderBlock, chunks: list[bytes]) -> list[int]:
    return [block.feed(chunk) for chunk in chunks]


def test_header_block_completes_at_the_end_of_the_headers_whatever_the_reads():
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    one_by_one = HeaderBlock(1000)
    assert feed_all(one_by_one, [request[i:i + 1] for i in range(len(request))]) == \
        [WAIT] * (len(request) - 1) + [HAND_OVER]
    assert one_by_one.received == request
    bare = HeaderBlock(1000)
    assert feed_all(bare, [b"GET / HTTP/1.1\nHost: x\n", b"\n"]) == [WAIT, HAND_OVER]


def test_header_block_drops_leading_empty_lines_and_passes_what_is_not_http_at_once():
    leading = HeaderBlock(1000)
    assert feed_all(leading, [b"\r\n", b"\r\n", b"GET / HTTP/1.1\r\n", b"\r\n"]) == [WAIT, WAIT, WAIT, HAND_OVER]
    assert leading.received == b"GET / HTTP/1.1\r\n\r\n"
    assert HeaderBlock(1000).feed(b"\x16\x03\x01 a TLS hello") == HAND_OVER


def test_header_block_over_its_limit_is_too_large():
    block = HeaderBlock(100)
    assert feed_all(block, [b"GET / HTTP/1.1\r\nX: " + b"a" * 60, b"a" * 60]) == [WAIT, TOO_LARGE]


def test_a_port_in_use_is_a_clear_error_and_a_failed_start():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "fastserve", "serve", str(MODELS), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
