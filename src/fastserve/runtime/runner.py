"""Runs a session's batches: on a worker thread of its own, or inline when that is cheaper and blocks nobody."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np

_STOP = object()
INLINE_MAX_ROWS = 64
_EWMA_WEIGHT = 0.1


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the request was cancelled meanwhile
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


class Runner:
    """One worker thread per session; jobs run in arrival order.

    Handing a run to the worker costs two thread wake-ups (tens of microseconds on a virtual machine), more than a
    small tabular model takes to run. So when the caller is the only request in the server, nothing waits on the
    worker, and small runs have been taking less than `inline_max_s`, the run happens on the calling (event loop)
    thread: nobody else is there to be blocked. Under concurrency every run goes to the worker and the loop keeps
    parsing requests while onnxruntime works with the GIL released. `inline_max_s = 0` turns inlining off.
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str, inline_max_s: float = 0.0,
                 small_run_s: float | None = None) -> None:
        self._fn = fn
        self._inline_max_s = inline_max_s
        # Estimated seconds of one run of up to INLINE_MAX_ROWS rows, from warm-up, then from every such run.
        self.small_run_s = small_run_s if small_run_s is not None else float("inf")
        self._busy = 0  # jobs handed to the worker and not yet answered; touched on the loop thread only
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, x: np.ndarray, alone: bool = False) -> Any:
        small = len(x) <= INLINE_MAX_ROWS
        if alone and small and self._busy == 0 and self.small_run_s < self._inline_max_s:
            started = perf_counter()
            result = self._fn(x)  # on the loop thread, on purpose: see the class docstring
            self.small_run_s += _EWMA_WEIGHT * (perf_counter() - started - self.small_run_s)
            return result
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._busy += 1
        try:
            self._jobs.put((x, fut, loop, small))
            result, seconds = await fut
        finally:
            self._busy -= 1
        if small:
            self.small_run_s += _EWMA_WEIGHT * (seconds - self.small_run_s)
        return result

    def _work(self) -> None:  # runs on the worker thread
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            x, fut, loop, _ = job
            if fut.cancelled():
                continue
            started = perf_counter()
            try:
                result, error = (self._fn(x), perf_counter() - started), None
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed while we ran: nobody is waiting
                loop.call_soon_threadsafe(_resolve, fut, result, error)

    def close(self, timeout: float = 5.0) -> None:
        """Finish queued jobs, then stop the thread."""
        self._jobs.put(_STOP)
        self._thread.join(timeout)
