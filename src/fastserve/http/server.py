"""The server: uvicorn's, with fastserve's own accepts (the door process, deferred accepts), the sweep of slow
connections, and a shutdown that answers what it accepted; `build_server` puts it together with the compiled
protocol (`http/_protocol.pyx`) or uvicorn's extended one (`http/protocol.py`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import uvicorn

from fastserve.config import ServerConfig
from fastserve.http.admission import Admission
from fastserve.http.door import Door, door_supported
from fastserve.http.protocol import (
    SWEEP_S,
    SWEEP_STEP,
    Doorman,
    LimitedHttpToolsProtocol,
    QuietNonHttpWarnings,
    bind_listeners,
    defer_accepts,
    door_answers,
)
from fastserve.metrics import RequestStats

log = logging.getLogger("fastserve.http")

class Server(uvicorn.Server):
    """uvicorn's server, sweeping slow connections, and exiting with status 0 after a graceful SIGTERM (uvicorn
    re-raises the signal once it has shut down, which would end the process with 143). With `door_process`, it
    listens itself once the lifespan has started and leaves the accepting to the door process (http/door.py)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Any, admission: Admission | None = None,
                 door_process: bool = True, full: type[LimitedHttpToolsProtocol] = LimitedHttpToolsProtocol,
                 join: str | None = None) -> None:
        """`join`: a worker process's: where the supervisor's door takes its channel (it listens on nothing)."""
        super().__init__(config)
        self._join = join
        self.full = full  # the connections' protocol, with the limits
        # What accepts a connection here (`full`, or the doorman ahead of it), made with uvicorn's arguments.
        accepting = config.http
        assert not isinstance(accepting, str), "build_server passes uvicorn the protocol class itself"
        self.accepting: Callable[..., asyncio.Protocol] = accepting
        self._on_shutdown = on_shutdown  # called at once on SIGTERM/SIGINT: readiness turns false
        self._admission = admission
        self._door_process = door_process
        self.door: Door | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None  # closing the listeners, from SIGTERM on

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if self._join is None and (not self._door_process or sockets is not None):
            await super().startup(sockets)
            defer_accepts([listener for server in self.servers for listener in server.sockets])
            return
        await super().startup(sockets=[])  # the lifespan; the door process accepts the connections
        limits = self.full.limits
        if self._join is not None:
            stats = self.full.stats
            self.door = Door([], limits, {}, self._door_protocol, self._door_counts, join=self._join,
                             load=lambda: (len(self.server_state.connections), stats.received))
            self.door.start()
            return
        try:
            listeners = bind_listeners(self.config.host, self.config.port, self.config.backlog)
        except OSError as exc:
            await self._fail_start(f"cannot listen on {self.config.host}:{self.config.port}: {exc}")
        self.door = Door(listeners, limits, door_answers(limits), self._door_protocol, self._door_counts)
        try:
            self.door.start()
        except OSError as exc:
            await self._fail_start(f"cannot start the door process ({exc}); `fastserve serve --no-door-process` "
                                   "accepts connections in the serving process instead")

    async def _fail_start(self, message: str) -> NoReturn:
        log.error("%s", message)
        await self.lifespan.shutdown()
        sys.exit(3)  # uvicorn's status for a failed start

    def _door_protocol(self, head: bytes, waiting: int) -> asyncio.Protocol:
        protocol = self.full(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)
        protocol.head, protocol.door_waiting = head, waiting
        if self._join is None:  # (a worker's: the supervisor counts the door's connections, once)
            self.full.stats.waiting_at_door = waiting  # fresher than the door's report each second
        return protocol

    def _door_counts(self, waiting: int, refused: dict[str, int], lost: int = 0) -> None:
        if self._join is not None:  # (a worker's: the supervisor gets the counts)
            return
        self.full.stats.waiting_at_door = waiting
        counts = self.full.refused_counts
        for reason, n in refused.items():
            counts[reason] = counts.get(reason, 0) + n

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_listening()
        assert self._stopping is not None  # (made by _stop_listening)
        await self._stopping
        if self.door is not None:
            await self.door.wait_closed()  # connections whose heads were begun are passed (or refused) by then
        await super().shutdown(sockets)

    def _stop_listening(self) -> None:
        """At SIGTERM, at once: no new connections, but those the kernel holds for the listener are taken first
        (closing it would reset them, requests and all). Only then do answers close their connections
        (`draining`): clients told to close earlier would connect again, into the backlog the close resets
        (measured: 10 to 70 requests of 600 lost a run)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._close_listeners())

    async def _close_listeners(self) -> None:
        if self.door is not None:
            await self.door.close()
        elif self._join is None:  # (a worker stopped before it joined the door has no listener)
            await self._take_backlog()
            for server in self.servers:
                server.close()
        self.full.draining = True

    async def _take_backlog(self) -> None:
        """Accept what waits in the listening sockets' backlog, as the event loop would."""
        loop = asyncio.get_running_loop()
        make = functools.partial(self.accepting, config=self.config, server_state=self.server_state,
                                 app_state=self.lifespan.state)
        taken = []
        for server in self.servers:
            for listener in server.sockets:
                with socket.socket(fileno=os.dup(listener.fileno())) as sock:
                    sock.setblocking(False)
                    while True:
                        try:
                            client, _ = sock.accept()
                        except OSError:  # (BlockingIOError: none left)
                            break
                        taken.append(loop.create_task(loop.connect_accepted_socket(make, client)))
        if taken:
            await asyncio.wait(taken)

    async def main_loop(self) -> None:
        sweeper = asyncio.create_task(self._sweep())
        try:
            await super().main_loop()
        finally:
            sweeper.cancel()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            looked = 0
            connection: Any  # this protocol, the compiled one (http/_protocol.pyx), a Doorman
            for connection in list(self.server_state.connections):
                if hasattr(connection, "overdue"):
                    answer = connection.overdue(now)
                    looked += 1
                    if answer is not None:
                        connection.refuse(answer)
                    if answer is not None or looked % SWEEP_STEP == 0:
                        await asyncio.sleep(0)
            if self._admission is not None and self._admission.limits:
                self._recount()
            if self.door is not None:
                self.door.check()

    def _recount(self) -> None:
        """Set each admission limit's count from the connections that hold one of its requests: whatever path a request
        takes out of the server, a place it held cannot stay taken for longer than a sweep."""
        admission = self._admission
        if admission is None:
            return
        held: dict[int, int] = {}
        connection: Any
        for connection in self.server_state.connections:
            if getattr(connection, "admission_limit", None) is not None and connection.admitted_at:
                held[id(connection.admission_limit)] = held.get(id(connection.admission_limit), 0) + 1
        for limit in admission.limits.values():
            counted = held.get(id(limit), 0)
            if limit.in_flight != counted:
                log.warning("admission: %s had %d requests counted in the server, %d found; corrected",
                            limit.name, limit.in_flight, counted)
                limit.in_flight = counted

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_shutdown()
        if self._loop is not None:  # (a signal handler: the loop's own work waits for its next turn)
            self._loop.call_soon_threadsafe(self._stop_listening)
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def build_server(app: Any, config: ServerConfig, loop: str, on_shutdown: Any, stats: RequestStats,
                 admission: Admission | None, http: str = "compiled", join: str | None = None) -> Server:
    """The server, its connections on fastserve's own compiled protocol (`compiled`, http/_protocol.pyx), or on
    uvicorn's protocol extended here (`asgi`)."""
    limits = config.limits
    protocol: Any
    if http == "compiled":
        from fastserve.http._protocol import Settings

        protocol = Settings(app, limits, config.max_body_bytes, stats, stats.connections_refused, admission,
                            limits.keep_alive_timeout_s)
    else:
        protocol = type("FastserveHttpProtocol", (LimitedHttpToolsProtocol,),
                        {"limits": limits, "max_body_bytes": config.max_body_bytes, "stats": stats,
                         "refused_counts": stats.connections_refused, "admission": admission})
    door = config.door_process and door_supported()
    if config.door_process and not door:
        log.info("no door process on this platform (it needs Linux's Unix sequenced-packet sockets): the serving "
                 "process accepts the connections itself")
    doorman = type("FastserveDoorman", (Doorman,), {"full": protocol})  # for the serving process's own accepts
    logging.getLogger("uvicorn.error").addFilter(QuietNonHttpWarnings())
    server = Server(uvicorn.Config(
        app, host=config.host, port=config.port, loop=loop, http=protocol if door else doorman, lifespan="on",
        log_config=None,
        log_level=config.log_level, access_log=False, server_header=False,
        proxy_headers=False,  # nothing here reads the client's address: the middleware would rewrite it for nothing
        timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]  # uvicorn takes a float too
        timeout_graceful_shutdown=config.shutdown_grace_s,  # type: ignore[arg-type]
    ), on_shutdown, admission, door, protocol, join)
    stats.connections = server.server_state.connections
    return server
