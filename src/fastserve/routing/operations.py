"""Operators' calls by name, as the admin API and a supervisor's workers send them: the registry's (load, unload,
promote, roll back, reload) and routing's own (canary and shadows)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastserve.config import CanaryOptions
from fastserve.exceptions import OperationRefused
from fastserve.registry import LoadedModel, Registry, actions
from fastserve.routing.canary import Canary
from fastserve.routing.routes import routes_of

REGISTRY_OPERATIONS: dict[str, Callable[..., Awaitable[LoadedModel]]] = {
    "load_version": actions.load_version, "unload_version": actions.unload_version, "promote": actions.promote,
    "rollback": actions.rollback}
OPERATIONS = (*REGISTRY_OPERATIONS, "set_canary", "remove_canary", "promote_canary", "add_shadow", "remove_shadow",
              "reload")


async def perform(registry: Registry, operation: str, *args: Any) -> dict[str, Any]:
    """Run one operation; the answer is the model's status (every model's, for `reload`)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if operation == "reload":
        await registry.sync()
        return {"models": [m.status() for _, m in sorted(registry.models.items())]}
    calls = REGISTRY_OPERATIONS if operation in REGISTRY_OPERATIONS else ROUTING_OPERATIONS
    model = await calls[operation](registry, *args)
    status: dict[str, Any] = model.status()
    return status


async def set_canary(registry: Registry, name: str, version: int | None, weight: float | None,
                     sticky_key: str | None) -> LoadedModel:
    """Start a canary, or change its weight (or sticky key). Its version is loaded and gated first."""
    model = registry.model(name)
    routes = routes_of(model)
    async with model.lock:
        current = routes.canary
        number = version if version is not None else (current.version if current else None)
        if number is None:
            raise OperationRefused(f"model {name!r} has no canary: give its `version`", detail={"model": name})
        target = registry.version(model, number)
        if model.primary is target:
            raise OperationRefused(f"v{number} is the primary; a canary must be another version")
        await registry.ensure_loaded(model, target)
        if current is None or current.version != number or (sticky_key is not None
                                                               and sticky_key != current.sticky_key):
            sticky = sticky_key if sticky_key is not None else (current.sticky_key if current else None)
            options = CanaryOptions(version=number, weight=weight if weight is not None else 0.0,
                                    sticky_key=sticky)
            routes.canary = Canary(options, model.config.routing.guard)
        elif weight is not None:
            current.weight = weight
        canary = routes.canary
        if canary is not None:
            model.event("canary", number, f"weight {canary.weight:g}"
                        + (f", sticky on {canary.sticky_key}" if canary.sticky_key else ""))
    return model


async def remove_canary(registry: Registry, name: str) -> LoadedModel:
    model = registry.model(name)
    routes = routes_of(model)
    async with model.lock:
        if routes.canary is not None:
            model.event("canary_removed", routes.canary.version)
            routes.canary = None
    return model


async def promote_canary(registry: Registry, name: str) -> LoadedModel:
    """The canary becomes the primary, and there is no canary any more."""
    model = registry.model(name)
    routes = routes_of(model)
    if routes.canary is None:
        raise OperationRefused(f"model {name!r} has no canary to promote", detail={"model": name})
    number = routes.canary.version
    await actions.promote(registry, name, number)
    async with model.lock:
        routes.canary = None
    return model


async def add_shadow(registry: Registry, name: str, version: int, sample: float) -> LoadedModel:
    model = registry.model(name)
    routes = routes_of(model)
    async with model.lock:
        target = registry.version(model, version)
        if model.primary is target:
            raise OperationRefused(f"v{version} is the primary; a shadow must be another version")
        await registry.ensure_loaded(model, target)
        routes.add_shadow(version, sample)
        model.event("shadow", version, f"sample {sample:g}")
    return model


async def remove_shadow(registry: Registry, name: str, version: int) -> LoadedModel:
    model = registry.model(name)
    routes = routes_of(model)
    async with model.lock:
        runner = routes.shadows.pop(version, None)
        if runner is None:
            raise OperationRefused(f"v{version} is not a shadow of {name!r}", detail={"model": name})
        runner.stop()
        model.event("shadow_removed", version)
    return model


ROUTING_OPERATIONS: dict[str, Callable[..., Awaitable[LoadedModel]]] = {
    "set_canary": set_canary, "remove_canary": remove_canary, "promote_canary": promote_canary,
    "add_shadow": add_shadow, "remove_shadow": remove_shadow}
