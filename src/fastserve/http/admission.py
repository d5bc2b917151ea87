"""Admission at the headers for models with a latency SLO: a limit on how many of a model's requests are in the
server at once, adapted to the latency they get (AIMD). Why at the headers, and how the limit moves:
docs/architecture.md, "Admission at the headers".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from fastserve.http.errors import error_body, raw_answer, v2_error_body
from fastserve.http.predict import predict_target
from fastserve.http.v2.infer import infer_target

if TYPE_CHECKING:
    from fastserve.registry import Registry

START_LIMIT = 64
# Time from a request's last body byte to its answer's that admitted requests should keep to; the rest of the SLO is
# left to the wait before the server reads a request, which it cannot measure.
TARGET_SHARE_OF_SLO = 1 / 3
SLOW_SHARE = 0.05  # a round with more answers than this over the target shrinks the limit
USED_SHARE = 0.5  # a round grows the limit only if this share of it was in the server at once
MIN_LIMIT = 2  # a couple of requests always get in: a batch still forms, and the latency keeps being measured
MAX_LIMIT = 4096
_PATHS_KEPT = 4096  # paths remembered with their model (cleared when full: clients choose paths)


class AdmissionLimit:
    """One model's admission: requests in the server, the limit, and the current round of answers."""

    def __init__(self, name: str, slo_ms: float) -> None:
        self.name = name
        self.slo_ms = slo_ms
        self.target_s = slo_ms * TARGET_SHARE_OF_SLO / 1e3
        self.limit = float(START_LIMIT)
        self.in_flight = 0
        self.refused = 0
        self._answers = self._slow = self._peak = 0
        why = (f"{name!r} has as many requests in the server as it can answer within its {slo_ms:g} ms latency SLO; "
               "retry later")
        self._bodies = (orjson.dumps(error_body("overloaded", why)), orjson.dumps(v2_error_body(why)))
        self._keep_open = tuple(raw_answer(503, body, retry_after=1) for body in self._bodies)

    def answer(self, v2: bool, close: bool = False) -> bytes:
        """The 503 + Retry-After for a refused request, in its route's error format; the connection kept unless
        `close`."""
        if close:
            return raw_answer(503, self._bodies[v2], retry_after=1, close=True)
        return self._keep_open[v2]

    def full(self) -> bool:
        """Whether a request arriving now is refused (counted as such)."""
        if self.in_flight >= self.limit:
            self.refused += 1
            return True
        return False

    def release(self, seconds: float | None) -> None:
        """An admitted request is answered after `seconds` (None: its connection was lost first)."""
        if self.in_flight > self._peak:
            self._peak = self.in_flight
        self.in_flight -= 1
        if seconds is None:
            return
        self._answers += 1
        self._slow += seconds > self.target_s
        if self._answers >= self.limit:
            if self._slow > SLOW_SHARE * self._answers:
                self.limit = max(MIN_LIMIT, self.limit * 0.8)
            elif self._peak >= USED_SHARE * self.limit:
                self.limit = min(MAX_LIMIT, self.limit + 1)
            self._answers = self._slow = self._peak = 0


class Admission:
    """The limits of the registry's models that have a `latency_slo_ms`, found from a request's path."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.limits: dict[str, AdmissionLimit] = {}
        self._paths: dict[bytes, tuple[str, bool] | None] = {}  # raw path -> (model, is V2) or None

    def limit_for(self, url: bytes) -> tuple[AdmissionLimit, bool] | None:
        """The limit for a prediction request to `url` and whether it speaks V2, or None when none applies."""
        try:
            found = self._paths[url]
        except KeyError:
            found = self._paths[url] = self._find(url)
        if found is None:
            return None
        name, v2 = found
        model = self.registry.models.get(name)
        primary = model.primary if model is not None else None
        slo_ms = primary.config.batching.latency_slo_ms if primary is not None else None
        if slo_ms is None:
            return None
        limit = self.limits.get(name)
        if limit is None or limit.slo_ms != slo_ms:
            limit = self.limits[name] = AdmissionLimit(name, slo_ms)
        return limit, v2

    def _find(self, url: bytes) -> tuple[str, bool] | None:
        if len(self._paths) >= _PATHS_KEPT:
            self._paths.clear()
        path = url.split(b"?", 1)[0].decode("latin-1")
        # A version named in the path is gated with its model: they share the server's time.
        native = predict_target(path)
        if native is not None:
            return native[0], False
        v2 = infer_target(path)
        return (v2[0], True) if v2 is not None else None
