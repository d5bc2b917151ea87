"""Picks the version that answers: the one asked for, or the model's primary."""

from __future__ import annotations

from fastserve.exceptions import ModelNotFound, ModelNotReady, VersionNotFound
from fastserve.registry import LoadedVersion, Registry
from fastserve.registry.models import READY


def route(registry: Registry, name: str, version: str | None = None) -> LoadedVersion:
    model = registry.models.get(name)
    if model is None:
        known = ", ".join(sorted(registry.models)) or "none"
        raise ModelNotFound(f"no model named {name!r} (models: {known})", detail={"model": name})
    if version is None:
        chosen = model.primary
        if chosen is None:
            raise ModelNotReady(f"model {name!r} has no version ready to serve", detail={"model": name})
        return chosen
    number = int(version) if version.isdigit() else None
    found = model.versions.get(number) if number is not None else None
    if found is None:
        known = ", ".join(str(n) for n in sorted(model.versions)) or "none"
        raise VersionNotFound(f"model {name!r} has no version {version!r} (versions: {known})",
                              detail={"model": name, "version": version})
    if found.state != READY:
        raise ModelNotReady(f"model {name!r} version {number} is {found.state}", detail={"model": name,
                                                                                          "version": number})
    return found
