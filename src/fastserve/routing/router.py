"""Picks the version that answers: the one the path names, else the canary for its share, else the primary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastserve.exceptions import ModelNotReady, VersionNotFound
from fastserve.registry import LoadedModel, LoadedVersion
from fastserve.registry.models import EVICTED, READY, Serving
from fastserve.registry.repository import version_number
from fastserve.routing.routes import routes_of


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: the version, whether it is the canary, and what serves it: the session whose input
    (dtype, width, fixed batch) the request is read into, and the batcher. `serving` is None while the version is
    not loaded (evicted under the budget: it is loaded on demand)."""

    version: LoadedVersion
    canary: bool
    serving: Serving | None


def choose(model: LoadedModel, version: str | None, payload: Any = None,
           headers: list[tuple[bytes, bytes]] | None = None) -> Route:
    """The route of a request: the version the path names (no routing), else the canary for its share, else the
    primary."""
    if version is not None:
        found = pinned(model, version)
        return Route(found, False, found.serving if found.state == READY else None)
    primary = model.primary
    if primary is None:
        raise ModelNotReady(f"model {model.name!r} has no version ready to serve", detail={"model": model.name})
    canary = routes_of(model).canary
    if canary is not None and canary.weight > 0:
        candidate = model.versions.get(canary.version)
        if candidate is not None and candidate.state == READY and candidate is not primary \
                and canary.routes_to_canary(canary.key(payload, headers or [])):
            return Route(candidate, True, candidate.serving)
    return Route(primary, False, primary.serving if primary.state == READY else None)


def reading(model: LoadedModel) -> tuple[LoadedVersion, Serving] | None:
    """The version a body is read for before a route is chosen (a canary's sticky key may be in the body), with
    what serves it: the primary, when it is loaded; None otherwise (the body is then read the general way, for any
    version)."""
    primary = model.primary
    if primary is None or primary.serving is None:
        return None
    return primary, primary.serving


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

