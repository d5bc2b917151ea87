"""Keeps the loaded versions in line with the repository and with operators' calls: loads, gates, swaps, drains.

All of it runs on the event loop, one model at a time under that model's lock; loading runs on a worker thread, so
requests keep flowing meanwhile. A swap replaces the model's primary reference at once; a retired version stops
taking requests, finishes the ones it holds, and only then releases its session.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastserve.config import ModelConfig, for_server, load_model_config
from fastserve.exceptions import ConfigError, ModelNotFound, ModelNotReady, OperationRefused, VersionNotFound
from fastserve.registry.gate_cache import GateCache
from fastserve.registry.models import (
    DISCOVERED,
    DRAINING,
    EVICTED,
    FAILED,
    READY,
    UNLOADED,
    LoadedModel,
    LoadedVersion,
    NoRoutes,
    Routes,
    needs_reload,
    with_config,
)
from fastserve.registry.repository import (
    Look,
    Watcher,
    config_fingerprint,
    folder_fingerprint,
    model_folders,
    version_folders,
)

log = logging.getLogger("fastserve.registry")


def freeze_loaded() -> None:
    """What loading made (modules, sessions, configs) leaves the cycle collector's sight: its full collections,
    which stop the event loop, then scan only what serving allocates (25 ms on the bundled models without this).
    Reference counting still frees a version unloaded later."""
    gc.collect()
    gc.freeze()


class Registry:
    """Every model the server knows, keyed by name, and the operations that change them."""

    def __init__(self, models_dir: Path, device: str | None = None, max_threads: int | None = None,
                 max_loaded: int | None = None, *, lazy: bool = False, state_dir: Path | None = None,
                 serves: bool = True, routes: Callable[[LoadedModel], Routes] = lambda _: NoRoutes()) -> None:
        """`device` overrides every model's; `max_threads` caps each session's intra-op threads (worker processes
        share the cores); `max_loaded` is the budget of loaded versions (least recently used evicted past it);
        `lazy`: versions are loaded by their first request, not at start (nor when published); `state_dir`: where
        gate results are kept between loads (and restarts); `serves=False` in the supervisor of worker processes:
        versions are gated, then their sessions released (the workers hold their own)."""
        self.models_dir = models_dir
        self.serves = serves
        self.make_routes = routes  # a model's canary and shadows: routing's (`routing/routes.py`)
        self.device = device
        self.max_threads = max_threads
        self.max_loaded = max_loaded
        self.lazy = lazy
        self.gates = GateCache(state_dir) if state_dir is not None else None
        self._room = asyncio.Lock()  # under a budget: one load (and the evictions it needs) at a time
        # In a worker process: loads on demand are the supervisor's decision (`warm` asks it).
        self.remote_warm: Callable[[str, int], Awaitable[None]] | None = None
        self.models: dict[str, LoadedModel] = {}
        self.loaded = False
        self._looked: dict[Path, Any] = {}  # a new folder's files at the previous look: loaded once they stay put
        self._refused: dict[Path, bytes | None] = {}  # configs of new models already refused (logged once)
        self._sync_lock = asyncio.Lock()
        self._watcher = Watcher()
        self._synced: Look = {}  # per model, the look it was last brought in line with, nothing pending
        # Models asked for since this was last taken (each second): what is looked at for recency, and what a
        # worker hands its supervisor, without a pass over every model.
        self.used: set[str] = set()
        # Models that loaded a version at some point (some may hold none any more): the budget's passes look at
        # these, not at every model (10,000 models, 100 loaded).
        self._holding: set[str] = set()
        # Models whose versions a load or an eviction changed since the supervisor last looked at every model: a
        # load on demand tells the workers of these only.
        self.touched: set[str] = set()

    # -- reading the repository -------------------------------------------------------------------------------

    def discover(self) -> None:
        """Read every model's config. At start-up a broken config stops the server with the reason."""
        for name, path in model_folders(self.models_dir).items():
            self.add(name, path, load_model_config(path))

    def add(self, name: str, path: Path, config: ModelConfig) -> LoadedModel:
        model = LoadedModel(name, for_server(config, self.device, self.max_threads), path,
                            config_bytes=config_fingerprint(path))
        model.routes = self.make_routes(model)
        model.routes.apply_config()
        self.models[name] = model
        return model

    async def load_all(self) -> None:
        """Start-up: load what the policies want from the repository as it is (folders are taken as complete)."""
        await self.sync(first=True)
        self.loaded = True

    async def load_and_watch(self, interval: float, changed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Load what the policies want, then look at the repository every `interval` s (0: never). `changed()` runs
        after the loading and after each look (a supervisor sends its workers the plan)."""
        if self.max_loaded is not None:
            asyncio.get_running_loop().create_task(self._note_use_each_second())
        if interval <= 0:
            self._watcher = Watcher(notify=False)  # nobody looks again: no watches to hold
        await self.load_all()
        states = ", ".join(f"{m.name}: {'ready' if m.ready else 'NOT READY'}" for m in self.models.values())
        log.info("models loaded from %s (%s)", self.models_dir, states or "no models found")
        freeze_loaded()
        if changed is not None:
            await changed()
        if interval <= 0:
            return
        log.info("watching %s for new, changed and removed versions every %g s (%s)", self.models_dir, interval,
                 "inotify: only folders with events are read again" if self._watcher.mode == "inotify" else "polling")
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception:  # a bad moment on disk must not stop the watching
                log.exception("checking the model repository failed; trying again in %g s", interval)
                continue
            if changed is not None:
                await changed()

    async def sync(self, first: bool = False) -> None:
        """Bring the server in line with the repository: new models and versions loaded (once their files stay
        put between two looks), removed ones retired, changed configs applied or refused, policies enforced."""
        async with self._sync_lock:
            try:
                folders = await asyncio.to_thread(self._watcher.look, self.models_dir)
            except ConfigError as exc:  # the directory itself went away: keep serving what is loaded
                log.error("%s", exc.message)
                return
            synced = self._synced
            for name, entry in folders.items():
                model = self.models.get(name)
                if model is not None and synced.get(name) is entry:
                    continue  # the look took it from the last one, which left nothing pending: the usual case
                path, config_bytes, versions = entry
                if model is None:
                    model = self._new_model(name, path)
                    if model is None:
                        continue
                elif config_bytes != model.config_bytes:
                    await self.apply_config(model)
                elif not first and not self._versions_changed(model, versions):
                    synced[name] = entry
                    continue
                await self._sync_versions(model, first, versions)
                if not any(p in self._looked for p in versions.values()):
                    synced[name] = entry
            for name in [n for n in self.models if n not in folders]:
                model = self.models.pop(name)
                synced.pop(name, None)
                log.info("%s: model folder removed; unloading it", name)
                async with model.lock:
                    model.primary = None
                    model.routes.stop()
                    await asyncio.gather(*(v.retire() for v in model.versions.values() if v.state == READY))

    def _new_model(self, name: str, path: Path) -> LoadedModel | None:
        data = config_fingerprint(path)
        if self._refused.get(path, ...) == data:
            return None
        try:
            config = load_model_config(path)
        except ConfigError as exc:
            self._refused[path] = data
            log.error("new model %s not loaded: %s", name, exc.message)
            return None
        self._refused.pop(path, None)
        model = self.add(name, path, config)
        model.event("discovered")
        return model

    async def apply_config(self, model: LoadedModel) -> None:
        """A changed fastserve.toml: applied whole, with sessions rebuilt off to the side when needed, or refused
        with the reason while the old config keeps serving."""
        data = await asyncio.to_thread(config_fingerprint, model.path)
        if data == model.config_bytes:
            return
        model.config_bytes = data  # one attempt per content
        try:
            new = for_server(load_model_config(model.path), self.device, self.max_threads)
        except ConfigError as exc:
            model.event("config_refused", detail=exc.message)
            log.error("%s: config change refused, the previous one keeps serving: %s", model.name, exc.message)
            return
        retired: list[LoadedVersion] = []
        async with model.lock:
            if needs_reload(model.config, new):
                fresh: dict[int, LoadedVersion] = {}
                for number, version in sorted(model.versions.items()):
                    if version.state != READY:
                        continue
                    candidate = with_config(version, new)
                    await asyncio.to_thread(candidate.load, True, self.gates, self.serves)
                    if candidate.state != READY:
                        for v in fresh.values():
                            v.close()
                        why = f"v{number} does not load with it: {candidate.error}"
                        model.event("config_refused", detail=why)
                        log.error("%s: config change refused, the previous one keeps serving: %s", model.name, why)
                        return
                    fresh[number] = candidate
                retired = [model.versions[n] for n in fresh]
                model.versions.update(fresh)
            routing_changed = model.config.routing != new.routing
            model.config = new
            if routing_changed:
                model.routes.apply_config()
            for version in model.versions.values():
                version.config = new
                if version.state == FAILED:  # it may load under the new config
                    version.state = DISCOVERED
            model.choose_primary()
            model.event("config_applied", detail=f"{len(retired)} loaded version(s) rebuilt" if retired else "")
        for version in retired:
            version.state = DRAINING
        await asyncio.gather(*(v.retire() for v in retired))

    def _versions_changed(self, model: LoadedModel, folders: dict[int, Path]) -> bool:
        """Whether a model's version folders differ from its versions, or one is still being looked at."""
        return {n: v.path for n, v in model.versions.items()} != folders or any(p in self._looked
                                                                                 for p in folders.values())

    async def _sync_versions(self, model: LoadedModel, first: bool, folders: dict[int, Path] | None = None) -> None:
        async with model.lock:
            if folders is None:
                folders = await asyncio.to_thread(version_folders, model.path)
            for number, path in folders.items():
                if number in model.versions and model.versions[number].path == path:
                    continue
                files = await asyncio.to_thread(folder_fingerprint, path)
                if not first and self._looked.get(path) != files:
                    self._looked[path] = files  # new or still being written: look again next time
                    continue
                self._looked.pop(path, None)
                model.versions[number] = LoadedVersion(model.name, number, path, model.config)
                model.event("discovered", number)
            gone = [v for n, v in model.versions.items() if n not in folders]
            for version in gone:
                if version.state == READY:
                    version.state = DRAINING  # no new requests from here on
            await self._enforce_policy(model)
        for version in gone:
            if version.batcher is not None:
                await version.retire()
            model.versions.pop(version.number, None)
            model.event("removed", version.number, "version folder removed")

    # -- the budget of loaded versions ---------------------------------------------------------------------------

    def _loaded(self) -> list[tuple[LoadedModel, LoadedVersion]]:
        out: list[tuple[LoadedModel, LoadedVersion]] = []
        for name in list(self._holding):
            model = self.models.get(name)
            loaded = [v for v in model.versions.values() if v.state == READY] if model is not None else []
            if model is None or not loaded:
                self._holding.discard(name)
                continue
            out += [(model, v) for v in loaded]
        return out

    def loaded_count(self) -> int:
        return len(self._loaded())

    async def _note_use_each_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.note_use()

    def note_use(self, now: float | None = None) -> None:
        """Each second: a version with requests since the last look was used now (its recency for the budget)."""
        now = time.monotonic() if now is None else now
        for name in self.take_used():
            model = self.models.get(name)
            for version in model.versions.values() if model is not None else ():
                if version.calls:
                    version.calls, version.last_used = 0, now

    def take_used(self) -> set[str]:
        used, self.used = self.used, set()
        return used

    async def _make_room(self, loading: LoadedVersion) -> bool:
        """Evict least recently used versions until one more fits the budget; False when none can go."""
        while self.max_loaded is not None and self.loaded_count() >= self.max_loaded:
            candidates = [(v.last_used, m, v) for m, v in self._loaded()
                          if v is not loading and v.number not in m.kept_loaded()]
            if not candidates:
                return False
            _, model, victim = min(candidates, key=lambda c: c[0])
            idle = time.monotonic() - victim.last_used
            victim.state = DRAINING  # no new requests: they wait for its next load
            model.evictions += 1
            self.touched.add(model.name)
            model.event("evicted", victim.number, f"least recently used (idle {idle:.1f} s) to make room for "
                        f"{loading.label}: the budget is {self.max_loaded} loaded versions")
            log.info("%s: evicted (idle %.1f s) for %s", victim.label, idle, loading.label)
            await victim.retire()
            victim.state = EVICTED
        return True

    def warm(self, model: LoadedModel, version: LoadedVersion) -> asyncio.Future[None]:
        """Load an evicted version for the requests waiting on it: one load, however many wait."""
        if version.warming is None or version.warming.done():
            if self.remote_warm is not None:
                loading = self.remote_warm(model.name, version.number)
            else:
                loading = self._warm(model, version)
            version.warming = asyncio.ensure_future(loading)
        return version.warming

    async def _warm(self, model: LoadedModel, version: LoadedVersion) -> None:
        async with model.lock:
            while version.state == DRAINING and self.max_loaded is not None:
                async with self._room:  # being evicted: its eviction holds the budget's lock until it is done
                    pass
            if version.state in (EVICTED, UNLOADED, DISCOVERED):
                await self._load(model, version)
            model.choose_primary()
            if version.state != READY:  # failed, or refused: the requests waiting for it are answered 503
                raise ModelNotReady(f"{version.label} could not be loaded: {version.error or version.state}",
                                    detail={"model": model.name, "version": version.number})

    async def _load(self, model: LoadedModel, version: LoadedVersion) -> None:
        if self.max_loaded is not None:
            async with self._room:
                if not await self._make_room(version):
                    version.state = EVICTED
                    model.event("load_refused", version.number, f"the budget of {self.max_loaded} loaded versions "
                                "is taken by versions that are never evicted (keep_loaded primaries, canaries, "
                                "shadows)")
                    return
                await self._load_now(model, version)
            return
        await self._load_now(model, version)

    async def _load_now(self, model: LoadedModel, version: LoadedVersion) -> None:
        await asyncio.to_thread(version.load, True, self.gates, self.serves)
        self.touched.add(model.name)
        if version.state == READY:
            self._holding.add(model.name)
            model.event("loaded", version.number, f"in {version.load_seconds:.3f} s")
        elif version.gate is not None:
            model.gate_failures += 1
            model.event("gate_failed", version.number, version.error or "")
        else:
            model.event("load_failed", version.number, version.error or "")

    async def _enforce_policy(self, model: LoadedModel) -> None:
        """Load what the version policy wants (and what is pinned or kept), choose the primary, retire the rest.
        Under `latest = N`, versions that fail do not count: the N newest that load and pass serve."""
        options = model.config.versions
        keep = {n for n in (model.pinned, model.config.primary, *model.kept, *model.routes.versions()) if n is not None}
        candidates = sorted((n for n, v in model.versions.items() if v.state != DRAINING), reverse=True)
        if options.policy == "specific":
            candidates = [n for n in candidates if n in options.specific]
        wanted: set[int] = set()
        for number in candidates:
            if options.policy == "latest" and len(wanted) >= options.latest:
                break
            if number in model.held_out:
                continue
            version = model.versions[number]
            if version.state in (DISCOVERED, UNLOADED):
                over_budget = self.max_loaded is not None and self.loaded_count() >= self.max_loaded
                if (self.lazy or over_budget) and number not in keep and not (model.config.keep_loaded
                                                                              and not wanted):
                    version.state = EVICTED  # lazy, or over the budget: loaded by its first request
                else:
                    await self._load(model, version)
            if version.state in (READY, EVICTED):
                wanted.add(number)
        for number in keep - wanted:
            kept = model.versions.get(number)
            if kept is not None and kept.state in (DISCOVERED, UNLOADED):
                await self._load(model, kept)
            wanted.add(number)
        model.choose_primary()
        surplus = [v for n, v in model.versions.items()
                   if v.state == READY and n not in wanted and v is not model.primary]
        for version in surplus:
            version.state = DRAINING
        for version in surplus:
            await version.retire()
            model.event("unloaded", version.number, f"outside the version policy ({options.policy})")

    # -- what the operators' calls (registry/actions.py) stand on -----------------------------------------------

    def model(self, name: str) -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"no model named {name!r} (models: {', '.join(sorted(self.models)) or 'none'})",
                                detail={"model": name})
        return model

    @staticmethod
    def version(model: LoadedModel, number: int) -> LoadedVersion:
        version = model.versions.get(number)
        if version is None:
            known = ", ".join(str(n) for n in sorted(model.versions)) or "none"
            raise VersionNotFound(f"model {model.name!r} has no version {number} (versions: {known})",
                                  detail={"model": model.name, "version": number})
        return version

    async def ensure_loaded(self, model: LoadedModel, version: LoadedVersion) -> None:
        """An operator's call needs this version: it is no longer held out, and it is loaded (and gated) now."""
        model.held_out.discard(version.number)
        if version.state in (DISCOVERED, UNLOADED, FAILED, EVICTED):
            await self._load(model, version)
        if version.state != READY:
            raise OperationRefused(f"{version.label} cannot serve: {version.error or version.state}",
                                   detail={"model": model.name, "version": version.number, "state": version.state})

    @property
    def ready(self) -> bool:
        return self.loaded and all(m.ready for m in self.models.values())

    def close(self) -> None:
        self._watcher.close()
        for model in self.models.values():
            model.routes.stop()
            for version in model.versions.values():
                version.close()
