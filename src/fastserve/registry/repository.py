"""Reads a model repository: `MODELS_DIR/<name>/fastserve.toml` and `MODELS_DIR/<name>/<version>/model.onnx`."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fastserve.config import MODEL_CONFIG_FILE, ModelConfig, load_model_config
from fastserve.exceptions import ConfigError

log = logging.getLogger("fastserve.registry")

MODEL_FILE = "model.onnx"
_warned: set[Path] = set()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ModelDir:
    name: str
    path: Path
    config: ModelConfig
    versions: dict[int, Path]  # version number -> folder holding model.onnx


def folder_fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of a folder's files: equal on two looks means nobody is writing it."""
    out = []
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while we looked
            continue
        if path.is_file():
            out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def config_fingerprint(model_dir: Path) -> bytes | None:
    """The model's fastserve.toml as bytes (None without one): a change means the config must be read again."""
    try:
        return (model_dir / MODEL_CONFIG_FILE).read_bytes()
    except FileNotFoundError:
        return None


def model_folders(models_dir: Path) -> dict[str, Path]:
    """Model folders by name: a `fastserve.toml` or at least one version folder; names start with a letter or
    digit (so `_tmp`, `.git` and staging folders are skipped)."""
    if not models_dir.is_dir():
        raise ConfigError(
            f"models directory {str(models_dir)!r} does not exist; pass MODELS_DIR or set FASTSERVE_MODELS_DIR"
        )
    found = {}
    for child in sorted(models_dir.iterdir()):
        if child.is_dir() and _NAME.match(child.name) and (
                (child / MODEL_CONFIG_FILE).is_file() or version_folders(child)):
            found[child.name] = child
    return found


def version_number(text: str) -> int | None:
    """`text` as a version number, or None. ASCII digits only: str.isdigit() also takes '²', which int() refuses, and
    int() refuses more than 4300 digits; a version past 18 digits cannot be one the repository holds anyway."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


Look = dict[str, tuple[Path, bytes | None, dict[int, Path]]]


class Watcher:
    """Looks at the whole repository in one pass (one worker-thread hop per look, whatever the number of models):
    per model folder, its path, its config's bytes and its version folders. A model folder whose own modification
    time and config file (size, time) are as at the last look is taken from that look: a version folder appears by a
    rename into it, which changes its time, so an idle repository costs a few stats per model."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[tuple[int, ...], tuple[Path, bytes | None, dict[int, Path]]]] = {}

    def look(self, models_dir: Path) -> Look:
        if not models_dir.is_dir():
            model_folders(models_dir)  # (raises the ConfigError that says so)
        out: Look = {}
        seen: dict[Path, tuple[tuple[int, ...], tuple[Path, bytes | None, dict[int, Path]]]] = {}
        with os.scandir(models_dir) as entries:  # (os.scandir: no stat for what the directory entry tells)
            for entry in sorted(entries, key=lambda e: e.name):
                if not entry.is_dir() or not _NAME.match(entry.name):
                    continue
                path = Path(entry.path)
                try:
                    folder = entry.stat()
                    try:
                        st = os.stat(os.path.join(entry.path, MODEL_CONFIG_FILE))
                        stamp: tuple[int, ...] = (folder.st_mtime_ns, st.st_size, st.st_mtime_ns)
                    except FileNotFoundError:
                        stamp = (folder.st_mtime_ns,)
                except FileNotFoundError:  # removed while we looked
                    continue
                before = self._seen.get(path)
                if before is not None and before[0] == stamp:
                    item = before[1]
                else:
                    item = (path, config_fingerprint(path), version_folders(path))
                    if item[1] is None and not item[2]:
                        continue  # neither a config nor a version: not a model folder
                seen[path] = (stamp, item)
                out[entry.name] = item
        self._seen = seen
        return out


def version_folders(model_dir: Path) -> dict[int, Path]:
    """Version number -> folder, for numeric folders holding model.onnx (others are skipped with a warning)."""
    try:
        return _versions(model_dir)
    except FileNotFoundError:  # the model folder went away
        return {}


def _versions(model_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for child in sorted(model_dir.iterdir()):
        number = version_number(child.name)
        if number is None or not child.is_dir():
            continue
        if not (child / MODEL_FILE).is_file():
            if child not in _warned:  # once: the watcher looks again every poll
                _warned.add(child)
                log.warning("%s: version folder has no %s; skipped", child, MODEL_FILE)
            continue
        found[number] = child
    return found


def scan(models_dir: Path) -> list[ModelDir]:
    """Every model folder under `models_dir`, with its config and version folders.

    A folder is a model when it has a `fastserve.toml` or at least one numeric version folder. Names start with a
    letter or digit (so `_tmp`, `.git` are skipped). Raises ConfigError when the directory is missing or a model's
    config is invalid.
    """
    return [ModelDir(name, path, load_model_config(path), version_folders(path))
            for name, path in model_folders(models_dir).items()]
