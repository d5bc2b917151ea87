"""The serving process's side of the door process (http/door_process.py): starts it on the listening sockets, turns
each connection it passes into a protocol of the serving loop with the head that came, and starts it again should it
die or stop reporting. A worker process (`--workers N`) instead connects to the door its supervisor runs, and reports
its load for the door's choice of worker."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import fastserve
from fastserve.config import ConnectionLimits
from fastserve.http.door_process import HANDOVER, LOAD, PART_BYTES

log = logging.getLogger("fastserve.http")

_NICE = 10  # the door's priority below the serving process: where they share a core, a ready request goes first
_HANDOVER_TIMEOUT_S = 5.0  # a connection the serving process does not take within this is answered 503
_RESTART_DELAY_S = 1.0
_CLOSE_WAIT_S = 2.0
_SILENT_S = 10.0  # a door that has not reported for this long (it reports each second) is stuck: it is restarted
_MESSAGE_BYTES = 1 + HANDOVER.size + PART_BYTES
_LOAD_EVERY_S = 0.01  # how often a worker tells the door its load, when it changed


def door_supported() -> bool:
    """Whether connections can be passed between processes the way the door does (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(fastserve.__file__)))


class _Passing:
    """A connection whose head comes in several datagrams."""

    def __init__(self, sock: socket.socket, length: int, waiting: int, first: bytes) -> None:
        self.sock, self.length, self.waiting, self.head = sock, length, waiting, bytearray(first)


class Door:
    """`make_protocol(head, waiting)` builds the protocol of a connection passed with `head`, its first bytes, while
    the door held `waiting` others; `on_counts(waiting, refused, lost)` takes the door's counts each second."""

    def __init__(self, listeners: list[socket.socket], limits: ConnectionLimits, answers: dict[str, bytes],
                 make_protocol: Callable[[bytes, int], asyncio.Protocol],
                 on_counts: Callable[[int, dict[str, int], int], None], *, join: str | None = None,
                 load: Callable[[], tuple[int, int]] | None = None, workers: socket.socket | None = None,
                 balance: str = "connections") -> None:
        """`join`: a worker's: the path where the supervisor's door takes workers' channels; `load()` gives the
        worker's open connections and requests in flight, for the door's choice. `workers`: the supervisor's: the
        socket listening at that path (the door passes connections to the workers, and its reports here)."""
        self.listeners = listeners
        self.join = join
        self.workers = workers
        self.balance = balance
        self.load = load
        self._loaded: tuple[int, int] | None = None
        self.limits = limits
        self.answers = answers
        self.make_protocol = make_protocol
        self.on_counts = on_counts
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self.passing: _Passing | None = None
        self.reported = 0.0  # when the door last reported (loop time)
        self.connecting: set[asyncio.Task[None]] = set()
        self.closing = False
        self.closed = asyncio.Event()  # the channel's end was read after `close` began
        self.stopped = asyncio.Event()  # the door reported its listener closed after `close` began
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.join is not None:
            self._join()
            return
        if self.workers is not None:  # the supervisor's: the door's reports come on a channel joined as the workers'
            ours, theirs = None, self.workers
        else:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [listener.fileno() for listener in self.listeners]
        config = {
            "listener_fds": fds, "nice": _NICE, "balance": self.balance,
            "channel_fd" if ours is not None else "workers_fd": theirs.fileno(),
            "handover_timeout_s": _HANDOVER_TIMEOUT_S, "header_timeout_s": self.limits.header_timeout_s,
            "max_header_bytes": self.limits.max_header_bytes, "max_headers": self.limits.max_headers,
            "answers": {reason: base64.b64encode(raw).decode() for reason, raw in self.answers.items()},
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fastserve.http.door_process"],
                pass_fds=(*fds, theirs.fileno()), stdin=subprocess.PIPE, env=env)
            assert self.process.stdin is not None
            with self.process.stdin:  # its configuration: read at its start, before it accepts
                self.process.stdin.write(json.dumps(config).encode())
        finally:
            if ours is not None:
                theirs.close()
        if ours is None:
            self._join(b"R", theirs.getsockname())  # (the supervisor's: `theirs` is its workers' socket)
        else:
            ours.setblocking(False)
            self.channel = ours
            self.loop.add_reader(ours.fileno(), self._receive)
            self.reported = self.loop.time()
        log.info("door process %d accepts connections on %s", self.process.pid,
                 ", ".join(str(listener.getsockname()[:2]) for listener in self.listeners))

    def _join(self, kind: bytes = b"W", path: str | None = None) -> None:
        """A channel to the supervisor's door, a worker's (`W`) or the supervisor's own (`R`, its reports): tried
        again until the door is there."""
        assert self.loop is not None
        path = path or self.join
        assert path is not None
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            channel.connect(path)
            channel.send(kind)
        except OSError:
            channel.close()
            if not self.closing:
                self.loop.call_later(0.1, self._join, kind, path)
            return
        channel.setblocking(False)
        self.channel = channel
        self.loop.add_reader(channel.fileno(), self._receive)
        self.reported = self.loop.time()
        self._loaded = None
        self._report_load()

    def _report_load(self) -> None:
        if self.channel is None or self.load is None:
            return
        load = self.load()
        if load != self._loaded:
            try:
                self.channel.send(b"L" + LOAD.pack(*load))
                self._loaded = load
            except OSError:  # a full queue: the next look tells it; the channel's end is read by _receive
                pass
        assert self.loop is not None  # (set by start, before the first report)
        self.loop.call_later(_LOAD_EVERY_S, self._report_load)

    def check(self) -> None:
        """Restart a door that is alive but stuck (each sweep): it would accept nothing while the server looks
        ready."""
        assert self.loop is not None
        if self.join is not None or self.channel is None or self.process is None or self.closing \
                or self.loop.time() - self.reported <= _SILENT_S:
            return
        self._receive()  # (after a stall of the serving loop, its reports may be waiting unread)
        if self.channel is not None and self.loop.time() - self.reported > _SILENT_S:
            log.error("the door process has not reported for %g s; stopping it", _SILENT_S)
            self.process.kill()  # its end of the channel closes: `_receive` starts it again

    def _receive(self) -> None:
        channel = self.channel
        assert channel is not None
        while True:
            try:
                message, fds, flags, _address = socket.recv_fds(channel, _MESSAGE_BYTES, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds, flags = b"", [], 0
            kind = message[:1]
            if kind == b"C" and len(fds) == 1 and not flags & socket.MSG_CTRUNC:
                self._drop_passing()  # (a head cut short: the door could not send the rest)
                length, waiting = HANDOVER.unpack_from(message, 1)
                sock, first = socket.socket(fileno=fds[0]), message[1 + HANDOVER.size:]
                if len(first) >= length:  # the usual head, in one datagram
                    self._connect(sock, first, waiting)
                else:
                    self.passing = _Passing(sock, length, waiting, first)
                continue
            for fd in fds:
                os.close(fd)
            if not message:
                self._ended()
                return
            passing = self.passing
            if kind == b"H" and passing is not None:
                passing.head += message[1:]
                if len(passing.head) >= passing.length:
                    self.passing = None
                    self._connect(passing.sock, bytes(passing.head), passing.waiting)
            elif kind == b"S":
                assert self.loop is not None
                self.reported = self.loop.time()
                counts = json.loads(message[1:])
                self.on_counts(counts["waiting"], counts.get("refused", {}), counts.get("lost", 0))
                if counts.get("stopped") and self.closing:
                    self.stopped.set()
            elif kind == b"C":
                # The descriptor did not come: the serving process is out of them (or the door sent none). The
                # client's connection closes with the door's copy; the parts that follow are not its.
                self._drop_passing()
                log.warning("a connection passed by the door arrived without its descriptor (out of file "
                            "descriptors?); it is closed")

    def _drop_passing(self) -> None:
        if self.passing is not None:
            self.passing.sock.close()
            self.passing = None

    def _connect(self, sock: socket.socket, head: bytes, waiting: int) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self._attach(sock, head, waiting))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _attach(self, sock: socket.socket, head: bytes, waiting: int) -> None:
        assert self.loop is not None
        try:
            transport, protocol = await self.loop.connect_accepted_socket(
                lambda: self.make_protocol(head, waiting), sock)
        except OSError:  # the client left meanwhile
            sock.close()
            return
        # The protocol took `head` in connection_made, and may have paused reading there (a pipelined request
        # behind the first); the transport starts reading only after connection_made, whatever was asked.
        flow = getattr(protocol, "flow", None)
        if flow is not None and flow.read_paused and not transport.is_closing():
            transport.pause_reading()

    def _ended(self) -> None:
        assert self.loop is not None and self.channel is not None
        self.loop.remove_reader(self.channel.fileno())
        self.channel.close()
        self.channel = None
        self._drop_passing()
        status = None
        if self.closing:  # (it may still linger on connections it refused; it leaves within seconds by itself)
            self.closed.set()
            self.stopped.set()
            return
        if self.join is not None:  # the supervisor starts its door again: the worker joins it then
            log.warning("the door process went away; joining it again once it is back")
            self.loop.call_later(0.1, self._join)
            return
        if self.process is not None:  # (its end of the channel closes as it exits: at once, or killed now)
            if self.process.poll() is None:
                self.process.kill()
            status = self.process.wait()
        log.error("the door process exited with status %s; starting it again in %g s (connections wait in the "
                  "listening socket's backlog meanwhile)", status, _RESTART_DELAY_S)
        self.on_counts(0, {}, 0)
        self.loop.call_later(_RESTART_DELAY_S, self._restart)

    def _restart(self) -> None:
        if self.closing or self.join is not None:
            return
        try:
            self.start()
        except OSError as exc:
            log.error("cannot start the door process again (%s); trying again in %g s", exc, _RESTART_DELAY_S)
            assert self.loop is not None
            self.loop.call_later(_RESTART_DELAY_S, self._restart)

    async def close(self) -> None:
        """Stop accepting: the door takes the connections the kernel holds for it and closes the listening socket;
        returns once it has (or after _CLOSE_WAIT_S). It goes on passing connections whose heads were begun, for
        `wait_closed`."""
        self.closing = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        for listener in self.listeners:
            listener.close()
        if self.channel is not None:
            try:
                await asyncio.wait_for(self.stopped.wait(), _CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("the door process did not close its listener within %g s", _CLOSE_WAIT_S)

    async def wait_closed(self) -> None:
        """Until the door has passed its last connection (it then closes the channel), and those are taken."""
        if self.channel is not None:
            try:
                await asyncio.wait_for(self.closed.wait(), _CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("the door process did not stop within %g s", _CLOSE_WAIT_S)
        if self.connecting:
            await asyncio.wait(self.connecting, timeout=_CLOSE_WAIT_S)
