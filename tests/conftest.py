"""Real servers for the tests: `python -m fastserve serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

# Property tests judge what the code does, not how fast a shared two-core machine makes their examples; the fuzz
# tests set deadlines of their own, to catch hangs.
settings.register_profile("fastserve", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("fastserve")


# Pooled connections idle for less than the server's keep-alive timeout (5 s): a connection the server is closing
# for idleness is never picked for a request (the race every HTTP/1.1 client must leave to the server's side).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A fastserve process; `url` is its base address."""

    def __init__(self, models_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastserve-test-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastserve", "serve", str(models_dir), "--port", str(self.port),
             "--log-level", "info", *args],
            stdout=self._log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 30.0, ready_status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=1.0)
                # Not ready also while models still load: waiting for a not-ready server means waiting for that.
                if r.status_code == ready_status and (ready_status == 200 or not r.json()["loading"]):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()
        return self.log.read_text()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(models_dir: Path, *args: str, ready_status: int = 200, env: dict[str, str] | None = None) -> Server:
    """A server on `models_dir`, ready; `env` is added to this process's environment for it."""
    server = Server(models_dir, *args, env=env)
    try:
        server.wait_ready(ready_status=ready_status)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The bundled models, served as `fastserve serve` serves them."""
    srv = start_server(MODELS)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0, limits=CLIENT_LIMITS) as c:
        yield c


@pytest.fixture(scope="session")
def golden() -> dict[str, dict[str, np.ndarray]]:
    """Each bundled model's validation set: inputs and the scikit-learn model's own outputs."""
    return {name: dict(np.load(MODELS / name / "1" / "validation.npz")) for name in ("churn", "churn_mlp", "spend")}


def customers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows like the bundled models' training data (models/make_models.py): inputs, churn labels, spend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_models", MODELS / "make_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_dataset(n, seed)  # type: ignore[no-any-return]


def copy_model(src: str, dest: Path, config: str | None = None, name: str | None = None) -> Path:
    """A bundled model copied into `dest`, optionally with another fastserve.toml."""
    target = dest / (name or src)
    shutil.copytree(MODELS / src, target)
    if config is not None:
        (target / "fastserve.toml").write_text(config)
    return target


def write_tiny_model(folder: Path, *, zipmap: bool = False, double: bool = False, n_features: int = 4) -> Path:
    """A small real scikit-learn logistic regression, converted with skl2onnx, written to `folder/model.onnx`."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, n_features))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    tensor = DoubleTensorType if double else FloatTensorType
    onx = to_onnx(model, initial_types=[("x", tensor([None, n_features]))],
                  options={id(model): {"zipmap": zipmap}}, target_opset={"": 17, "ai.onnx.ml": 3})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    return folder / "model.onnx"
