"""Gate results kept in the server's state directory (`--state-dir`): a version that passed its gate, and whose
files, gate options and runtime options have not changed since, is not gated again at its next load (a server that
loads and evicts thousands of models on demand would otherwise run every validation set again at each load). The
repository itself may be read-only: the cache is the server's own file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("fastserve.registry")

FILE = "gates.json"


def gate_key(folder: Path, fingerprint: tuple[Any, ...], *options: Any) -> str:
    """What the result depends on: the folder, its files (names, sizes, times) and the options, hashed."""
    return hashlib.sha256(repr((str(folder.resolve()), fingerprint, options)).encode()).hexdigest()


class GateCache:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE
        self._lock = threading.Lock()  # loads run on worker threads
        self._passed: set[str] = set()
        try:
            self._passed = set(json.loads(self.path.read_text())["passed"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s unreadable (%s): gates run again and it is written anew", self.path, exc)

    def passed(self, key: str) -> bool:
        with self._lock:
            return key in self._passed

    def record(self, key: str) -> None:
        """Written whole to a new file renamed over the old one: a crash leaves the old one or the new one."""
        with self._lock:
            if key in self._passed:
                return
            self._passed.add(key)
            staging = self.path.with_suffix(".tmp")
            try:
                staging.write_text(json.dumps({"passed": sorted(self._passed)}))
                os.replace(staging, self.path)
            except OSError as exc:
                log.warning("cannot write %s (%s): gate results are not kept", self.path, exc)
                with contextlib.suppress(OSError):
                    staging.unlink()
