"""Reads a model repository: `MODELS_DIR/<name>/fastserve.toml` and `MODELS_DIR/<name>/<version>/model.onnx`."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from fastserve.config import ModelConfig, load_model_config
from fastserve.exceptions import ConfigError

log = logging.getLogger("fastserve.registry")

MODEL_FILE = "model.onnx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ModelDir:
    name: str
    path: Path
    config: ModelConfig
    versions: dict[int, Path]  # version number -> folder holding model.onnx


def _versions(model_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in sorted(model_dir.iterdir()):
        if not child.is_dir() or not child.name.isdigit():
            continue
        if not (child / MODEL_FILE).is_file():
            log.warning("%s: version folder has no %s; skipped", child, MODEL_FILE)
            continue
        found[int(child.name)] = child
    return found


def scan(models_dir: Path) -> list[ModelDir]:
    """Every model folder under `models_dir`, with its config and version folders.

    A folder is a model when it has a `fastserve.toml` or at least one numeric version folder. Names start with a
    letter or digit (so `_tmp`, `.git` are skipped). Raises ConfigError when the directory is missing or a model's
    config is invalid.
    """
    if not models_dir.is_dir():
        raise ConfigError(
            f"models directory {str(models_dir)!r} does not exist; pass MODELS_DIR or set FASTSERVE_MODELS_DIR"
        )
    models = []
    for child in sorted(models_dir.iterdir()):
        if not child.is_dir() or not _NAME.match(child.name):
            continue
        versions = _versions(child)
        has_config = (child / "fastserve.toml").is_file()
        if not versions and not has_config:
            continue
        models.append(ModelDir(child.name, child, load_model_config(child), versions))
    return models
