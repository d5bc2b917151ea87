"""What a model answered, kept by request id until its ground truth arrives: rows in a ring sized from a memory
budget (`_core.answer_ring`), with a time to live and a sample rate. A label joins the row its id names; rows that
fell out are counted, and their ids remembered in a filter of fixed size so a late label is told apart from an id
never seen."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from fastserve._core.answer_ring import LABEL_NOT_INTEGER, AnswerRing
from fastserve.config import FeedbackOptions

# A request's own cost beyond its rows: its dict entry, key string and slot (tracemalloc: tests/quality/test_store.py).
REQUEST_BYTES = 160
ROW_BYTES = 4 + 8 + 8 + 4 + 8  # version, time, label, row count, id slot (and 4 bytes a score)
FILTER_SHARE = 0.125  # of the budget, for the filter of ids that fell out
JOINED, UNKNOWN, EXPIRED, REPEATED = "joined", "unknown", "expired", "repeated"


@dataclass(frozen=True, slots=True)
class Joined:
    """Rows whose labels arrived, of one version: what it predicted, and where each row's label is in the
    request."""

    version: int
    predicted: np.ndarray  # predicted labels (their values: integers, or strings as objects)
    scores: np.ndarray  # float32, rows x width: class probabilities, or a regressor's prediction
    places: np.ndarray  # each row's index in the ids (and labels) of the feedback


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What a store holds and let go; with workers, each worker's, added up (`plus`)."""

    max_bytes: int
    bytes: int
    ttl_seconds: float
    sample: float
    capacity_rows: int
    kept_requests: int
    fell_out: int
    stored: int
    sampled_out: int
    too_large: int
    stores: int = 1

    def plus(self, other: StoreStatus) -> StoreStatus:
        """Two processes' stores as one: counts and bytes add up (each worker has a budget of its own); the
        settings are the model's."""
        return replace(self, **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)
                                if f.name not in ("ttl_seconds", "sample")})

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Store:
    """One model's answers awaiting labels. `put` runs on the request path once per answered request; `join` when
    labels come. Memory stays within `options.max_bytes` whatever the traffic."""

    def __init__(self, options: FeedbackOptions, width: int) -> None:
        self.options = options
        self.width = width
        filter_bytes = int(options.max_bytes * FILTER_SHARE)
        row_bytes = ROW_BYTES + 4 * width
        self.ring = AnswerRing(max(1, (options.max_bytes - filter_bytes) // (row_bytes + REQUEST_BYTES)), width,
                               filter_bytes)
        self.row_bytes = row_bytes
        self.names: dict[str, int] = {}  # string labels -> codes
        self.name_list: list[str] = []
        self.counts = {"stored": 0, "sampled_out": 0, "too_large": 0}
        self._sample = options.sample
        self._random = random.random

    @property
    def capacity(self) -> int:
        return self.ring.capacity

    @property
    def nbytes(self) -> int:
        """Memory held now: the rows allocated, the ids kept, and the filter."""
        ring = self.ring
        return ring.size * self.row_bytes + len(ring.where) * REQUEST_BYTES + ring.filter_bytes

    def put(self, request_id: str, version: int, outputs: dict[str, np.ndarray]) -> None:
        """Keep a request's rows under its id (sampled by `options.sample`)."""
        if self._sample < 1.0 and self._random() >= self._sample:
            self.counts["sampled_out"] += 1
            return
        kept = self.ring.keep(request_id, version, outputs, time.monotonic())
        if kept == LABEL_NOT_INTEGER:  # text labels (or outputs that are not arrays): coded here
            kept = self._put_coded(request_id, version, outputs)
        if kept < 0:
            self.counts["too_large"] += 1
            return
        self.counts["stored"] += 1

    def _put_coded(self, request_id: str, version: int, outputs: dict[str, np.ndarray]) -> int:
        """What `keep` leaves: text labels, coded as integers here (their names kept), or outputs that are not plain
        arrays; then kept as `keep` keeps the others (which output holds the scores is its choice alone)."""
        arrays = {name: np.asarray(value).view(np.ndarray) for name, value in outputs.items()}
        label = arrays.get("label")
        if label is not None:
            if label.dtype.kind not in "iub":
                label = np.array([self._code(str(v)) for v in label.tolist()])
            arrays["label"] = label.astype(np.int64)
        return self.ring.keep(request_id, version, arrays, time.monotonic())

    def _code(self, name: str) -> int:
        code = self.names.get(name)
        if code is None:
            code = self.names[name] = len(self.name_list)
            self.name_list.append(name)
        return code

    def join(self, ids: list[str], now: float | None = None) -> tuple[list[str], list[Joined]]:
        """Each id's outcome (joined, unknown, expired, repeated) and the joined rows by version. A joined row is
        marked taken: its label counts once."""
        now = time.monotonic() if now is None else now
        ttl = self.options.ttl_seconds
        ring = self.ring
        times, rows, versions = ring.times, ring.rows, ring.versions
        outcomes: list[str] = []
        found: dict[int, int] = {}  # row position -> its place in `ids`
        for i, key in enumerate(ids):
            start, row = self._find(key)
            if start is None:
                outcome = EXPIRED if self._fell_out(key) else UNKNOWN
            elif now - times[start] > ttl:
                outcome = EXPIRED
            elif row >= rows[start]:
                outcome = UNKNOWN
            elif start + row in found or versions[start + row] < 0:
                outcome = REPEATED
            else:
                found[start + row] = i
                outcome = JOINED
            outcomes.append(outcome)
        return outcomes, self._taken(found)

    def _taken(self, found: dict[int, int]) -> list[Joined]:
        """The rows at `found`'s positions, grouped by version, marked taken (negative until written over)."""
        if not found:
            return []
        ring = self.ring
        positions = np.fromiter(found, np.int64, len(found))
        places = np.fromiter(found.values(), np.int64, len(found))
        versions = ring.versions[positions]
        ring.versions[positions] = -1 - versions
        out = []
        for version in np.unique(versions).tolist():
            mine = versions == version
            codes = ring.labels[positions[mine]]
            predicted = (np.array([self.name_list[c] for c in codes.tolist()], dtype=object) if self.name_list
                         else codes.copy())
            out.append(Joined(int(version), predicted, ring.scores[positions[mine]].copy(), places[mine]))
        return out

    def _fell_out(self, key: str) -> bool:
        if self.ring.fell_out_recently(key):
            return True
        named = _row_of(key)
        return named is not None and self.ring.fell_out_recently(named[0])

    def _find(self, key: str) -> tuple[int | None, int]:
        """(the request's first row, the row within it) for `id` (a request of one row) or `id:row`."""
        where, rows = self.ring.where, self.ring.rows
        start = where.get(key)
        if start is not None:
            return (start, 0) if rows[start] == 1 else (None, 0)
        named = _row_of(key)
        if named is not None:
            start = where.get(named[0])
            if start is not None:
                return start, named[1]
        return None, 0

    def status(self) -> StoreStatus:
        return StoreStatus(self.options.max_bytes, self.nbytes, self.options.ttl_seconds, self.options.sample,
                           self.capacity, len(self.ring.where), self.ring.fell_out, **self.counts)


def _row_of(key: str) -> tuple[str, int] | None:
    """`id:row` as (id, row); None for a key without a row."""
    head, sep, tail = key.rpartition(":")
    return (head, int(tail)) if sep and tail.isdigit() and len(tail) < 10 else None
