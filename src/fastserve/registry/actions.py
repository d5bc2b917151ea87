"""The operators' calls on a model's versions (admin API, `fastserve models`): load and keep, unload and hold out,
promote, roll back. Each runs under the model's lock; the registry's own syncing with the repository respects what
they decided (`kept`, `held_out`, `pinned`)."""

from __future__ import annotations

from fastserve.exceptions import OperationRefused
from fastserve.registry.lifecycle import Registry
from fastserve.registry.models import DRAINING, READY, LoadedModel


async def load_version(registry: Registry, name: str, number: int) -> LoadedModel:
    """Load (and gate) a version and keep it loaded whatever the policy, until it is unloaded."""
    model = registry.model(name)
    async with model.lock:
        version = registry.version(model, number)
        await registry.ensure_loaded(model, version)
        model.kept.add(number)
        model.choose_primary()
    return model

async def unload_version(registry: Registry, name: str, number: int) -> LoadedModel:
    """Unload a version and keep it unloaded; the primary moves to another ready version first."""
    model = registry.model(name)
    async with model.lock:
        version = registry.version(model, number)
        others = [v for v in model.versions.values() if v.state == READY and v is not version]
        if version is model.primary and not others:
            raise OperationRefused(f"{version.label} is the only version serving; load or promote another first",
                                   detail={"model": name, "version": number})
        model.kept.discard(number)
        model.held_out.add(number)
        if model.pinned == number:
            model.pinned = None
        if version.state == READY:
            version.state = DRAINING
            model.choose_primary()
            await version.retire()
        model.event("unloaded", number, "by an operator")
    return model

async def promote(registry: Registry, name: str, number: int) -> LoadedModel:
    """Make a version the primary (loading and gating it first when needed)."""
    model = registry.model(name)
    async with model.lock:
        version = registry.version(model, number)
        await registry.ensure_loaded(model, version)
        model.pinned = number
        model.choose_primary()
        model.event("promoted", number, "by an operator")
    return model

async def rollback(registry: Registry, name: str) -> LoadedModel:
    """Make the previous primary the primary again."""
    model = registry.model(name)
    async with model.lock:
        current = model.primary.number if model.primary else None
        history = [n for n in model.primaries if n in model.versions]
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise OperationRefused(f"model {name!r} has no previous primary to roll back to",
                                   detail={"model": name})
        previous = history[-1]
        version = model.versions[previous]
        await registry.ensure_loaded(model, version)
        model.primaries = history
        model.pinned = previous
        model.choose_primary()
        model.event("rolled_back", previous, f"from v{current}" if current is not None else "")
    return model
