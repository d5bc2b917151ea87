"""Picks the version that answers: the one the path names, else the canary for its share, else the primary."""

from __future__ import annotations

from typing import Any

from fastserve.exceptions import ModelNotReady, VersionNotFound
from fastserve.registry import LoadedModel, LoadedVersion
from fastserve.registry.models import EVICTED, READY
from fastserve.registry.repository import version_number
from fastserve.routing.routes import routes_of


def choose(model: LoadedModel, version: str | None, payload: Any = None,
           headers: list[tuple[bytes, bytes]] | None = None) -> tuple[LoadedVersion, bool]:
    """(the version that answers, whether it is the canary). A version in the path bypasses routing."""
    if version is not None:
        return pinned(model, version), False
    primary = model.primary
    if primary is None:
        raise ModelNotReady(f"model {model.name!r} has no version ready to serve", detail={"model": model.name})
    canary = routes_of(model).canary
    if canary is not None and canary.weight > 0:
        candidate = model.versions.get(canary.version)
        if candidate is not None and candidate.state == READY and candidate is not primary \
                and canary.routes_to_canary(canary.key(payload, headers or [])):
            return candidate, True
    return primary, False


def pinned(model: LoadedModel, version: str) -> LoadedVersion:
    number = version_number(version)
    found = model.versions.get(number) if number is not None else None
    if found is None:
        known = ", ".join(str(n) for n in sorted(model.versions)) or "none"
        raise VersionNotFound(f"model {model.name!r} has no version {version!r} (versions: {known})",
                              detail={"model": model.name, "version": version})
    if found.state not in (READY, EVICTED):  # (evicted: loaded on demand)
        raise ModelNotReady(f"model {model.name!r} version {number} is {found.state}",
                            detail={"model": model.name, "version": number})
    return found

