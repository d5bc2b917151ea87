"""Operators' calls on the registry by name, as the admin API and a supervisor's workers send them."""

from __future__ import annotations

from typing import Any

from fastserve.registry.lifecycle import Registry

OPERATIONS = ("load_version", "unload_version", "promote", "rollback", "set_canary", "remove_canary",
              "promote_canary", "add_shadow", "remove_shadow", "reload")


async def perform(registry: Registry, operation: str, *args: Any) -> dict[str, Any]:
    """Run one operation; the answer is the model's status (every model's, for `reload`)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if operation == "reload":
        await registry.sync()
        return {"models": [m.status() for _, m in sorted(registry.models.items())]}
    model = await getattr(registry, operation)(*args)
    return model.status()


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
