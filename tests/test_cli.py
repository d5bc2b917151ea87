"""The command line, run as a user runs it."""

import platform
import subprocess
import sys

import fastserve
from fastserve.malloc import keep_freed_blocks
from tests.conftest import MODELS, copy_model, start_server, write_tiny_model


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastserve", *args], capture_output=True, text=True, timeout=120)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastserve {fastserve.__version__}"


def test_models_lists_the_bundled_models_and_loads_them():
    r = run("models", str(MODELS))
    assert r.returncode == 0, r.stderr
    assert "churn  (primary: 1)" in r.stdout
    assert "v1  ready  input inputs float32[None, 22] -> label int64[None], probabilities float32[None, 2]" in r.stdout
    assert "spend  (primary: 1)" in r.stdout and "prediction float32[None, 1]" in r.stdout


def test_models_fails_when_a_version_does_not_load(tmp_path):
    write_tiny_model(tmp_path / "bad" / "1", zipmap=True)
    r = run("models", str(tmp_path))
    assert r.returncode == 1
    assert "v1  failed: bad v1: `output_probability` has type seq(map(int64,tensor(float)))" in r.stdout


def test_serve_refuses_a_missing_directory(tmp_path):
    r = run("serve", str(tmp_path / "nowhere"))
    assert r.returncode == 2
    assert "does not exist; pass MODELS_DIR" in r.stderr


def test_serve_refuses_an_unknown_device():
    r = run("serve", "--device", "gpu")
    assert r.returncode == 2 and "invalid choice: 'gpu'" in r.stderr


def test_serve_keeps_freed_blocks_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    copy_model("spend", tmp_path)
    srv = start_server(tmp_path)
    log = srv.stop()
    if platform.libc_ver()[0] == "glibc":
        assert "malloc: blocks up to 32 MiB from the heap, up to 64 MiB of freed heap kept for reuse" in log
    else:
        assert "malloc: not glibc" in log
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_blocks() == "malloc: glibc settings from the environment kept (MALLOC_TRIM_THRESHOLD_)"
