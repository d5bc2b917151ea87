"""Loaded models and their versions: lifecycle, gate, primary choice, and the events that explain them."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastserve._core import FeatureTransform
from fastserve.batching import Batcher
from fastserve.config import ModelConfig
from fastserve.drift.monitor import NO_DRIFT, Drift, DriftMonitor
from fastserve.drift.profile import PROFILE_FILE, read_profile
from fastserve.exceptions import FastserveError, ModelLoadError
from fastserve.features import describe, load_transform
from fastserve.quality.monitor import QualityMonitor, monitor_for
from fastserve.quality.store import Store
from fastserve.registry.gate import check as gate_check
from fastserve.registry.gate_cache import GateCache, gate_key
from fastserve.registry.repository import MODEL_FILE, folder_fingerprint
from fastserve.runtime import ModelSession
from fastserve.runtime.session import SessionInfo, TensorInfo

log = logging.getLogger("fastserve.registry")

# A version's life: discovered -> loading -> warming -> gating -> ready (-> serving while primary) -> draining ->
# unloaded; or -> failed, with the reason. Under a budget of loaded versions, one the policy wants but that is not
# loaded (never yet, or least recently used) is evicted: loaded again on its next request.
DISCOVERED, LOADING, WARMING, GATING, READY = "discovered", "loading", "warming", "gating", "ready"
DRAINING, UNLOADED, FAILED, EVICTED = "draining", "unloaded", "failed", "evicted"
STATES = (DISCOVERED, LOADING, WARMING, GATING, READY, DRAINING, UNLOADED, FAILED, EVICTED)
EVENTS_KEPT = 200


class Routes(Protocol):
    """What routing keeps for a model (its canary and shadows: `routing/routes.py`), as the registry sees it."""

    def apply_config(self) -> None: ...
    def stop(self) -> None: ...
    def versions(self) -> set[int]: ...
    def status(self) -> dict[str, Any]: ...  # (JSON, as the model's status shows it)


class NoRoutes:
    """A registry that serves no requests by itself routes nothing (the `models` command, tests of loading)."""

    def apply_config(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def versions(self) -> set[int]:
        return set()

    def status(self) -> dict[str, Any]:
        return {"canary": None, "shadows": []}


def warm_up_sizes(max_batch_size: int) -> tuple[int, ...]:
    """One warm-up size per power-of-two bucket of the batcher's run-time model, up to max_batch_size."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


@dataclass(frozen=True, slots=True)
class Event:
    """One step in a model's history (loaded, failed, primary, rolled back, ...), as its status lists them."""

    at: str  # ISO 8601, UTC, to the millisecond
    kind: str
    version: int | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "event": self.kind}
        if self.version is not None:
            out["version"] = self.version
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Serving:
    """What a loaded version serves with, made together at its load and dropped together at its close: a version
    that has one has both."""

    session: ModelSession
    batcher: Batcher


@dataclass
class LoadedVersion:
    model: str
    number: int
    path: Path
    config: ModelConfig
    state: str = DISCOVERED
    error: str | None = None
    serving: Serving | None = None  # while loaded (in a supervisor of workers: never, the workers serve)
    transform: FeatureTransform | None = None
    load_seconds: float | None = None
    warmup_seconds: float | None = None
    ready_at: float | None = None
    gate: str | None = None
    drift: Drift = NO_DRIFT  # its monitor from its first load on, when it has a usable profile
    quality: QualityMonitor | None = None  # made at its first load, kept while the version is known (labels come late)
    fingerprint: tuple[Any, ...] = ()  # the folder's files when it was loaded
    calls: int = 0  # requests routed to it (the budget's recency: read and reset each second)
    last_used: float = 0.0  # monotonic seconds: when it last had a request, or was loaded
    warming: asyncio.Future[None] | None = None  # its load on demand, shared by every request waiting for it
    info: SessionInfo | None = None  # its session's, from its first load on (kept after the session goes)
    tensors: tuple[TensorInfo, list[TensorInfo]] | None = None  # its input and outputs, from its first load on

    @property
    def provider(self) -> str:
        """The execution provider its session ran on ("" before its first load)."""
        return self.info.providers[0] if self.info is not None and self.info.providers else ""

    @property
    def session(self) -> ModelSession | None:
        return self.serving.session if self.serving is not None else None

    @property
    def batcher(self) -> Batcher | None:
        return self.serving.batcher if self.serving is not None else None

    @property
    def sketches_raw_fields(self) -> bool:
        """Whether the drift monitor wants each request's raw field codes (a profile of the fields clients send)."""
        return self.drift.from_fields

    @property
    def field_count(self) -> int:
        """How many raw fields a record of this version has (0 without a feature spec)."""
        return len(self.transform.fields) if self.transform is not None else 0

    @property
    def label(self) -> str:
        return f"{self.model} v{self.number}"

    def load(self, gate: bool = True, gates: GateCache | None = None, serve: bool = True) -> None:
        """Load, warm, gate, and start the batcher. Blocking: runs on a worker thread, never on the event loop.
        `gate=False` in a worker process: the supervisor gated the version already. With `gates`, a pass recorded
        there for the same files and options stands. `serve=False` in a supervisor of worker processes: the session
        is released once gated (the workers serve; the supervisor keeps what status and drift need)."""
        started = time.perf_counter()
        self.error = self.gate = None
        self.fingerprint = folder_fingerprint(self.path)
        try:
            self.state = LOADING
            transform = load_transform(self.path, self.config.features, self.config.inputs.unknown_fields == "error")
            session = ModelSession(self.path / MODEL_FILE, self.config.runtime, self.label)
            if transform is not None and transform.width != session.n_features:
                raise ModelLoadError(f"{self.label}: the feature spec writes {transform.width} columns but the model "
                                     f"takes {session.n_features}; fix features.toml or re-export the model")
            self.state = WARMING
            warm_started = time.perf_counter()
            best = session.warm_up(warm_up_sizes(self.config.batching.max_batch_size))
            self.warmup_seconds = time.perf_counter() - warm_started
            self.state = GATING
            key = gate_key(self.path, self.fingerprint, self.config.gate, self.config.runtime,
                           self.config.batching.latency_slo_ms, self.config.features_text)
            cached = gate and gates is not None and gates.passed(key)
            why = gate_check(self.path, session, transform, self.config.gate, self.config.batching.latency_slo_ms,
                             best) if gate and not cached else None
            if why is not None:
                raise ModelLoadError(f"{self.label}: validation gate failed: {why}", detail={"gate": why})
            if gate and gates is not None and not cached and self.config.gate.enabled:
                gates.record(key)
        except FastserveError as exc:
            self.state, self.error = FAILED, exc.message
            self.gate = exc.detail.get("gate") if isinstance(exc.detail, dict) else None
            log.error("%s: failed to load: %s", self.label, exc.message)
            return
        self.gate = ("passed (cached)" if cached else "passed") if self.config.gate.enabled else "off"
        self.info = session.info()
        self.tensors = (session.input, session.outputs)
        self.transform = transform
        self.drift = self._drift_monitor(session)
        if self.quality is None:
            self.quality = monitor_for(self.path, self.label, self.config.quality, [o.name for o in session.outputs])
        if serve:
            batcher = Batcher(session, self.config.batching, self.label, warm_up=best,
                              inline_max_s=self.config.runtime.inline_run_max_us * 1e-6)
            if not self.drift.why:  # (a batcher with an observer copies each batch's rows for it)
                batcher.observe = self.drift.observe
            self.serving = Serving(session, batcher)
        self.load_seconds = time.perf_counter() - started
        self.ready_at = time.time()
        self.last_used = time.monotonic()
        self.state = READY
        log.info("%s: ready in %.3f s (warm-up %.1f ms)", self.label, self.load_seconds, self.warmup_seconds * 1e3)

    def _drift_monitor(self, session: ModelSession) -> Drift:
        """From the version's profile.json, when it has one that fits the model's input."""
        if not self.config.drift.enabled:
            return NO_DRIFT
        try:
            profile = read_profile(self.path)
        except ValueError as exc:
            log.warning("%s: %s unreadable, drift not monitored: %s", self.label, PROFILE_FILE, exc)
            return NO_DRIFT
        if profile is None:
            return NO_DRIFT
        if profile["inputs"].get("source") == "fields":
            if self.transform is None:
                log.warning("%s: %s describes raw fields, but the version has no feature spec; drift not monitored",
                            self.label, PROFILE_FILE)
                return NO_DRIFT
        elif len(profile["inputs"]["columns"]) != session.n_features:
            log.warning("%s: %s describes %d columns, the model takes %d; drift not monitored", self.label,
                        PROFILE_FILE, len(profile["inputs"]["columns"]), session.n_features)
            return NO_DRIFT
        try:
            return DriftMonitor(profile, self.config.drift, self.label,
                                self.transform.fields if self.transform is not None else None)
        except ValueError as exc:
            log.warning("%s: %s does not fit the feature spec, drift not monitored: %s", self.label, PROFILE_FILE, exc)
            return NO_DRIFT

    async def retire(self, timeout: float = 30.0) -> None:
        """Stop taking requests, let the queued ones finish here, then release the session."""
        self.state = DRAINING
        if self.batcher is not None:
            await self.batcher.drain(timeout)
            left = self.batcher.refuse_waiting("version unloaded before this request could run")
            if left:
                log.warning("%s: %d request(s) still queued after %g s of draining were refused", self.label, left,
                            timeout)
            await asyncio.to_thread(self.batcher.close)
        self.close()
        self.state = UNLOADED

    def close(self) -> None:
        if self.serving is not None:
            self.serving.batcher.close()
        self.serving = None  # the session's memory goes with its last reference

    def status(self, primary: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.number, "state": "serving" if primary else self.state}
        if self.error:
            out["error"] = self.error
        if self.gate:
            out["gate"] = self.gate
        if self.state == READY and self.info is not None:
            out.update(self.info.as_json())
        if self.load_seconds is not None:
            out["load_seconds"] = round(self.load_seconds, 6)
            out["warmup_seconds"] = round(self.warmup_seconds or 0.0, 6)
        if self.transform is not None:
            out["features"] = describe(self.transform)
        return out


@dataclass
class LoadedModel:
    name: str
    config: ModelConfig
    path: Path
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    # The version that answers unversioned requests: one reference, read on every request and replaced whole (by
    # `choose_primary`, on the event loop) whenever a version changes state. Requests that already hold the old
    # one finish on it.
    primary: LoadedVersion | None = None
    pinned: int | None = None  # promoted through the admin API; wins over the config's primary until rolled back
    kept: set[int] = field(default_factory=set)  # loaded through the admin API: kept whatever the policy
    held_out: set[int] = field(default_factory=set)  # unloaded through the admin API: not loaded again by the policy
    primaries: list[int] = field(default_factory=list)  # the primary's history, for rollback
    events: collections.deque[Event] = field(default_factory=lambda: collections.deque(maxlen=EVENTS_KEPT))
    swaps: int = 0
    gate_failures: int = 0
    evictions: int = 0
    config_bytes: bytes | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    routes: Routes = field(default_factory=NoRoutes)  # set by the registry, from routing
    store: Store | None = None  # its answers awaiting labels (made with the first answer kept)
    feedback_ids: collections.Counter[str] = field(default_factory=collections.Counter)  # ids in feedback, by outcome

    def kept_loaded(self) -> set[int]:
        """Versions the budget never evicts: the canary, the shadows, and the primary of a `keep_loaded` model."""
        kept = self.routes.versions()
        if self.config.keep_loaded and self.primary is not None:
            kept.add(self.primary.number)
        return kept

    def event(self, kind: str, version: int | None = None, detail: str = "") -> None:
        self.events.append(Event(datetime.now(UTC).isoformat(timespec="milliseconds"), kind, version, detail))

    def choose_primary(self) -> None:
        """The promoted version when ready, else the configured primary when ready, else the newest ready one that
        is not a canary or a shadow."""
        ready = {n: v for n, v in self.versions.items() if v.state in (READY, EVICTED)}  # (evicted: loads on demand)
        wanted = self.pinned if self.pinned in ready else self.config.primary
        chosen = ready.get(wanted) if wanted is not None else None
        if chosen is None and self.config.primary is None and ready:
            # The newest, leaving out versions on trial (canary, shadows) unless nothing else is ready.
            trial = self.routes.versions()
            chosen = ready[max((n for n in ready if n not in trial), default=max(ready))]
        if chosen is self.primary:
            return
        before, self.primary = self.primary, chosen
        if chosen is None:
            self.event("no_primary", detail="no version ready to serve")
            log.warning("%s: no version ready to serve", self.name)
            return
        if before is not None:
            self.swaps += 1
        if not self.primaries or self.primaries[-1] != chosen.number:
            self.primaries.append(chosen.number)
            del self.primaries[:-50]
        self.event("primary", chosen.number, f"was v{before.number}" if before else "first primary")
        log.info("%s: v%d is primary%s", self.name, chosen.number, f" (was v{before.number})" if before else "")

    @property
    def ready(self) -> bool:
        return self.primary is not None

    def status(self) -> dict[str, Any]:
        """The model as `GET /v1/models/{name}` and the admin calls answer it. JSON, not a dataclass: nothing in
        the server reads it back, it is only sent (a supervisor's to its workers, which send it on)."""
        primary = self.primary
        return {
            "name": self.name,
            "description": self.config.description,
            "ready": primary is not None,
            "primary": primary.number if primary else None,
            "pinned": self.pinned,
            "policy": {"policy": self.config.versions.policy, "latest": self.config.versions.latest,
                       "specific": list(self.config.versions.specific)},
            "versions": [self.versions[n].status(self.versions[n] is primary) for n in sorted(self.versions)],
            "routing": self.routes.status(),
            "events": [e.as_json() for e in self.events],
        }


def with_config(version: LoadedVersion, config: ModelConfig) -> LoadedVersion:
    """A fresh, unloaded copy of `version` under another config."""
    return LoadedVersion(version.model, version.number, version.path, config)


def needs_reload(old: ModelConfig, new: ModelConfig) -> bool:
    """Whether loaded sessions must be rebuilt for `new`; description, primary, policy and gate changes need not."""
    return (old.runtime, old.inputs, old.batching, old.features_text) != (new.runtime, new.inputs, new.batching,
                                                                          new.features_text)
