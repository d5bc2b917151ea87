"""The door process: accepts the server's connections and holds each until its first request's header block is
complete, then passes the socket and what came to the serving process (SCM_RIGHTS over a Unix socket pair).

A slow or silent client, and the storms of connects, timeouts and reconnects a thousand of them make, then cost the
serving process nothing: it only sees connections with a request head ready to parse. The door answers what it can
without a parser: 408 past the header deadline, 431 over the header limit. What is not HTTP is passed on for the
parser to answer. It runs at a lower priority than the serving process, so where the two share a core the serving
loop preempts it whenever a request is ready.

Run by http/door.py as `python -m fastserve.http.door_process`, its configuration (JSON) on stdin. Standard library
only: it starts in a few tens of milliseconds and holds a few MB.

Messages to the serving process, one per datagram: `H` + part of a head (a head longer than one datagram), then
`C` + the rest with the connection's descriptor (`O` instead when the server is over its connection limit: it answers
503 once the head is parsed), or `S` + JSON counts each second (connections waiting, refusals by reason). From it:
its own open connections, a signed 64-bit count, each second.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

WAIT, HAND_OVER, TOO_LARGE = 0, 1, 2
READ_BYTES = 16 * 1024
PART_BYTES = 32 * 1024  # of a head, per datagram: well under a Unix socket's send buffer
LIVE = struct.Struct("q")
_SWEEP_S = 1.0
_ACCEPTS_PER_TURN = 256  # then reads of connections already accepted get a turn


def raw_header_limit(max_header_bytes: int, max_headers: int) -> int:
    """The limit on a header block as sent: max_header_bytes counts URL, names and values, so this adds what a block
    within it may also hold (method, version, separators and line ends), and only blocks over it are refused."""
    return max_header_bytes + 4 * max_headers + 64


class HeaderBlock:
    """A connection's first bytes until its first request's header block is complete."""

    __slots__ = ("begun", "limit", "received")

    def __init__(self, limit: int) -> None:
        self.received = bytearray()
        self.begun = False  # a byte other than a line break has come: the start of a request line, kept from it
        self.limit = limit  # raw_header_limit

    def feed(self, data: bytes) -> int:
        """HAND_OVER once the block is complete or the bytes are not HTTP (the parser answers them), TOO_LARGE past
        the limit, else WAIT."""
        if not self.begun:
            # Empty lines may come before a request line: dropped, as the parser would skip them. A request line
            # starts with a method's capitals; whatever else is not HTTP.
            data = data.lstrip(b"\r\n")
            if not data:
                return WAIT
            self.begun = True
            if not data[:1].isupper():
                self.received += data
                return HAND_OVER
        received = self.received
        seen = len(received)
        received += data
        # (Each look covers the new bytes only: a trickle costs no more than the same bytes in one read.)
        if received.find(b"\n\r\n", max(0, seen - 2)) >= 0 or received.find(b"\n\n", max(0, seen - 1)) >= 0:
            return HAND_OVER
        return TOO_LARGE if len(received) > self.limit else WAIT


class _Waiting:
    __slots__ = ("block", "over", "polled", "since", "sock")

    def __init__(self, sock: socket.socket, limit: int, since: float, over: bool) -> None:
        self.sock, self.block, self.since, self.over = sock, HeaderBlock(limit), since, over
        self.polled = False


class Door:
    """The accept loop: one epoll over the listening socket, the channel to the serving process and
    every connection waiting for its head."""

    def __init__(self, listener: socket.socket, channel: socket.socket, config: dict[str, Any]) -> None:
        self.listener, self.channel = listener, channel
        self.limit = raw_header_limit(config["max_header_bytes"], config["max_headers"])
        self.header_timeout_s = float(config["header_timeout_s"])
        self.max_connections = int(config["max_connections"])
        self.handover_timeout_s = float(config["handover_timeout_s"])
        self.answers = {reason: base64.b64decode(raw) for reason, raw in config["answers"].items()}
        self.waiting: dict[int, _Waiting] = {}
        self.live = 0  # the serving process's connections, as it last said
        self.refused: dict[str, int] = {}  # since the last report
        self.poller = select.epoll()
        self.accepting = True
        self.writable = select.poll()
        self.writable.register(channel.fileno(), select.POLLOUT)

    def run(self) -> None:
        listener, channel = self.listener.fileno(), self.channel.fileno()
        self.poller.register(listener, select.POLLIN)
        self.poller.register(channel, select.POLLIN)
        next_sweep = time.monotonic() + _SWEEP_S
        while True:
            wait = max(0.0, next_sweep - time.monotonic())
            for fd, _events in self.poller.poll(wait):
                if fd == listener:
                    self.accept()
                elif fd == channel:
                    if not self.read_channel():
                        return  # the serving process is gone
                else:
                    waiting = self.waiting.get(fd)
                    if waiting is not None:
                        self.read(fd, waiting)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + _SWEEP_S
                self.sweep(now)
                if not self.accepting:
                    self.accepting = True
                    self.poller.modify(listener, select.POLLIN)

    def accept(self) -> None:
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                sock, _address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listener is left alone until the next sweep instead of waking the
                    # loop at once, again and again; the kernel keeps the clients in its backlog meanwhile.
                    self.poller.modify(self.listener.fileno(), 0)
                    self.accepting = False
                    return
                continue  # (the client left before it was accepted)
            sock.setblocking(False)
            over = len(self.waiting) + self.live + 1 > self.max_connections
            fd = sock.fileno()
            waiting = self.waiting[fd] = _Waiting(sock, self.limit, time.monotonic(), over)
            # Accepted at its first bytes (TCP_DEFER_ACCEPT): usually the whole head is in already, and the
            # connection is passed on without ever being polled.
            if self.read(fd, waiting):
                self.poller.register(fd, select.POLLIN)
                waiting.polled = True

    def read(self, fd: int, waiting: _Waiting) -> bool:
        """Whether the connection still waits for its head."""
        try:
            data = waiting.sock.recv(READ_BYTES)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self.drop(fd, waiting)
            return False
        state = waiting.block.feed(data)
        if state == HAND_OVER:
            self.hand_over(fd, waiting)
        elif state == TOO_LARGE:
            self.refuse(fd, waiting, "headers_too_large")
        return state == WAIT

    def hand_over(self, fd: int, waiting: _Waiting) -> None:
        self.forget(fd)
        head = bytes(waiting.block.received)
        sock = waiting.sock
        try:
            while len(head) > PART_BYTES:
                self.send(b"H" + head[:PART_BYTES])
                head = head[PART_BYTES:]
            self.send((b"O" if waiting.over else b"C") + head, fd)
        except TimeoutError:
            # The serving process has not taken a connection for the channel's timeout: it is stalled. The client
            # is told so rather than left waiting on a connection nobody reads.
            self.answer(sock, "server_busy")
        except OSError:  # the serving process is gone (the loop ends at the channel's end) or the client is
            pass
        sock.close()  # the serving process holds its own descriptor of it now

    def send(self, message: bytes, fd: int | None = None) -> None:
        """One datagram to the serving process, waiting up to the channel's timeout while its queue is full."""
        deadline = time.monotonic() + self.handover_timeout_s
        while True:
            try:
                if fd is None:
                    self.channel.send(message)
                else:
                    socket.send_fds(self.channel, [message], [fd])
                return
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not self.writable.poll(left * 1000):
                    raise TimeoutError from None

    def forget(self, fd: int) -> None:
        if self.waiting.pop(fd).polled:
            self.poller.unregister(fd)

    def drop(self, fd: int, waiting: _Waiting) -> None:
        self.forget(fd)
        waiting.sock.close()

    def refuse(self, fd: int, waiting: _Waiting, reason: str) -> None:
        self.answer(waiting.sock, reason)
        self.drop(fd, waiting)

    def answer(self, sock: socket.socket, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        with contextlib.suppress(OSError):  # small: fits the empty send buffer of a connection that sent nothing
            sock.send(self.answers[reason])

    def sweep(self, now: float) -> None:
        deadline = now - self.header_timeout_s
        for fd, waiting in list(self.waiting.items()):
            if waiting.since < deadline:
                self.refuse(fd, waiting, "request_timeout")
        report = {"waiting": len(self.waiting), "refused": self.refused}
        try:
            self.channel.send(b"S" + json.dumps(report).encode())
        except OSError:
            return  # a full queue: the next report says it; gone: the channel's end is read next
        self.refused = {}

    def read_channel(self) -> bool:
        """Take the serving process's counts; False when it is gone."""
        while True:
            try:
                message = self.channel.recv(64)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not message:
                return False
            if len(message) == LIVE.size:
                (self.live,) = LIVE.unpack(message)


def main() -> int:
    config = json.loads(sys.stdin.buffer.read())
    # The serving process stops it (SIGTERM) at its own shutdown; a Ctrl-C at a terminal is the server's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(int(config["nice"]))
    listener = socket.socket(fileno=int(config["listener_fd"]))
    listener.setblocking(False)
    channel = socket.socket(fileno=int(config["channel_fd"]))
    channel.setblocking(False)
    Door(listener, channel, config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
