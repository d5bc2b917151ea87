"""Which model folders changed since the last look, from Linux inotify (through libc: no thread, no dependency).

The repository's watcher asks `changed()` at each look and reads again only the folders named; None means "look at
everything" (the first look, an overflowed queue, the repository itself moved or removed). Elsewhere, or when the
kernel's watch limit is reached, `FolderEvents.open` returns None and the watcher polls as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import struct
import sys

log = logging.getLogger("fastserve.registry")

_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
# An entry appearing, going or renamed in a folder, a file finished writing or touched: what changes a look.
_MASK = (_IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_ATTRIB
         | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR)
_HEAD = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 (both present, or no inotify)
    except (OSError, AttributeError):
        return None
    return libc


class FolderEvents:
    """Watches the repository folder (models appearing and going) and, per model, its folder and the version
    folders it names (a version folder created before its model.onnx is written)."""

    def __init__(self, libc: ctypes.CDLL, fd: int, root: str) -> None:
        self._libc = libc
        self._fd = fd
        self._root = root
        self._root_wd = -1
        self._names: dict[int, str] = {}  # watch -> model name
        self._paths: dict[str, int] = {}  # watched folder -> watch
        self.failed = False  # a watch could not be added (the kernel's limit): the watcher polls from then on

    @classmethod
    def open(cls, root: str) -> FolderEvents | None:
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            log.warning("inotify is not available (%s); the repository is polled", os.strerror(ctypes.get_errno()))
            return None
        events = cls(libc, fd, root)
        events._root_wd = events._add(root)
        if events._root_wd < 0:
            events.close()
            return None
        return events

    def _add(self, path: str) -> int:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err not in (2, 20):  # ENOENT, ENOTDIR: gone meanwhile, the next look says so
                log.warning("cannot watch %s (%s; see /proc/sys/fs/inotify/max_user_watches); the repository is "
                            "polled instead", path, os.strerror(err))
                self.failed = True
        return int(wd)

    def watch(self, name: str, path: str) -> None:
        """Report changes in `path` (a model folder or one of its version folders) as changes of model `name`."""
        if path in self._paths:
            return
        wd = self._add(path)
        if wd >= 0:
            self._names[wd] = name
            self._paths[path] = wd

    def changed(self) -> set[str] | None:
        """Names of models whose folders changed since the last call; None: look at everything."""
        names: set[str] = set()
        everything = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            at = 0
            while at < len(data):
                wd, mask, _, size = _HEAD.unpack_from(data, at)
                name = data[at + _HEAD.size:at + _HEAD.size + size].rstrip(b"\0")
                at += _HEAD.size + size
                if mask & _IN_Q_OVERFLOW or (wd == self._root_wd and mask & (_IN_DELETE_SELF | _IN_MOVE_SELF
                                                                                | _IN_IGNORED)):
                    everything = True
                elif wd == self._root_wd:
                    names.add(os.fsdecode(name))
                elif wd in self._names:
                    names.add(self._names[wd])
                    if mask & _IN_IGNORED:  # the folder went: its watch is gone with it
                        self._paths = {p: w for p, w in self._paths.items() if w != wd}
                        del self._names[wd]
        return None if everything or self.failed else names

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
