"""The door process: accepts the server's connections, holds each until its first request's header block is
complete (answering 408 and 431 itself), then passes the socket and its head to a serving process. Why, and its
messages: docs/architecture.md, "The door process".
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
HANDOVER = struct.Struct("=II")  # the head's length, the connections the door holds
LOAD = struct.Struct("=II")  # a worker's open connections and requests in flight
BALANCES = ("connections", "requests")
_SWEEP_S = 1.0
_ACCEPTS_PER_TURN = 256  # then reads of connections already accepted get a turn
LINGER_S, LINGER_IDLE_S = 5.0, 2.0  # as the serving process's lingering close (http/protocol.py)
_LINGER_TICK_S = 0.25  # how often lingering connections are looked at: each closes within this of its deadline
_STOP_S = 1.5  # at SIGTERM, how long heads already begun have to complete (the server waits 2 s for the door)


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


class _Channel:
    """A serving process the door passes connections to (`serves`), or that takes its reports (`reports`)."""

    __slots__ = ("load", "passed", "reports", "serves", "sock")

    def __init__(self, sock: socket.socket, serves: bool, reports: bool) -> None:
        self.sock, self.serves, self.reports = sock, serves, reports
        self.load = (0, 0)  # as last reported (LOAD)
        self.passed = 0  # connections passed since that report

    def weight(self, balance: str) -> int:
        return self.passed + (self.load[0] if balance == "connections" else self.load[1])


class _Waiting:
    __slots__ = ("block", "complete", "polled", "since", "sock")

    def __init__(self, sock: socket.socket, limit: int, since: float) -> None:
        self.sock, self.block, self.since = sock, HeaderBlock(limit), since
        self.polled = False
        self.complete = 0.0  # when its head was complete while no worker was there to take it


class _Lingering:
    """A connection the door answered before its request was read whole: its side shut after the answer, what the
    client still sends read and dropped until it closes, LINGER_S pass, or LINGER_IDLE_S with nothing (closed at
    once, the unread bytes would make the kernel send a reset that destroys the answer)."""

    __slots__ = ("heard", "since", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock, self.since, self.heard = sock, now, now

    def due(self, now: float) -> bool:
        return now - self.since >= LINGER_S or now - self.heard >= LINGER_IDLE_S


class DoorProcess:
    """The accept loop: one epoll over the listening sockets, the channels to the serving processes and
    every connection waiting for its head."""

    def __init__(self, listeners: list[socket.socket], channel: socket.socket | None, config: dict[str, Any],
                 workers: socket.socket | None = None) -> None:
        self.listeners = {listener.fileno(): listener for listener in listeners}
        self.channels: dict[int, _Channel] = {}
        if channel is not None:  # the one serving process: it takes the connections and the reports
            self.channels[channel.fileno()] = _Channel(channel, serves=True, reports=True)
        self.workers = workers  # where worker processes connect their channels
        self.joining: dict[int, socket.socket] = {}  # channels connected that have not said what they are
        self.balance = config.get("balance", "connections")
        self.lost = 0  # connections held by serving processes that went away (since the last report)
        self.unpassed: dict[int, _Waiting] = {}  # heads complete while no worker was there to take them
        self.limit = raw_header_limit(config["max_header_bytes"], config["max_headers"])
        self.header_timeout_s = float(config["header_timeout_s"])
        self.handover_timeout_s = float(config["handover_timeout_s"])
        self.answers = {reason: base64.b64decode(raw) for reason, raw in config["answers"].items()}
        self.waiting: dict[int, _Waiting] = {}
        self.lingering: dict[int, _Lingering] = {}
        self.refused: dict[str, int] = {}  # since the last report
        self.poller = select.epoll()
        self.accepting = True
        self.stop_at: float | None = None  # set at SIGTERM: when the door leaves, whatever still waits
        # SIGTERM wakes the loop through this pipe; the loop then stops (not the handler, which could run anywhere).
        self.signals, wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGTERM, lambda *_: None)

    def stop(self) -> None:
        """At SIGTERM (the server's shutdown): no new connections, but those the kernel holds for the door are taken
        (closing the listener would reset them, requests and all), and heads already begun may complete until
        `_STOP_S`, to be passed and answered; the door then leaves."""
        self.stop_at = time.monotonic() + _STOP_S
        for fd, listener in self.listeners.items():
            self.accept(listener)
            self.poller.unregister(fd)
            listener.close()
        self.listeners = {}
        self.report()  # tells the serving process the listener is closed: its answers may now close connections

    def run(self) -> None:
        for fd in [*self.listeners, *self.channels]:
            self.poller.register(fd, select.POLLIN)
        if self.workers is not None:
            self.poller.register(self.workers.fileno(), select.POLLIN)
        self.poller.register(self.signals, select.POLLIN)
        now = time.monotonic()
        next_sweep, next_linger = now + _SWEEP_S, now + _LINGER_TICK_S
        while True:
            wait = max(0.0, min(next_sweep, next_linger if self.lingering else next_sweep) - time.monotonic())
            for fd, _events in self.poller.poll(wait):
                if fd in self.listeners:
                    self.accept(self.listeners[fd])
                elif fd in self.channels:
                    self.read_channel(fd)
                elif fd in self.joining:
                    self.join(fd)
                elif self.workers is not None and fd == self.workers.fileno():
                    self.accept_worker()
                elif fd == self.signals:
                    if os.read(self.signals, 64) and self.stop_at is None:
                        self.stop()
                elif fd in self.lingering:
                    self.drain(fd)
                else:
                    waiting = self.waiting.get(fd)
                    if waiting is not None:
                        self.read(fd, waiting)
            if self.workers is None and not self.channels:
                return  # the serving process is gone
            now = time.monotonic()
            if now >= next_linger:
                next_linger = now + _LINGER_TICK_S
                for fd in [fd for fd, lingering in self.lingering.items() if lingering.due(now)]:
                    self.end_linger(fd)
            if now >= next_sweep:
                next_sweep = now + _SWEEP_S
                self.sweep(now)
                if not self.accepting and self.stop_at is None:
                    self.accepting = True
                    for fd in self.listeners:
                        self.poller.modify(fd, select.POLLIN)
            if self.stop_at is not None and ((not self.waiting and not self.unpassed) or now >= self.stop_at):
                for fd, waiting in [*self.waiting.items(), *self.unpassed.items()]:
                    self.refuse(fd, waiting, "shutting_down")
                self.report()
                for fd, channel in list(self.channels.items()):
                    self.poller.unregister(fd)
                    channel.sock.close()  # nothing more to pass: the serving processes go on with their shutdown
                self.channels = {}
                self.linger_out()
                return

    def accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                sock, _address = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listener is left alone until the next sweep instead of waking the
                    # loop at once, again and again; the kernel keeps the clients in its backlog meanwhile.
                    for fd in self.listeners:
                        self.poller.modify(fd, 0)
                    self.accepting = False
                    return
                continue  # (the client left before it was accepted)
            sock.setblocking(False)
            fd = sock.fileno()
            waiting = self.waiting[fd] = _Waiting(sock, self.limit, time.monotonic())
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

    def choose(self) -> _Channel | None:
        """The serving process that takes the next connection: the one with the fewest open connections (or
        requests in flight), counting those passed since its last report; None when none is there."""
        best: _Channel | None = None
        for channel in self.channels.values():
            if channel.serves and (best is None or channel.weight(self.balance) < best.weight(self.balance)):
                best = channel
        return best

    def hand_over(self, fd: int, waiting: _Waiting) -> None:
        self.forget(fd)
        head = bytes(waiting.block.received)
        sock = waiting.sock
        deadline = time.monotonic() + self.handover_timeout_s
        while True:
            channel = self.choose()
            if channel is None:  # (workers only: all being replaced) it waits for one, within the handover timeout
                waiting.complete = waiting.complete or time.monotonic()
                self.unpassed[fd] = waiting
                return
            try:
                # The descriptor goes with the first part: a part can only belong to the connection passed before
                # it, and a head cut short (a part not sent) is dropped by the serving process at the next one.
                self.send(channel, b"C" + HANDOVER.pack(len(head), self.held()) + head[:PART_BYTES], deadline, fd)
                for start in range(PART_BYTES, len(head), PART_BYTES):
                    self.send(channel, b"H" + head[start:start + PART_BYTES], deadline)
                channel.passed += 1
                break
            except TimeoutError:
                # The serving process has not taken a connection for the channel's timeout: it is stalled. The
                # client is told so rather than left waiting on a connection nobody reads.
                self.answer(sock, "server_busy")
                self.linger(sock)
                return
            except OSError:
                # The serving process is gone (its channel's end not read yet): with workers, the connection goes
                # to another; with one serving process, the loop ends at the channel's end.
                self.end_channel(channel.sock.fileno())
                if self.workers is None:
                    break
        sock.close()  # the serving process holds its own descriptor of it now

    def send(self, channel: _Channel, message: bytes, deadline: float, fd: int | None = None) -> None:
        """One datagram to a serving process, waiting until `deadline` while its queue is full."""
        while True:
            try:
                if fd is None:
                    channel.sock.send(message)
                else:
                    socket.send_fds(channel.sock, [message], [fd])
                return
            except BlockingIOError:
                left = deadline - time.monotonic()
                writable = select.poll()
                writable.register(channel.sock.fileno(), select.POLLOUT)
                if left <= 0 or not writable.poll(left * 1000):
                    raise TimeoutError from None

    def forget(self, fd: int) -> None:
        if self.waiting.pop(fd).polled:
            self.poller.unregister(fd)

    def drop(self, fd: int, waiting: _Waiting) -> None:
        self.forget(fd)
        waiting.sock.close()

    def refuse(self, fd: int, waiting: _Waiting, reason: str) -> None:
        self.forget(fd)
        self.answer(waiting.sock, reason)
        self.linger(waiting.sock)

    def held(self) -> int:
        """Connections the door holds (lingering ones too: each holds a descriptor), for the connection limit."""
        return len(self.waiting) + len(self.lingering) + len(self.unpassed)

    def pass_unpassed(self, now: float) -> None:
        """Heads that waited for a worker: passed once one is there, answered 503 past the handover timeout."""
        for fd, waiting in list(self.unpassed.items()):
            if self.choose() is not None:
                del self.unpassed[fd]
                self.waiting[fd] = waiting  # (hand_over forgets it from there)
                self.hand_over(fd, waiting)
            elif now - waiting.complete >= self.handover_timeout_s:
                del self.unpassed[fd]
                self.answer(waiting.sock, "server_busy")
                self.linger(waiting.sock)

    def linger(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)  # after the answer, sent already
        except OSError:  # the client is gone
            sock.close()
            return
        fd = sock.fileno()
        self.lingering[fd] = _Lingering(sock, time.monotonic())
        self.poller.register(fd, select.POLLIN)

    def drain(self, fd: int) -> None:
        """Read and drop what a lingering connection's client still sends; closed at its end."""
        try:
            data = self.lingering[fd].sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.lingering[fd].heard = time.monotonic()
        else:
            self.end_linger(fd)

    def end_linger(self, fd: int) -> None:
        self.poller.unregister(fd)
        self.lingering.pop(fd).sock.close()

    def linger_out(self) -> None:
        """Before the door leaves: what lingers has until its deadline, with nothing else to do."""
        while self.lingering:
            now = time.monotonic()
            for fd in [fd for fd, lingering in self.lingering.items() if lingering.due(now)]:
                self.end_linger(fd)
            for fd, _events in self.poller.poll(_LINGER_TICK_S):
                if fd in self.lingering:
                    self.drain(fd)

    def answer(self, sock: socket.socket, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        with contextlib.suppress(OSError):  # small: fits the empty send buffer of a connection that sent nothing
            sock.send(self.answers[reason])

    def sweep(self, now: float) -> None:
        deadline = now - self.header_timeout_s
        for fd, waiting in list(self.waiting.items()):
            if waiting.since < deadline:
                self.refuse(fd, waiting, "request_timeout")
        self.pass_unpassed(now)
        self.report()

    def report(self) -> None:
        """Each second, to every channel: the counts go to the one that reports (the serving process, or the
        supervisor), so that a sum over the processes counts them once."""
        report: dict[str, Any] = {"waiting": self.held(), "stopped": self.stop_at is not None}
        counted = False
        for channel in list(self.channels.values()):
            message = {**report, "refused": self.refused, "lost": self.lost} if channel.reports else report
            try:
                channel.sock.send(b"S" + json.dumps(message).encode())
            except OSError:
                continue  # a full queue: the next report says it; gone: the channel's end is read next
            counted = counted or channel.reports
        if counted:
            self.refused, self.lost = {}, 0

    def read_channel(self, fd: int) -> None:
        """A worker's load (`L`), or the channel's end: the serving process is gone, with the connections it held."""
        channel = self.channels[fd]
        while True:
            try:
                message = channel.sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self.end_channel(fd)
                return
            if message[:1] == b"L" and len(message) == 1 + LOAD.size:
                channel.load, channel.passed = LOAD.unpack_from(message, 1), 0

    def end_channel(self, fd: int) -> None:
        """A serving process gone: the connections it held are lost (counted)."""
        channel = self.channels.pop(fd, None)
        if channel is None:
            return
        self.poller.unregister(fd)
        channel.sock.close()
        if channel.serves:
            self.lost += channel.load[0] + channel.passed

    def accept_worker(self) -> None:
        assert self.workers is not None
        while True:
            try:
                sock, _address = self.workers.accept()
            except BlockingIOError:
                return
            except OSError:
                continue
            sock.setblocking(False)
            self.joining[sock.fileno()] = sock
            self.poller.register(sock.fileno(), select.POLLIN)

    def join(self, fd: int) -> None:
        """A channel's first message says what it is: `W` a worker, `R` the supervisor (reports only)."""
        sock = self.joining.pop(fd)
        try:
            kind = sock.recv(64)[:1]
        except OSError:
            kind = b""
        if kind not in (b"W", b"R"):
            self.poller.unregister(fd)
            sock.close()
            return
        self.channels[fd] = _Channel(sock, serves=kind == b"W", reports=kind == b"R")
        if kind == b"W":
            self.pass_unpassed(time.monotonic())


def main() -> int:
    config = json.loads(sys.stdin.buffer.read())
    # A Ctrl-C at a terminal is the server's to handle; the server stops the door with SIGTERM at its shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(int(config["nice"]))
    listeners = [socket.socket(fileno=int(fd)) for fd in config["listener_fds"]]
    for listener in listeners:
        listener.setblocking(False)
    channel = workers = None
    if config.get("channel_fd") is not None:
        channel = socket.socket(fileno=int(config["channel_fd"]))
        channel.setblocking(False)
    if config.get("workers_fd") is not None:
        workers = socket.socket(fileno=int(config["workers_fd"]))
        workers.setblocking(False)
        die_with_parent()  # (with one serving process, the channel's end tells the door it is gone)
    DoorProcess(listeners, channel, config, workers).run()
    return 0


def die_with_parent() -> None:
    """Linux: this process is killed when the one that started it dies (a supervisor killed leaves no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # it died before the line above
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
