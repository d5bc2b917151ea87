"""Admission control ahead of the body: under overload the time a request waits goes before any handler sees it
(in socket buffers while the event loop works through its backlog), where a queue's deadline check cannot see it.

The event loop's lag estimates that wait: how late a 2 ms timer fires, at its least over 50 ms windows (a standing
backlog delays every tick; a burst, or the process losing its core for a moment, delays a few, and is not
overload). For each model with a `latency_slo_ms`, a share of its predict requests is admitted, steered after each
window towards keeping the lag under half the SLO: `share <- 0.5 share + 0.5 min(1, (SLO / 2) / lag)`. The rest
are refused at their headers, with 503 + Retry-After and without reading or decoding their body, a fraction of the
cost of serving them. Refusing everything once behind would not do: a flood of cheap refusals alone keeps the loop
behind, and nothing would be served. Admitted requests then meet the batcher's own deadline check.
"""

from __future__ import annotations

import asyncio
import random
from time import monotonic_ns
from typing import TYPE_CHECKING

from fastserve.http.predict import predict_target

if TYPE_CHECKING:
    from fastserve.registry import Registry

TICK_NS = 2_000_000
WINDOW_TICKS = 25
FLOOR_NS = 1_000_000  # lag under this admits everything: the fast path is one comparison
MIN_SHARE = 0.01  # never refuse everything: a trickle keeps measuring whether the model can serve again


class Admission:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.lag_ns = 0
        self.shares: dict[int, float] = {}  # target lag (ns, half an SLO) -> share of requests admitted

    async def watch(self) -> None:
        """Runs on the loop for the server's life."""
        while True:
            least = None
            for _ in range(WINDOW_TICKS):
                started = monotonic_ns()
                await asyncio.sleep(TICK_NS / 1e9)
                late = monotonic_ns() - started - TICK_NS
                least = late if least is None else min(least, late)
            lag = self.lag_ns = max(0, least or 0)
            for target, share in self.shares.items():
                wanted = min(1.0, target / lag) if lag > 0 else 1.0
                self.shares[target] = max(MIN_SHARE, 0.5 * share + 0.5 * wanted)

    def refusal(self, path: str) -> str | None:
        """Why a request to `path` is refused now, or None to admit it."""
        lag = self.lag_ns
        if lag <= FLOOR_NS:
            return None
        target = predict_target(path)
        model = self.registry.models.get(target[0]) if target is not None else None
        primary = model.primary if model is not None else None
        slo_ms = primary.config.batching.latency_slo_ms if primary is not None else None
        if slo_ms is None:
            return None
        half = int(slo_ms * 5e5)
        share = self.shares.setdefault(half, 1.0)
        if share >= 1.0 or random.random() < share:
            return None
        return (f"the server is {lag / 1e6:.1f} ms behind, against {model.name!r}'s "  # type: ignore[union-attr]
                f"{slo_ms:g} ms latency SLO, and admits {share:.0%} of its requests; retry later")
