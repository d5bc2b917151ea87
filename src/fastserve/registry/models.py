"""Loaded models and their versions: state, sessions, worker threads."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastserve._core import FeatureTransform
from fastserve.batching import Batcher
from fastserve.config import ModelConfig, with_device
from fastserve.exceptions import FastserveError, ModelLoadError
from fastserve.features import describe, load_transform
from fastserve.registry.repository import MODEL_FILE, ModelDir, scan
from fastserve.runtime import ModelSession

log = logging.getLogger("fastserve.registry")

LOADING, READY, FAILED = "loading", "ready", "failed"


def warm_up_sizes(max_batch_size: int) -> tuple[int, ...]:
    """One warm-up size per power-of-two bucket of the batcher's run-time model, up to max_batch_size."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


@dataclass
class LoadedVersion:
    model: str
    number: int
    path: Path
    config: ModelConfig
    state: str = LOADING
    error: str | None = None
    session: ModelSession | None = None
    batcher: Batcher | None = None
    transform: FeatureTransform | None = None
    load_seconds: float | None = None
    warmup_seconds: float | None = None
    ready_at: float | None = None

    @property
    def label(self) -> str:
        return f"{self.model} v{self.number}"

    def load(self) -> None:
        """Create the session, warm it up and start its worker. Blocking: call from a thread at start-up."""
        started = time.perf_counter()
        try:
            transform = load_transform(self.path, self.config.features, self.config.inputs.unknown_fields == "error")
            session = ModelSession(self.path / MODEL_FILE, self.config.runtime, self.label)
            if transform is not None and transform.width != session.n_features:
                raise ModelLoadError(f"{self.label}: the feature spec writes {transform.width} columns but the model "
                                     f"takes {session.n_features}; fix features.toml or re-export the model")
            warm_started = time.perf_counter()
            best = session.warm_up(warm_up_sizes(self.config.batching.max_batch_size))
            self.warmup_seconds = time.perf_counter() - warm_started
        except FastserveError as exc:
            self.state, self.error = FAILED, exc.message
            log.error("%s: failed to load: %s", self.label, exc.message)
            return
        self.session = session
        self.transform = transform
        self.batcher = Batcher(session, self.config.batching, self.label, warm_up=best,
                               inline_max_s=self.config.runtime.inline_run_max_us * 1e-6)
        self.load_seconds = time.perf_counter() - started
        self.ready_at = time.time()
        self.state = READY
        log.info("%s: ready in %.3f s (warm-up %.1f ms)", self.label, self.load_seconds, self.warmup_seconds * 1e3)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.number, "state": self.state}
        if self.error:
            out["error"] = self.error
        if self.session is not None:
            out.update(self.session.metadata())
            out["load_seconds"] = round(self.load_seconds or 0.0, 6)
            out["warmup_seconds"] = round(self.warmup_seconds or 0.0, 6)
        if self.transform is not None:
            out["features"] = describe(self.transform)
        return out


@dataclass
class LoadedModel:
    name: str
    config: ModelConfig
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    # The version that answers unversioned requests: one reference, read on every request and replaced whole
    # (by `choose_primary`, on the event loop) whenever a version changes state.
    primary: LoadedVersion | None = None

    def choose_primary(self) -> None:
        """The configured primary when ready, else the newest ready version."""
        if self.config.primary is not None:
            chosen = self.versions.get(self.config.primary)
            self.primary = chosen if chosen is not None and chosen.state == READY else None
            return
        ready = [v for v in self.versions.values() if v.state == READY]
        self.primary = max(ready, key=lambda v: v.number) if ready else None

    @property
    def ready(self) -> bool:
        return self.primary is not None

    def status(self) -> dict[str, Any]:
        primary = self.primary
        return {
            "name": self.name,
            "description": self.config.description,
            "ready": primary is not None,
            "primary": primary.number if primary else None,
            "versions": [self.versions[n].status() for n in sorted(self.versions)],
        }


class Registry:
    """Every model the server knows, keyed by name."""

    def __init__(self, models_dir: Path, device: str | None = None) -> None:
        self.models_dir = models_dir
        self.device = device
        self.models: dict[str, LoadedModel] = {}
        self.loaded = False

    def discover(self) -> list[ModelDir]:
        found = scan(self.models_dir)
        for spec in found:
            config = with_device(spec.config, self.device)
            model = LoadedModel(spec.name, config)
            for number, path in spec.versions.items():
                model.versions[number] = LoadedVersion(spec.name, number, path, config)
            self.models[spec.name] = model
        return found

    async def load_all(self) -> None:
        """Load every discovered version, off the event loop, one at a time (loading is CPU-bound)."""
        for model in self.models.values():
            for version in model.versions.values():
                await asyncio.to_thread(version.load)
                model.choose_primary()
            if model.config.primary is not None and model.config.primary not in model.versions:
                log.error("%s: primary version %d is not in %s", model.name, model.config.primary, self.models_dir)
        self.loaded = True

    @property
    def ready(self) -> bool:
        return self.loaded and all(m.ready for m in self.models.values())

    def close(self) -> None:
        for model in self.models.values():
            for version in model.versions.values():
                version.close()
