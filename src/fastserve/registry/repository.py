"""Reads a model repository: `MODELS_DIR/<name>/fastserve.toml` and `MODELS_DIR/<name>/<version>/model.onnx`."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fastserve.config import MODEL_CONFIG_FILE, ModelConfig, load_model_config
from fastserve.exceptions import ConfigError
from fastserve.registry.folder_events import FolderEvents

log = logging.getLogger("fastserve.registry")

MODEL_FILE = "model.onnx"
VALIDATION_FILE = "validation.npz"  # golden inputs and the exported model's outputs on them (the gate's)
GOLDEN_RECORDS_FILE = "validation_records.json"  # the golden inputs as raw records, for a model with features
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
_Seen = tuple[tuple[int, ...], tuple[Path, bytes | None, dict[int, Path]], list[str]]


class Watcher:
    """Looks at the whole repository: per model folder, its path, its config's bytes and its version folders.

    With inotify (Linux, `folder_events.py`) a look reads again only the model folders that had events since the
    last one: an idle repository costs nothing however many models it holds. Without it the look polls, in one pass:
    a model folder whose modification time, config file (size, time) and unfinished version folders (their times:
    a version folder made before its model.onnx is written) are as at the last look is taken from that look.
    """

    def __init__(self, notify: bool = True) -> None:
        self._notify = notify
        self._events: FolderEvents | None = None
        self._polling = not notify  # True once inotify is unavailable or its watches ran out
        self._seen: dict[Path, _Seen] = {}
        self._last: Look | None = None

    @property
    def mode(self) -> str:
        return "inotify" if self._events is not None else "polling"

    def look(self, models_dir: Path) -> Look:
        if not models_dir.is_dir():
            self._stop_events()
            model_folders(models_dir)  # (raises the ConfigError that says so)
        if self._events is not None:
            names = self._events.changed()
            if names is not None and self._last is not None:
                return self._look_at(models_dir, names)
            self._stop_events()  # overflowed, out of watches, or the repository moved: everything, watched afresh
        if not self._polling:
            self._events = FolderEvents.open(str(models_dir))
            self._polling = self._events is None
        return self._look_all(models_dir)

    def close(self) -> None:
        self._stop_events()

    def _stop_events(self) -> None:
        if self._events is not None:
            self._polling = self._polling or self._events.failed
            self._events.close()
            self._events = None
            self._last = None

    def _look_all(self, models_dir: Path) -> Look:
        out: Look = {}
        seen: dict[Path, _Seen] = {}
        with os.scandir(models_dir) as entries:  # (os.scandir: no stat for what the directory entry tells)
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir() and _NAME.match(entry.name):
                    self._look_one(entry.name, Path(entry.path), out, seen)
        self._seen = seen
        self._last = out
        return dict(out)

    def _look_at(self, models_dir: Path, names: set[str]) -> Look:
        out = self._last if self._last is not None else {}
        for name in names:
            path = models_dir / name
            out.pop(name, None)
            self._seen.pop(path, None)
            if _NAME.match(name) and path.is_dir():
                self._look_one(name, path, out, self._seen)
        return dict(out)

    def _look_one(self, name: str, path: Path, out: Look, seen: dict[Path, _Seen]) -> None:
        if self._events is not None:
            self._events.watch(name, str(path))  # before reading it: a change from here on is an event
        before = self._seen.get(path)
        known = before[2] if before is not None else []
        try:
            stamp = _stamp(path, known)  # before reading: a change from here on shows in the next look's stamp
        except FileNotFoundError:  # removed while we looked
            return
        if before is not None and before[0] == stamp:
            item, unfinished = before[1], before[2]
        else:
            versions, unfinished = _versions(path)
            item = (path, config_fingerprint(path), versions)
            if item[1] is None and not versions and not unfinished:
                return  # neither a config nor a version: not a model folder
            if unfinished != known:  # folders first seen now: unstamped, so the next look reads the model again
                stamp = (*stamp[:3], *(-2 for _ in unfinished))
        if self._events is not None:
            for folder in unfinished:
                self._events.watch(name, folder)
        seen[path] = (stamp, item, unfinished)
        if item[1] is not None or item[2]:
            out[name] = item


def _stamp(path: Path, unfinished: list[str]) -> tuple[int, ...]:
    """What changes when a model folder does: its time, its config's size and time, and the times of the unfinished
    version folders it had at the last look."""
    stamp = [os.stat(path).st_mtime_ns]
    try:
        st = os.stat(os.path.join(path, MODEL_CONFIG_FILE))
        stamp += [st.st_size, st.st_mtime_ns]
    except FileNotFoundError:
        stamp += [-1, -1]
    for folder in unfinished:
        try:
            stamp.append(os.stat(folder).st_mtime_ns)
        except FileNotFoundError:
            stamp.append(-1)
    return tuple(stamp)


def version_folders(model_dir: Path) -> dict[int, Path]:
    """Version number -> folder, for numeric folders holding model.onnx (others are skipped with a warning)."""
    return _versions(model_dir)[0]


def _versions(model_dir: Path) -> tuple[dict[int, Path], list[str]]:
    """Version folders holding model.onnx, and the numeric folders without one yet (unfinished)."""
    found: dict[int, Path] = {}
    unfinished: list[str] = []
    try:
        children = sorted(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # the model folder went away
        return found, unfinished
    for child in children:
        number = version_number(child.name)
        if number is None or not child.is_dir():
            continue
        if not (child / MODEL_FILE).is_file():
            unfinished.append(str(child))
            if child not in _warned:  # once: the watcher looks again every poll
                _warned.add(child)
                log.warning("%s: version folder has no %s; skipped", child, MODEL_FILE)
            continue
        found[number] = child
    return found, unfinished


def scan(models_dir: Path) -> list[ModelDir]:
    """Every model folder under `models_dir`, with its config and version folders.

    A folder is a model when it has a `fastserve.toml` or at least one numeric version folder. Names start with a
    letter or digit (so `_tmp`, `.git` are skipped). Raises ConfigError when the directory is missing or a model's
    config is invalid.
    """
    return [ModelDir(name, path, load_model_config(path), version_folders(path))
            for name, path in model_folders(models_dir).items()]
