"""The model repository on disk and the versions loaded from it."""

from fastserve.registry.lifecycle import Registry
from fastserve.registry.models import LoadedModel, LoadedVersion
from fastserve.registry.repository import ModelDir, scan

__all__ = ["LoadedModel", "LoadedVersion", "ModelDir", "Registry", "scan"]
