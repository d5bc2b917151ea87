"""Shadow versions: a share of the primary's requests copied to another version, run off the critical path, and
its answers compared with the primary's.

Each shadow has its own bounded queue and its own worker thread at a lower OS priority. The request path only
appends the request's rows and the primary's outputs to that queue (it never waits for the shadow, and wakes the
worker only when a batch's worth is waiting); the worker runs what gathered every few milliseconds, as one batch.
When the queue is full the copy is dropped and counted: a shadow that falls behind loses samples, never delays
anyone.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve.registry.models import READY, LoadedVersion
from fastserve.routing.windows import Bucket, Window

log = logging.getLogger("fastserve.routing")

SCORE_OUTPUTS = ("probabilities", "prediction", "variable")
GATHER_S = 0.005  # a shadow's copies are run at least this often, in batches


def _score_name(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> str | None:
    for name in (*SCORE_OUTPUTS, *primary):
        if name in primary and name in shadow and np.asarray(primary[name]).dtype.kind == "f":
            return name
    return None


@dataclass(frozen=True, slots=True)
class Comparisons:
    """How a shadow's answers compared with the primary's, over its window or since it started."""

    compared: int
    dropped: int
    errors: int
    label_agreement: float | None
    mean_abs_diff: float | None
    max_abs_diff: float | None
    latency_ms_mean: float | None
    latency_ms_max: float | None
    seconds: float | None  # the window's (None: since it started)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "compared": self.compared, "dropped": self.dropped, "errors": self.errors,
            "label_agreement": self.label_agreement, "mean_abs_diff": self.mean_abs_diff,
            "max_abs_diff": self.max_abs_diff, "latency_ms_mean": self.latency_ms_mean,
            "latency_ms_max": self.latency_ms_max}
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


@dataclass(frozen=True, slots=True)
class ShadowStatus:
    version: int
    sample: float
    window: Comparisons
    total: Comparisons

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "sample": self.sample, "window": self.window.as_json(),
                "total": self.total.as_json()}


class ShadowRunner:
    """Copies of requests for one shadow version, and how its answers compare with the primary's."""

    def __init__(self, model: str, number: int, resolve: Callable[[], LoadedVersion | None], sample: float,
                 window_s: float, *, max_pending_rows: int = 8192, batch_rows: int = 256) -> None:
        self.model = model
        self.number = number
        self._resolve = resolve  # the version object may be replaced (a config reload): look it up at each run
        self.sample = sample
        self.window = Window(window_s)
        self._max_pending_rows = max_pending_rows
        self._batch_rows = batch_rows
        self._queue: collections.deque[tuple[np.ndarray, dict[str, np.ndarray], float]] = collections.deque()
        self._queued_rows = 0
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name=f"fastserve-shadow-{model}-v{number}",
                                        daemon=True)
        self._thread.start()

    def offer(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        """On the event loop: maybe queue a copy; never blocks."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        with self._lock:
            if self._queued_rows + len(x) > self._max_pending_rows:
                self.window.add({"dropped": 1})
                return
            self._queue.append((x, outputs, time.monotonic()))
            self._queued_rows += len(x)
            # Wake the worker for the first copy (it then gathers for GATHER_S) or a full batch, not for every copy:
            # a thread wake-up per request would cost the event loop ~13 µs each.
            if len(self._queue) == 1 or self._queued_rows >= self._batch_rows:
                self._lock.notify()

    def _work(self) -> None:  # runs on the shadow's own thread
        with contextlib.suppress(AttributeError, OSError):  # a shadow yields the CPU (Linux: per-thread nice)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            with self._lock:
                while not self._queue and not self._stopped:
                    self._lock.wait()
                # Gather copies into a batch: until it is full, or the oldest has waited GATHER_S.
                while not self._stopped and self._queued_rows < self._batch_rows and (
                        left := GATHER_S - (time.monotonic() - self._queue[0][2])) > 0:
                    self._lock.wait(left)
                if self._stopped:
                    return
                items: list[tuple[np.ndarray, dict[str, np.ndarray], float]] = []
                rows = 0
                while self._queue and (not items or rows + len(self._queue[0][0]) <= self._batch_rows):
                    item = self._queue.popleft()
                    items.append(item)
                    rows += len(item[0])
                self._queued_rows -= rows
            self._run(items)

    def _run(self, items: list[tuple[np.ndarray, dict[str, np.ndarray], float]]) -> None:
        version = self._resolve()
        session = version.session if version is not None and version.state == READY else None
        if session is None:
            with self._lock:
                self.window.add({"dropped": len(items)})
            return
        batch = items[0][0] if len(items) == 1 else np.concatenate([x for x, _, _ in items])
        try:
            result = session.run(batch)  # releases the GIL
        except Exception as exc:  # the shadow's failure is a figure, not an incident
            log.debug("%s v%d (shadow): %s", self.model, self.number, exc)
            with self._lock:
                self.window.add({"errors": len(items), "requests": len(items)})
            return
        done = time.monotonic()
        # Whole-batch comparisons: a few numpy calls per batch, not per request, so the shadow holds the GIL (which
        # the request path needs) as little as possible.
        primary = items[0][1] if len(items) == 1 else {
            name: np.concatenate([np.asarray(p[name]) for _, p, _ in items]) for name in items[0][1]}
        waits = done - np.fromiter((queued for _, _, queued in items), dtype=np.float64, count=len(items))
        figures: dict[str, float] = {"requests": len(items), "latency_s": float(waits.sum())}
        maxima = {"latency_s": float(waits.max())}
        if "label" in primary and "label" in result:
            figures["rows"] = len(batch)
            figures["agree"] = int((np.asarray(primary["label"]) == np.asarray(result["label"])).sum())
        name = _score_name(primary, result)
        if name is not None:
            a, b = np.asarray(primary[name], dtype=np.float64), np.asarray(result[name], dtype=np.float64)
            if a.shape == b.shape:
                diff = np.abs(a - b)
                figures["values"] = diff.size
                figures["abs_diff"] = float(diff.sum())
                maxima["abs_diff"] = float(diff.max(initial=0.0))
            else:
                figures["errors"] = len(items)
        with self._lock:
            self.window.add(figures, maxima=maxima)

    def status(self) -> ShadowStatus:
        with self._lock:
            window = self.window.read().sums
            total = dict(self.window.total)
        return ShadowStatus(self.number, self.sample, _comparisons(window, self.window.seconds),
                            _comparisons(total, None))

    def take(self) -> list[tuple[int, Bucket]]:
        """A worker's comparisons since it was last asked, for its supervisor's `merge`."""
        with self._lock:
            return self.window.take()

    def merge(self, buckets: list[tuple[int, Bucket]]) -> None:
        with self._lock:
            self.window.merge(buckets)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(5)


def _comparisons(sums: dict[str, float], seconds: float | None) -> Comparisons:
    requests = sums.get("requests", 0.0)
    return Comparisons(
        compared=int(requests - sums.get("errors", 0.0)),
        dropped=int(sums.get("dropped", 0.0)),
        errors=int(sums.get("errors", 0.0)),
        label_agreement=sums["agree"] / sums["rows"] if sums.get("rows") else None,
        mean_abs_diff=sums["abs_diff"] / sums["values"] if sums.get("values") else None,
        max_abs_diff=sums.get("max_abs_diff") if sums.get("values") else None,
        latency_ms_mean=1e3 * sums["latency_s"] / requests if requests and "latency_s" in sums else None,
        latency_ms_max=1e3 * sums["max_latency_s"] if "max_latency_s" in sums else None,
        seconds=seconds)
