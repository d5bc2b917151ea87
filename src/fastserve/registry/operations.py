"""Views of the registry as the API answers them: the listing of models, the drift and the quality reports."""

from __future__ import annotations

import functools
from typing import Any

from fastserve.quality.store import StoreStatus
from fastserve.registry.feedback import OUTCOMES
from fastserve.registry.lifecycle import Registry


def listing(registry: Registry) -> dict[str, Any]:
    """`GET /v1/models`."""
    return {"models": [
        {"name": m.name, "ready": m.ready, "primary": m.primary.number if m.primary else None,
         "versions": [{"version": v.number, "state": v.state} for _, v in sorted(m.versions.items())]}
        for _, m in sorted(registry.models.items())
    ]}


def drift_report(registry: Registry, name: str) -> dict[str, Any]:
    """`GET /v1/models/{name}/drift`: per version, its drift status, the last window's scores per column, and the
    scores since load."""
    model = registry.model(name)
    return {"model": model.name, "versions": [
        {"version": n, "state": v.state, "drift": v.drift.report(),
         "quality_status": v.quality.status if v.quality else None, **({"why": v.drift.why} if v.drift.why else {})}
        for n, v in sorted(model.versions.items())]}


def quality_report(registry: Registry, name: str, stores: list[StoreStatus] | None = None) -> dict[str, Any]:
    """`GET /v1/models/{name}/quality`: per version, its live quality against labels, by window and since load,
    beside its reference; and the store of answers awaiting labels (`stores`: each worker's, with workers)."""
    model = registry.model(name)
    if stores is None:
        stores = [model.store.status()] if model.store is not None else []
    return {"model": model.name, "feedback": model.config.feedback.enabled,
            "store": functools.reduce(StoreStatus.plus, stores).as_json() if stores else None,
            "ids": {outcome: model.feedback_ids[outcome] for outcome in OUTCOMES},
            "versions": [{"version": n, "state": v.state, "quality": v.quality.report() if v.quality else None,
                          **({} if v.quality else {"why": "its outputs are neither classes nor a prediction, or it "
                                                          "was never loaded"})}
                         for n, v in sorted(model.versions.items())]}
