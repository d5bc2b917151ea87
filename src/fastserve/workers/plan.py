"""What the supervisor decided, as the workers apply it: per model, the versions loaded, the primary, the canary and
the shadows. A plan holds each model it names whole; a worker's first plan names every model, later ones the models
that changed since the plan before (`base`): a worker that has not followed that one asks for the whole state."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from fastserve.config import CanaryOptions, load_model_config
from fastserve.registry import LoadedModel, LoadedVersion, Registry
from fastserve.registry.models import DISCOVERED, DRAINING, EVICTED, FAILED, READY, UNLOADED
from fastserve.routing.canary import Canary
from fastserve.routing.routes import routes_of

log = logging.getLogger("fastserve.workers")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """What a worker must hold of one model (compared with the entry sent before, to send only changes)."""

    path: str
    config: bytes | None  # its fastserve.toml as the supervisor read it
    loaded: dict[int, str]  # version -> its folder
    evicted: dict[int, str]
    primary: int | None
    canary: tuple[int, float, str | None] | None  # version, weight, sticky key
    shadows: dict[int, float]  # version -> sample


@dataclass(frozen=True, slots=True)
class Plan:
    seq: int
    base: int | None  # the plan this one changes (None: the whole state)
    loaded: bool  # whether the supervisor's first loading is done
    models: dict[str, ModelEntry]
    removed: list[str]


def model_entry(model: LoadedModel) -> ModelEntry:
    routes = routes_of(model)
    canary = routes.canary
    return ModelEntry(str(model.path), model.config_bytes,
                      {n: str(v.path) for n, v in model.versions.items() if v.state == READY},
                      {n: str(v.path) for n, v in model.versions.items() if v.state == EVICTED},
                      model.primary.number if model.primary is not None else None,
                      (canary.version, canary.weight, canary.sticky_key) if canary is not None else None,
                      {n: runner.sample for n, runner in routes.shadows.items()})


def model_entries(registry: Registry) -> dict[str, ModelEntry]:
    """Per model, what a worker must hold: the whole state."""
    return {name: model_entry(model) for name, model in registry.models.items()}


def whole_plan(registry: Registry, seq: int) -> Plan:
    return Plan(seq, None, registry.loaded, model_entries(registry), [])


def changes(before: dict[str, ModelEntry], now: dict[str, ModelEntry]) -> tuple[dict[str, ModelEntry], list[str]]:
    """The models whose entries differ from `before`, and those gone."""
    return {n: e for n, e in now.items() if before.get(n) != e}, [n for n in before if n not in now]


async def follow(registry: Registry, plan: Plan) -> list[str]:
    """Bring this worker's registry in line with `plan`: versions loaded first (without their gate: the supervisor
    ran it), then the primary, canary and shadows switched, then what the plan no longer holds retired (its queued
    requests finish). Returns what could not be followed, for the supervisor's log."""
    problems: list[str] = []
    whole = plan.base is None
    retired: list[LoadedVersion] = []
    evicted: list[LoadedVersion] = []  # of those, the ones the supervisor evicted (still wanted: loaded on demand)
    for name, wanted in plan.models.items():
        model = registry.models.get(name)
        path = Path(wanted.path)
        if model is None or model.path != path:
            model = registry.add(name, path, load_model_config(path))
        elif wanted.config != model.config_bytes:
            await registry.apply_config(model)
        async with model.lock:
            problems += await _load(model, wanted.loaded)
            _mark_evicted(model, wanted.evicted)
            _route(model, wanted)
            for number, version in model.versions.items():
                if version.state == READY and number not in wanted.loaded and (version is not model.primary
                                                                               or number in wanted.evicted):
                    version.state = DRAINING  # no new requests from here on (they wait for its next load)
                    retired.append(version)
                    if number in wanted.evicted:
                        evicted.append(version)
    gone = [n for n in registry.models if n not in plan.models] if whole else plan.removed
    for name in [n for n in gone if n in registry.models]:
        model = registry.models.pop(name)
        model.primary = None
        model.routes.stop()
        retired += [v for v in model.versions.values() if v.state == READY]
    registry.loaded = plan.loaded
    for version in retired:  # in the background: the plan is followed once no new request can reach them
        asyncio.get_running_loop().create_task(_retire(version, version in evicted))
    return problems


async def _retire(version: LoadedVersion, evicted: bool) -> None:
    await version.retire()
    if evicted:
        version.state = EVICTED


def _mark_evicted(model: LoadedModel, evicted: dict[int, str]) -> None:
    """Versions the supervisor evicted that this worker has not loaded: known, as evicted (a request for one asks
    the supervisor to load it)."""
    for number, where in evicted.items():
        version = model.versions.get(number)
        if version is None or version.path != Path(where):
            version = model.versions[number] = LoadedVersion(model.name, number, Path(where), model.config)
        if version.state in (DISCOVERED, UNLOADED, FAILED):
            version.state = EVICTED


async def _load(model: LoadedModel, loaded: dict[int, str]) -> list[str]:
    problems = []
    for number, where in sorted(loaded.items()):
        version = model.versions.get(number)
        if version is None or version.path != Path(where) or version.state == DRAINING:
            # (one being evicted finishes its draining apart: its requests go to this new load)
            version = model.versions[number] = LoadedVersion(model.name, number, Path(where), model.config)
        if version.state != READY:
            await asyncio.to_thread(version.load, gate=False)
            if version.state != READY:
                problems.append(f"{version.label}: {version.error}")
    return problems


def _route(model: LoadedModel, wanted: ModelEntry) -> None:
    primary = model.versions.get(wanted.primary) if wanted.primary is not None else None
    if primary is not None and primary.state in (READY, EVICTED) and primary is not model.primary:
        if model.primary is not None:
            model.swaps += 1
        model.primary = primary
    elif wanted.primary is None:
        model.primary = None
    routes = routes_of(model)
    canary = wanted.canary
    if canary is None:
        routes.canary = None
    else:
        number, weight, sticky = canary
        current = routes.canary
        # (A canary made from the config as the worker read it judges; a worker's never does: the supervisor does.)
        if current is None or current.judge or (current.version, current.sticky_key) != (number, sticky):
            routes.canary = Canary(CanaryOptions(number, weight, sticky), model.config.routing.guard, judge=False)
        else:
            current.weight = weight
    for number in [n for n in routes.shadows if n not in wanted.shadows]:
        routes.shadows.pop(number).stop()
    for number, sample in wanted.shadows.items():
        runner = routes.shadows.get(number)
        if runner is None:
            routes.add_shadow(number, sample)
        else:
            runner.sample = sample
