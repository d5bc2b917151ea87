"""Install each peer in a virtualenv of its own: `<peers dir>/<peer>/venv`, the peer's packages with onnxruntime and
numpy, and a record of what was installed (or why it could not be) in `<peers dir>/<peer>/install.json`. A peer whose
install fails is recorded with the reason; the others go on.

    python -m benchmarks.peers.install [PEER ...] [--force]

The peers dir is $FASTSERVE_PEERS_DIR, else /tmp/fastserve-peers. Not part of the test suite or CI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers.peers import COMMON, PEERS, Peer, install_record, peers_dir, python

VERSIONS = """
import importlib.metadata as m, json, sys
names = sys.argv[1:] + ["onnxruntime", "numpy"]
print(json.dumps({n: m.version(n) for n in names}))
"""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def base_python() -> str:
    """The interpreter the venvs are made from: this one's base (a venv's python is not copied into another)."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(candidate) if candidate.exists() else sys.executable


def install(peer: Peer, force: bool = False) -> dict[str, object]:
    record = install_record(peer)
    if record.exists() and not force:
        done = json.loads(record.read_text())
        if done.get("ok"):
            return dict(done)
    venv = python(peer).parent.parent
    record.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, object] = {"peer": peer.name, "packages": [*peer.packages, *COMMON], "ok": False}
    steps = [
        [base_python(), "-m", "venv", "--clear", str(venv)],
        [str(python(peer)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python(peer)), "-m", "pip", "install", "--quiet", *peer.packages, *COMMON],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            what = " ".join(cmd[2:])
            result["error"] = f"`{what}` failed (exit {done.returncode}): {_tail(done.stderr + done.stdout)}"
            break
    else:
        done = subprocess.run([str(python(peer)), "-c", VERSIONS, *peer.distributions], capture_output=True, text=True)
        if done.returncode == 0:
            result["versions"] = json.loads(done.stdout)
            result["ok"] = True
        else:
            result["error"] = f"installed, but its versions could not be read: {_tail(done.stderr)}"
    result["seconds"] = round(time.monotonic() - started, 1)
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peers", nargs="*", help=f"peers to install (default: all): {', '.join(PEERS)}")
    parser.add_argument("--force", action="store_true", help="reinstall peers already installed")
    args = parser.parse_args(argv)
    unknown = [name for name in args.peers if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; expected some of {', '.join(PEERS)}")
    for name in args.peers or list(PEERS):
        result = install(PEERS[name], args.force)
        state = f"ok {result.get('versions')}" if result["ok"] else f"FAILED: {result.get('error')}"
        print(f"{name}: {state} ({result.get('seconds')} s) -> {peers_dir() / name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
