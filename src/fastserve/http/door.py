"""The serving process's side of the door process (http/door_process.py): starts it on the listening socket, turns
each connection it passes into a protocol of the serving loop with the head that came, sends it the count of open
connections it needs for the connection limit, and starts it again should it die."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import fastserve
from fastserve.config import ConnectionLimits
from fastserve.http.door_process import LIVE, PART_BYTES

log = logging.getLogger("fastserve.http")

_NICE = 10  # the door's priority below the serving process: where they share a core, a ready request goes first
_HANDOVER_TIMEOUT_S = 5.0  # a connection the serving process does not take within this is answered 503
_RESTART_DELAY_S = 1.0
_CLOSE_WAIT_S = 2.0


def door_supported() -> bool:
    """Whether connections can be passed between processes the way the door does (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(fastserve.__file__)))


class Door:
    """`make_protocol(head, over_capacity)` builds the protocol of a connection passed with `head`, its first
    bytes; `on_counts(waiting, refused)` takes the door's counts each second."""

    def __init__(self, listener: socket.socket, limits: ConnectionLimits, answers: dict[str, bytes],
                 make_protocol: Callable[[bytes, bool], asyncio.Protocol],
                 on_counts: Callable[[int, dict[str, int]], None]) -> None:
        self.listener = listener
        self.limits = limits
        self.answers = answers
        self.make_protocol = make_protocol
        self.on_counts = on_counts
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self.part = bytearray()  # of a head passed in several datagrams
        self.connecting: set[asyncio.Task[None]] = set()
        self.closing = False
        self.closed = asyncio.Event()  # the channel's end was read after `close` began
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "listener_fd": self.listener.fileno(), "channel_fd": theirs.fileno(), "nice": _NICE,
            "handover_timeout_s": _HANDOVER_TIMEOUT_S, "header_timeout_s": self.limits.header_timeout_s,
            "max_header_bytes": self.limits.max_header_bytes, "max_headers": self.limits.max_headers,
            "max_connections": self.limits.max_connections,
            "answers": {reason: base64.b64encode(raw).decode() for reason, raw in self.answers.items()},
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fastserve.http.door_process"],
                pass_fds=(self.listener.fileno(), theirs.fileno()), stdin=subprocess.PIPE, env=env)
            assert self.process.stdin is not None
            with self.process.stdin:  # its configuration: read at its start, before it accepts
                self.process.stdin.write(json.dumps(config).encode())
        finally:
            theirs.close()
        ours.setblocking(False)
        self.channel = ours
        self.loop.add_reader(ours.fileno(), self._receive)
        log.info("door process %d accepts connections on %s", self.process.pid, self.listener.getsockname())

    def report(self, live: int) -> None:
        """Tell the door how many connections the serving process holds (each sweep)."""
        if self.channel is not None:
            # (A full queue: the next sweep's count will do; gone: `_receive` sees its end.)
            with contextlib.suppress(OSError):
                self.channel.send(LIVE.pack(live))

    def _receive(self) -> None:
        channel = self.channel
        assert channel is not None
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(channel, PART_BYTES + 1, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                for fd in fds:
                    os.close(fd)
                self._ended()
                return
            kind = message[:1]
            if fds:
                head = bytes(self.part) + message[1:] if self.part else message[1:]
                self.part.clear()
                self._connect(socket.socket(fileno=fds[0]), head, kind == b"O")
            elif kind == b"H":
                self.part += message[1:]
            elif kind == b"S":
                counts = json.loads(message[1:])
                self.on_counts(counts["waiting"], counts["refused"])

    def _connect(self, sock: socket.socket, head: bytes, over: bool) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self._attach(sock, head, over))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _attach(self, sock: socket.socket, head: bytes, over: bool) -> None:
        assert self.loop is not None
        try:
            await self.loop.connect_accepted_socket(lambda: self.make_protocol(head, over), sock)
        except OSError:  # the client left meanwhile
            sock.close()

    def _ended(self) -> None:
        assert self.loop is not None and self.channel is not None
        self.loop.remove_reader(self.channel.fileno())
        self.channel.close()
        self.channel = None
        self.part.clear()
        status = None
        if self.process is not None:  # (its end of the channel closes as it exits)
            try:
                status = self.process.wait(_CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                status = self.process.wait()
        if self.closing:
            self.closed.set()
            return
        log.error("the door process exited with status %s; starting it again in %g s (connections wait in the "
                  "listening socket's backlog meanwhile)", status, _RESTART_DELAY_S)
        self.on_counts(0, {})
        self.loop.call_later(_RESTART_DELAY_S, self._restart)

    def _restart(self) -> None:
        if self.closing:
            return
        try:
            self.start()
        except OSError as exc:
            log.error("cannot start the door process again (%s); trying again in %g s", exc, _RESTART_DELAY_S)
            assert self.loop is not None
            self.loop.call_later(_RESTART_DELAY_S, self._restart)

    async def close(self) -> None:
        """Stop accepting: the door stops, the listening socket closes; connections it passed before it stopped are
        still taken, so that their requests are answered."""
        self.closing = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self.listener.close()
        if self.channel is not None:
            try:
                await asyncio.wait_for(self.closed.wait(), _CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("the door process did not stop within %g s", _CLOSE_WAIT_S)
        if self.connecting:
            await asyncio.wait(self.connecting, timeout=_CLOSE_WAIT_S)
