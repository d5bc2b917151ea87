"""Messages between the supervisor and a worker: length-prefixed pickles over a Unix stream socket in a directory only
this user can open, both ways, each a call answered by its id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastserve import exceptions
from fastserve.exceptions import FastserveError

log = logging.getLogger("fastserve.workers")

_FRAME = struct.Struct("!I")
Handler = Callable[[str, Any], Awaitable[Any]]


class LinkClosed(FastserveError):
    """The process at the other end went away before answering."""

    code = "unavailable"


def _error(exc: BaseException) -> tuple[str, str, Any]:
    if isinstance(exc, FastserveError):
        return type(exc).__name__, exc.message, exc.detail
    return "FastserveError", f"{type(exc).__name__}: {exc}", None


def _raise(kind: str, message: str, detail: Any) -> None:
    """The error the other end raised, as the same FastserveError class (http/ maps it to the same status)."""
    cls = getattr(exceptions, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, FastserveError)):
        cls = FastserveError
    raise cls(message, detail=detail)


@dataclass(frozen=True, slots=True)
class _Call:
    number: int
    kind: str
    body: Any


@dataclass(frozen=True, slots=True)
class _Reply:
    number: int  # the call's
    ok: Any = None
    error: tuple[str, str, Any] | None = None  # (FastserveError class, message, detail), raised again at the caller


class Link:
    """One end. `handle(kind, body)` answers the other end's calls; `call(kind, body)` makes one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler) -> None:
        self.reader, self.writer, self.handle = reader, writer, handle
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[_Reply]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    def _send(self, message: _Call | _Reply) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(_FRAME.pack(len(data)) + data)

    async def call(self, kind: str, body: Any = None, timeout: float | None = None) -> Any:
        if self.closed.is_set():
            raise LinkClosed(f"{kind}: the other process is gone")
        number = next(self._ids)
        future = self._waiting[number] = asyncio.get_running_loop().create_future()
        self._send(_Call(number, kind, body))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(number, None)
        if reply.error is not None:
            _raise(*reply.error)
        return reply.ok

    async def run(self) -> None:
        """Read until the other end closes; each call is answered on a task of its own."""
        try:
            while True:
                size = _FRAME.unpack(await self.reader.readexactly(_FRAME.size))[0]
                message = pickle.loads(await self.reader.readexactly(size))
                if isinstance(message, _Reply):
                    future = self._waiting.get(message.number)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    async def _answer(self, message: _Call) -> None:
        try:
            reply = _Reply(message.number, ok=await self.handle(message.kind, message.body))
        except Exception as exc:  # the caller gets it, as the same kind of error
            if not isinstance(exc, FastserveError):
                log.exception("%s failed", message.kind)
            reply = _Reply(message.number, error=_error(exc))
        if not self.closed.is_set():
            with contextlib.suppress(ConnectionError, OSError):
                self._send(reply)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LinkClosed("the other process went away before answering"))
        self.writer.close()
