"""The hand-written `.pyi` stubs say what the compiled modules hold: mypy's stubtest checks every name and
signature in a stub against the module as built (names the stub leaves out, and Cython's own, are not asked for)."""

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMPILED = sorted(".".join(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("*.pyi")
                  if p.with_suffix(".pyx").exists())


def test_every_compiled_module_has_a_stub():
    assert len(COMPILED) >= 10
    missing = [p for p in SRC.rglob("*.pyx") if not p.with_suffix(".pyi").exists()]
    assert not missing


def test_the_stubs_match_the_compiled_modules():
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--ignore-missing-stub", "--ignore-disjoint-bases",
                           "--concise", "--allowlist", str(Path(__file__).with_name("stubtest_allowlist.txt")),
                           *COMPILED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
