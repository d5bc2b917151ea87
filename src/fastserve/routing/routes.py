"""A model's routes: its canary (with the guard that can pull it back) and its shadows. The registry holds one per
model without knowing what is in it (`registry.models.Routes`); routing, http and the workers reach it through
`routes_of`."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastserve.quality.monitor import compare
from fastserve.registry.models import LoadedModel
from fastserve.routing.canary import Canary, Tripped
from fastserve.routing.shadow import ShadowRunner
from fastserve.routing.windows import GUARD_ALPHA

log = logging.getLogger("fastserve.routing")


class ModelRoutes:
    __slots__ = ("canary", "model", "rollbacks", "shadows")

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.canary: Canary | None = None
        self.shadows: dict[int, ShadowRunner] = {}
        self.rollbacks = 0  # canaries the guard pulled back

    def apply_config(self) -> None:
        """Canary and shadows as the model's config says (the admin API changes them at runtime afterwards)."""
        routing = self.model.config.routing
        self.canary = Canary(routing.canary, routing.guard) if routing.canary else None
        self.stop()
        for shadow in routing.shadows:
            self.add_shadow(shadow.version, shadow.sample)

    def add_shadow(self, number: int, sample: float) -> None:
        old = self.shadows.pop(number, None)
        if old is not None:
            old.stop()
        versions = self.model.versions
        self.shadows[number] = ShadowRunner(self.model.name, number, lambda: versions.get(number), sample,
                                            self.model.config.routing.guard.window_s)

    def stop(self) -> None:
        """Stop every shadow (the model is going, or its config replaces them)."""
        for runner in self.shadows.values():
            runner.stop()
        self.shadows = {}

    def versions(self) -> set[int]:
        """Versions routing needs loaded: the canary and the shadows."""
        return {*self.shadows, *([self.canary.version] if self.canary else [])}

    def record(self, on_canary: bool, seconds: float, error: bool, labels: Any) -> None:
        """An answer (or a failed run) of the primary or the canary, for the guard; when it trips, why is recorded."""
        canary = self.canary
        if canary is None:
            return
        evidence = canary.observe(on_canary, seconds, error, labels.tolist() if labels is not None else ())
        if evidence is not None:
            self.tripped(evidence)

    def judge_quality(self) -> bool:
        """After labels were scored: with `[routing.guard] quality = true`, the canary's recent loss against the
        primary's (`quality.monitor.compare`, two-sided at the guard's alpha): worse pulls it back (returns True),
        better is reported in its status."""
        canary = self.canary
        if canary is None or not canary.guard.quality or not canary.guard.enabled or canary.weight <= 0:
            return False
        primary, candidate = self.model.primary, self.model.versions.get(canary.version)
        if primary is None or candidate is None or primary.quality is None or candidate.quality is None:
            return False
        verdict = compare(candidate.quality, primary.quality, GUARD_ALPHA, canary.guard.min_requests)
        if verdict is None:
            return False
        canary.quality = verdict
        if verdict.verdict != "worse":
            return False
        canary.weight = 0.0
        canary.rollbacks += 1
        canary.tripped = Tripped([
            f"{verdict.loss} on live labels {verdict.canary} vs {verdict.primary} on the primary, worse beyond "
            f"chance (Welch z {verdict.z}, two-sided p < {GUARD_ALPHA:g})"], time.time(), quality=verdict)
        self.tripped(canary.tripped)
        return True

    def tripped(self, tripped: Tripped) -> None:
        """The canary's guard pulled it back (weight 0): counted, and why recorded."""
        assert self.canary is not None
        self.rollbacks += 1
        why = "; ".join(tripped.reasons)
        self.model.event("canary_rolled_back", self.canary.version, why)
        log.warning("%s: canary v%d pulled back (weight 0): %s", self.model.name, self.canary.version, why)

    def status(self) -> dict[str, Any]:
        return {"canary": self.canary.status() if self.canary else None,
                "shadows": [self.shadows[n].status().as_json() for n in sorted(self.shadows)]}


def routes_of(model: LoadedModel) -> ModelRoutes:
    """The model's routes, as routing made them (`Registry(..., routes=ModelRoutes)`)."""
    routes = model.routes
    assert isinstance(routes, ModelRoutes), "a registry that routes is made with routes=ModelRoutes"
    return routes
