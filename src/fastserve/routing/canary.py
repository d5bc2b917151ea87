"""A model's canary: which requests it answers, and the guard that pulls it back when it does worse."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from fastserve._core import murmurhash3
from fastserve.config import CanaryOptions, GuardOptions
from fastserve.quality.monitor import Comparison
from fastserve.routing.windows import (
    GUARD_ALPHA,
    Bucket,
    Window,
    differ_by_chance,
    js_divergence,
    quantile_s,
    slower_than_chance,
)

_HEADER = "header:"
SLOW_CHECKS = 3


def key_position(key: Any) -> float:
    """A key's fixed place in [0, 1): the canary takes the keys below its weight, so raising the weight from w1 to
    w2 moves exactly the keys between w1 and w2 and no other (MurmurHash3: the same place in every process)."""
    return (murmurhash3(str(key)) & 0xFFFFFFFF) / 4294967296.0


@dataclass(frozen=True, slots=True)
class Sides:
    """A figure on the primary and on the canary."""

    primary: float
    canary: float

    def as_json(self) -> dict[str, float]:
        return {"primary": self.primary, "canary": self.canary}


@dataclass(frozen=True, slots=True)
class Evidence:
    """The answers the guard judged: the primary's and the canary's over its window."""

    window_s: float
    requests: Sides
    error_rate: Sides
    p99_ms: Sides
    divergence: float  # Jensen-Shannon, of the predicted labels

    def as_json(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "requests": self.requests.as_json(),
                "error_rate": self.error_rate.as_json(), "p99_ms": self.p99_ms.as_json(),
                "divergence": self.divergence}


@dataclass(frozen=True, slots=True)
class Tripped:
    """Why the guard pulled the canary back, and when: on its answers (`evidence`) or on live labels (`quality`)."""

    reasons: list[str]
    at: float
    evidence: Evidence | None = None
    quality: Comparison | None = None

    def as_json(self) -> dict[str, Any]:
        if self.quality is not None:
            return {"quality": self.quality.as_json(), "at": self.at, "reasons": self.reasons}
        return {**(self.evidence.as_json() if self.evidence is not None else {}), "reasons": self.reasons,
                "at": self.at}


class Canary:
    """Runtime state: changed by the admin API and the guard, read on every request of the model."""

    def __init__(self, options: CanaryOptions, guard: GuardOptions, *, judge: bool = True) -> None:
        """`judge=False`: a worker's, which keeps the evidence for its supervisor's guard (`take_evidence`)."""
        self.judge = judge
        self.version = options.version
        self.weight = options.weight
        self.sticky_key = options.sticky_key
        sticky = options.sticky_key or ""
        self.header = sticky[len(_HEADER):].lower().encode("latin-1") if sticky.startswith(_HEADER) else None
        self.field = sticky if sticky and self.header is None else None
        self.guard = guard
        self.windows = {False: Window(guard.window_s), True: Window(guard.window_s)}  # keyed by "is canary"
        self.tripped: Tripped | None = None
        self.quality: Comparison | None = None  # the last comparison on live labels (`[routing.guard] quality`)
        self.rollbacks = 0
        self._checked = 0.0
        self._since_check = 0
        self._slow_checks = 0

    def key(self, payload: Any, headers: list[tuple[bytes, bytes]]) -> Any:
        """The request's sticky key: the header, or the field of its first record (or first column value)."""
        if self.header is not None:
            for name, value in headers:
                if name == self.header:
                    return value.decode("latin-1")
            return None
        if self.field is None or type(payload) is not dict:
            return None
        records = payload.get("records")
        if type(records) is list and records and type(records[0]) is dict:
            return records[0].get(self.field)
        columns = payload.get("columns")
        if type(columns) is dict and type(column := columns.get(self.field)) is list and column:
            return column[0]
        return None

    def routes_to_canary(self, key: Any) -> bool:
        """Whether this request goes to the canary."""
        if self.weight <= 0:
            return False
        if key is None:
            return random.random() < self.weight
        return key_position(key) < self.weight

    def observe(self, on_canary: bool, latency_s: float, error: bool, labels: Any) -> Tripped | None:
        """Count one answered request; every 32 answers or half second, check the guard. Returns the evidence when
        it trips."""
        now = time.monotonic()
        self.windows[on_canary].add({"requests": 1, "errors": int(error)}, now, latency_s=latency_s, labels=labels)
        self._since_check += 1
        if not self.judge or not self.guard.enabled or self.weight <= 0 or (
                self._since_check < 32 and now - self._checked < 0.5):
            return None
        self._checked, self._since_check = now, 0
        return self.check(now)

    def take_evidence(self) -> dict[bool, list[tuple[int, Bucket]]]:
        return {side: window.take() for side, window in self.windows.items()}

    def add_evidence(self, evidence: dict[bool, list[tuple[int, Bucket]]]) -> None:
        """A worker's answers since its last report, counted as this process's own."""
        for side, buckets in evidence.items():
            self.windows[side].merge(buckets)
            self._since_check += int(sum(b.sums.get("requests", 0) for _, b in buckets))

    def pending(self) -> bool:
        """Whether answers came since the guard last looked (a supervisor's, after merging its workers')."""
        return self._since_check > 0

    def check(self, now: float | None = None) -> Tripped | None:
        g = self.guard
        self._since_check = 0
        primary, canary = self.windows[False].read(now), self.windows[True].read(now)
        n_p, n_c = primary.sums.get("requests", 0), canary.sums.get("requests", 0)
        if n_p < g.min_requests or n_c < g.min_requests:
            return None
        err_p, err_c = primary.sums.get("errors", 0) / n_p, canary.sums.get("errors", 0) / n_c
        p99_p, p99_c = quantile_s(primary.latency, 0.99), quantile_s(canary.latency, 0.99)
        divergence = js_divergence(canary.labels, primary.labels)
        evidence = Evidence(g.window_s, Sides(int(n_p), int(n_c)), Sides(round(err_p, 6), round(err_c, 6)),
                            Sides(round((p99_p or 0) * 1e3, 3), round((p99_c or 0) * 1e3, 3)), round(divergence, 6))
        reasons = []
        if err_c - err_p > g.max_error_rate_increase:
            reasons.append(f"error rate {err_c:.2%} vs {err_p:.2%} on the primary "
                           f"(margin {g.max_error_rate_increase:.2%})")
        slow = False
        if p99_p is not None and p99_c is not None:
            limit = max(p99_p * g.max_p99_ratio, p99_p + g.p99_slack_ms / 1e3)
            slow = p99_c > limit and slower_than_chance(canary.latency, primary.latency, limit)
        # A p99 over a few hundred answers is one scheduling spike away from tripping: the canary's share of answers
        # over the limit is tested against the primary's, and must stay higher on SLOW_CHECKS checks in a row.
        self._slow_checks = self._slow_checks + 1 if slow else 0
        if self._slow_checks >= SLOW_CHECKS:
            reasons.append(f"p99 {(p99_c or 0) * 1e3:.2f} ms vs {(p99_p or 0) * 1e3:.2f} ms on the primary (margin "
                           f"{g.max_p99_ratio:g}x, more answers over it than chance explains, on {SLOW_CHECKS} "
                           "checks in a row)")
        if divergence > g.max_divergence and not differ_by_chance(canary.labels, primary.labels, n_p + n_c):
            reasons.append(f"predicted labels diverge from the primary's: Jensen-Shannon {divergence:.3f} > "
                           f"{g.max_divergence:g}, and more than chance explains (G-test, p < {GUARD_ALPHA:g})")
        if not reasons:
            return None
        self.weight = 0.0
        self.rollbacks += 1
        self.tripped = Tripped(reasons, time.time(), evidence=evidence)
        return self.tripped

    def status(self) -> dict[str, Any]:
        """The canary as a model's status shows it."""
        out: dict[str, Any] = {"version": self.version, "weight": self.weight, "sticky_key": self.sticky_key,
                               "rollbacks": self.rollbacks}
        if self.tripped is not None:
            out["tripped"] = self.tripped.as_json()
        if self.quality is not None:
            out["quality"] = self.quality.as_json()
        return out
