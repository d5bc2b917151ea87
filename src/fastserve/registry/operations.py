"""Views of the registry as the API answers them: the listing of models and the drift report."""

from __future__ import annotations

from typing import Any

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
        {"version": n, "state": v.state, "drift": v.drift.report() if v.drift else None,
         **({} if v.drift else {"why": "no profile.json in the version folder, or [drift] enabled = false"})}
        for n, v in sorted(model.versions.items())]}
