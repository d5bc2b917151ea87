"""Runs a session on a thread of its own so that the event loop never waits on `session.run`."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

_STOP = object()


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the request was cancelled meanwhile
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


class Runner:
    """One worker thread per session; jobs run in arrival order.

    Leaner than `run_in_executor` (no concurrent.futures.Future in between): one queue put, and one
    `call_soon_threadsafe` back to the loop.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str) -> None:
        self._fn = fn
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, x: np.ndarray) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((x, fut, loop))
        return await fut

    def _work(self) -> None:  # runs on the worker thread
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            x, fut, loop = job
            if fut.cancelled():
                continue
            try:
                result, error = self._fn(x), None
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed while we ran: nobody is waiting
                loop.call_soon_threadsafe(_resolve, fut, result, error)

    def close(self, timeout: float = 5.0) -> None:
        """Finish queued jobs, then stop the thread."""
        self._jobs.put(_STOP)
        self._thread.join(timeout)
