"""The limit on open files, raised for a server that holds thousands of connections.

Most systems start a process with a soft limit of 1,024 open files and a hard limit far above it. Each connection is
a file, so under the soft limit the server could not reach its own default `--max-connections` (4,096): past it,
accepts fail and clients are dropped without an answer. The soft limit is raised to the hard one (as any process may,
without privileges); the door process, started after, inherits it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _resource() -> ModuleType | None:
    try:
        return importlib.import_module("resource")
    except ImportError:  # (not on Windows)
        return None


resource = _resource()


def raise_open_files_limit(wanted: int) -> str:
    """Raise the soft limit toward the hard one; what was done, for the log. `wanted`: the files the server needs."""
    if resource is None:
        return "open files: no limit to raise on this platform"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # (An unlimited hard limit, as macOS reports, cannot be the soft one: there, what is wanted.)
    target = hard if hard != resource.RLIM_INFINITY else wanted
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            return f"open files: limit {soft} (could not raise it to {target}: {exc})"
        message = f"open files: limit raised from {soft} to {target}"
        soft = target
    else:
        message = f"open files: limit {soft}"
    if soft != resource.RLIM_INFINITY and soft < wanted:
        message += (f"; under the {wanted} that --max-connections asks for: past it, new clients are dropped "
                    "unanswered (raise the hard limit: ulimit -Hn, or LimitNOFILE= in a systemd unit)")
    return message
