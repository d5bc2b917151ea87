"""The asyncio driver of the compiled batcher (`_core.batcher.BatchQueue`): futures, timers, the run pool's threads.

Everything here but `RunPool._work` runs on the event loop thread; the core is never touched from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from time import monotonic_ns
from typing import Any, Protocol

import numpy as np

from fastserve._core.batcher import CANNOT_MEET_DEADLINE, NO_DEADLINE, QUEUE_FULL, BatchQueue, RunTimeModel
from fastserve.config import BatchingOptions
from fastserve.exceptions import ClientGone, DeadlineUnmeetable, InvalidInput, ModelNotReady, QueueFull
from fastserve.runtime import ModelSession

Outputs = dict[str, np.ndarray]


class Waiter(Protocol):
    """What waits for a queued request's outputs: an asyncio future, or a connection's request that answers from
    the batch's completion (http/_protocol.pyx). Called on the loop only."""

    def done(self) -> bool: ...
    def set_result(self, outputs: Outputs) -> None: ...
    def set_exception(self, error: BaseException) -> None: ...


# (input rows, what waits for the request's outputs)
_Item = tuple[np.ndarray, Waiter]
_STOP = object()
log = logging.getLogger("fastserve.batching")
INLINE_MAX_ROWS = 64


def _retry_after_s(backlog_ns: int) -> int:
    return max(1, -(-backlog_ns // 1_000_000_000))


class RunPool:
    """The threads every batcher's batches run on, one pool per process, sized to the cores it may use: threads do
    not grow with the versions loaded (a thousand models, a few threads). Batches run in the order they come; a
    batcher has at most `instances` batches in flight (its core decides), so a flooded model holds at most that many
    places in the queue, and a quiet model's batch waits behind those, never behind the flood's backlog."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._work, name=f"fastserve-run-{i}", daemon=True)
                         for i in range(threads)]
        for worker in self._workers:
            worker.start()

    def submit(self, session: ModelSession, batch: np.ndarray, done: Callable[..., None],
               loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.put((session, batch, done, loop))

    def _work(self) -> None:  # runs on a pool thread
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            session, batch, done, loop = job
            started = monotonic_ns()
            try:
                result, error = session.run(batch), None  # releases the GIL
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(done, result, error, monotonic_ns() - started)


_pool: RunPool | None = None
_pool_threads = 2


def set_run_threads(threads: int) -> None:
    """How many threads the process's pool gets (before its first batcher); `serve` sets it from the cores."""
    global _pool_threads
    _pool_threads = max(1, threads)


def run_pool() -> RunPool:
    global _pool
    if _pool is None:
        _pool = RunPool(_pool_threads)
    return _pool


class _Instance:
    """A batch's place: its own preallocated input buffer, one batch at a time, run on the process's pool."""

    def __init__(self, session: ModelSession, rows: int) -> None:
        self.session = session
        self.buffer = np.empty((rows, session.n_features), dtype=session.input_dtype)
        self._pool = run_pool()

    def submit(self, batch: np.ndarray, done: Callable[..., None], loop: asyncio.AbstractEventLoop) -> None:
        self._pool.submit(self.session, batch, done, loop)


class Batcher:
    """Groups a version's requests into batches and runs up to `instances` of them at once on the process's pool.

    Requests enter with `submit`; the core decides when a batch forms and which requests it holds; rows are copied
    once into the instance's buffer (a lone request runs from its own array, with no copy); outputs go back to each
    request as views of the batch's output arrays, with no loop over rows.

    A batch whose run is estimated under `inline_max_s`, with every instance idle, runs on the event loop thread:
    handing it to a worker costs two thread wake-ups, more than such a run. A lone request on an idle batcher also
    skips the queue and its future.
    """

    def __init__(self, session: ModelSession, options: BatchingOptions, label: str, *,
                 warm_up: dict[int, float] | None = None, inline_max_s: float = 0.0) -> None:
        self.session = session
        self.options = options
        self.label = label
        self._slo_ns = int(options.latency_slo_ms * 1e6) if options.latency_slo_ms else None
        run_time, warm = RunTimeModel(), RunTimeModel()
        for rows, seconds in (warm_up or {}).items():
            run_time.observe(rows, int(seconds * 1e9))
            warm.observe(rows, int(seconds * 1e9))
        self.queue = BatchQueue(options.max_batch_size, options.max_queue_rows, options.max_delay_us * 1000,
                                options.instances, run_time)
        self._inline_max_ns = inline_max_s * 1e9
        # Whether a run is short enough to hold the loop for is read from the warm-up runs, made on an idle process:
        # runs on a worker measure waits for the GIL too, and a batcher that judged by those would stay with the
        # workers once it had gone there.
        self._short = warm if warm_up else run_time
        self._instances = [_Instance(session, options.max_batch_size) for _ in range(options.instances)]
        self._free = list(self._instances)
        self._pending: dict[int, _Item] = {}
        self._tickets = itertools.count()
        self._taken = np.empty(options.max_queue_rows, dtype=np.int64)
        self._expired = np.empty(options.max_queue_rows, dtype=np.int64)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._kicked = False  # a `_kick` is scheduled on the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called on the loop with each batch's rows and outputs (drift sketches); None = nothing to do.
        self.observe: Callable[[np.ndarray, Outputs], None] | None = None

    def deadline_ns(self, arrived_ns: int, timeout_ms: float | None) -> int:
        """The earlier of the model's SLO and the client's timeout, from the request's arrival."""
        deadline = NO_DEADLINE
        if self._slo_ns is not None:
            deadline = arrived_ns + self._slo_ns
        if timeout_ms is not None:
            deadline = min(deadline, arrived_ns + int(timeout_ms * 1e6))
        return deadline

    async def submit(self, x: np.ndarray, deadline_ns: int = NO_DEADLINE, *, alone: bool = False,
                     disconnected: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> Outputs:
        """Queue `x` ([rows, features] of the model's dtype) and wait for its outputs.

        Raises QueueFull or DeadlineUnmeetable when refused, at once or from the queue. `disconnected`, when given,
        is awaited while the request waits in the queue; if it returns first, the request is dropped unrun.
        """
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outputs] = loop.create_future()
        result, ticket = self.enter(x, deadline_ns, alone, fut)
        if result is not None:
            return result
        if fut.done() or disconnected is None:
            return await fut
        watcher: asyncio.Task[Any] = loop.create_task(disconnected())  # only waiting requests pay for it
        watcher.add_done_callback(lambda _: self.abandon(ticket))
        try:
            return await fut
        finally:
            watcher.cancel()

    def enter(self, x: np.ndarray, deadline_ns: int, alone: bool, waiter: Waiter) -> tuple[Outputs | None, int]:
        """Run `x` at once and return (its outputs, -1) when it is the only request (`alone`) and every instance
        is idle, else queue it and return (None, its ticket for `abandon`): `waiter` gets the outputs (or the error)
        from the batch's completion, on the loop. Raises a refusal (oversized, queue full, deadline unmeetable)."""
        rows = len(x)
        options = self.options
        if rows > options.max_batch_size and options.oversize == "refuse":
            raise InvalidInput(f"batch of {rows} rows is over this model's max_batch_size of "
                               f"{options.max_batch_size} - at `$.inputs`",
                               detail={"path": "$.inputs", "rows": rows, "max_batch_size": options.max_batch_size})
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        now = monotonic_ns()
        q = self.queue
        # (With batching off no companion can join: any request finding the batcher idle may take the fast path.)
        if ((alone or options.max_batch_size == 1) and rows <= INLINE_MAX_ROWS and q.queued_requests == 0
                and q.in_flight == 0 and self._short.estimate(rows) < self._inline_max_ns
                and (deadline_ns == NO_DEADLINE or now + q.run_time.estimate(rows) <= deadline_ns)):
            # Fast path: the only request, every instance idle: run it here, with no queue, future or hand-off.
            result = self.session.run(x)  # on the loop thread, on purpose: see the class docstring
            q.ran_alone(rows, now, monotonic_ns() - now)
            if self.observe is not None:
                self.observe(x, result)
            return result, -1
        ticket = next(self._tickets)
        status = q.push(ticket, rows, now, deadline_ns)
        if status != 0:
            backlog = q.backlog_ns(now)
            if status == QUEUE_FULL:
                raise QueueFull(f"{self.label}: queue full ({q.queued_rows} rows waiting, limit "
                                f"{options.max_queue_rows}); retry later", retry_after_s=_retry_after_s(backlog))
            if status == CANNOT_MEET_DEADLINE:
                left = deadline_ns - now
                why = (f"{left / 1e6:.2f} ms left, {backlog / 1e6:.2f} ms of work queued" if left > 0
                       else f"it passed {-left / 1e6:.2f} ms ago")
                raise DeadlineUnmeetable(f"{self.label}: cannot answer within the request's deadline ({why}); "
                                         "retry later", retry_after_s=_retry_after_s(backlog))
        self._pending[ticket] = (x, waiter)
        if self._free and not self._kicked:  # else the next finished batch schedules
            if self._short.estimate(q.queued_rows) < self._inline_max_ns:
                # The batch would run here, holding the loop: first the requests already ready on it join it.
                self._kicked = True
                self._loop.call_soon(self._kick)
            else:  # a worker runs it while the loop reads on: at once
                self._schedule()
        return None, ticket

    def _kick(self) -> None:
        self._kicked = False
        self._schedule()

    def abandon(self, ticket: int) -> None:
        """The client left: drop its request if it has not started (a running batch cannot be stopped); its waiter
        gets ClientGone."""
        item = self._pending.get(ticket)
        if item is not None and self.queue.cancel(ticket):
            del self._pending[ticket]
            item[1].set_exception(ClientGone(f"{self.label}: client left before its request ran"))

    def _schedule(self) -> None:
        q = self.queue
        loop = self._loop
        assert loop is not None  # (set by the first submit, which is what schedules)
        while self._free:
            now = monotonic_ns()
            wait = q.wait_ns(now)
            if wait < 0:
                return
            if wait > 0:
                self._arm(now, wait)
                return
            n, n_expired, rows = q.take(now, self._taken, self._expired)
            if n_expired:
                self._refuse_expired(n_expired, now)
            if n == 0:
                continue
            items = [self._pending.pop(t) for t in self._taken[:n].tolist()]
            instance = self._free.pop()
            # A lone request runs from its own array; several are copied once, in C, into the instance's buffer.
            batch = items[0][0] if n == 1 else np.concatenate([x for x, _ in items], out=instance.buffer[:rows])
            if q.in_flight == 1 and self._short.estimate(rows) < self._inline_max_ns:
                self._run_inline(instance, items, rows, batch)
                if q.queued_requests:  # what waits is scheduled after the loop has seen to its sockets
                    loop.call_soon(self._schedule)
                return
            done = functools.partial(self._done, instance, items, rows, batch)
            instance.submit(batch, done, loop)

    def _run_inline(self, instance: _Instance, items: list[_Item], rows: int, batch: np.ndarray) -> None:
        """Run a short batch on the loop thread, every instance being idle: a hand-off to a worker costs two thread
        wake-ups, more than the run itself."""
        started = monotonic_ns()
        try:
            result, error = self.session.run(batch), None
        except Exception as exc:  # answered to the batch's requests, as a worker would
            result, error = None, exc
        self._finish(instance, items, rows, batch, result, error, monotonic_ns() - started)

    def _done(self, instance: _Instance, items: list[_Item], rows: int, batch: np.ndarray, result: Outputs | None,
              error: BaseException | None, run_ns: int) -> None:
        self._finish(instance, items, rows, batch, result, error, run_ns)
        self._schedule()

    def _finish(self, instance: _Instance, items: list[_Item], rows: int, batch: np.ndarray, result: Outputs | None,
                error: BaseException | None, run_ns: int) -> None:
        self.queue.finished(rows, run_ns if error is None else -1)
        self._free.append(instance)
        if error is not None or result is None:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(error or RuntimeError("run returned nothing"))
        elif len(items) == 1:
            if not items[0][1].done():
                items[0][1].set_result(result)
        else:
            offset = 0
            for x, fut in items:
                end = offset + len(x)
                if not fut.done():
                    fut.set_result({name: out[offset:end] for name, out in result.items()})
                offset = end
        if self.observe is not None and result is not None:
            try:  # the answers are out whatever happens here
                # The instance's buffer is reused by the next batch: the observer keeps a copy.
                self.observe(batch if len(items) == 1 else batch.copy(), result)
            except Exception:
                log.exception("%s: the batch observer (drift monitor) failed", self.label)

    def _refuse_expired(self, n: int, now: int) -> None:
        backlog = self.queue.backlog_ns(now)
        for ticket in self._expired[:n].tolist():
            _, fut = self._pending.pop(ticket)
            if not fut.done():
                fut.set_exception(DeadlineUnmeetable(
                    f"{self.label}: the deadline can no longer be met; refused before running",
                    retry_after_s=_retry_after_s(backlog)))

    def _arm(self, now: int, wait_ns: int) -> None:
        at = now + wait_ns
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        assert self._loop is not None
        self._timer = self._loop.call_later(wait_ns / 1e9, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self._pending and self.queue.in_flight == 0

    async def drain(self, timeout: float) -> None:
        """Wait until every request already given to this batcher is answered (or `timeout` seconds pass)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while not self.idle and loop.time() < until:
            await asyncio.sleep(0.002)

    def refuse_waiting(self, why: str) -> int:
        """Answer every request still queued (not running) with 503 + Retry-After; returns how many. On the loop."""
        refused = 0
        for ticket, (_, fut) in list(self._pending.items()):
            if self.queue.cancel(ticket):
                del self._pending[ticket]
                if not fut.done():
                    fut.set_exception(ModelNotReady(f"{self.label}: {why}; retry"))
                    refused += 1
        return refused

    def close(self, timeout: float = 5.0) -> None:
        """No more batches (the pool's threads are the process's: they stay)."""
        if self._timer is not None:
            self._timer.cancel()
