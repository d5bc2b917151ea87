"""The peers: what each installs, which file serves, which route it answers, and how it batches.

Each peer serves `models/churn_mlp/1/model.onnx` with onnxruntime on the CPU (one intra-op thread, as fastserve's
bundled config), one row per request from the client. Batching: max batch 32 and a few ms of delay where the peer
has its own (FastAPI has none)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
MODEL = ROOT / "models" / "churn_mlp" / "1" / "model.onnx"
MODEL_NAME = "churn_mlp"
MAX_BATCH = 32
MAX_DELAY_MS = 2.0

NATIVE = f"/v1/models/{MODEL_NAME}/predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"

# onnxruntime and numpy for every peer; the lower bounds are the first releases with the batching options used here.
COMMON = ["onnxruntime>=1.17", "numpy>=1.26"]


@dataclass(frozen=True)
class Peer:
    name: str
    packages: tuple[str, ...]
    distributions: tuple[str, ...]  # whose installed versions are recorded
    protocol: str  # "native" (fastserve's JSON route) or "v2" (Open Inference)
    batching: str  # in words, for the README's table
    network_namespace: bool = False  # probes the network at start: run inside `unshare --net`

    @property
    def server(self) -> Path:
        return HERE / f"{self.name}_server.py"

    @property
    def route(self) -> str:
        return NATIVE if self.protocol == "native" else V2


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("fastapi", ("fastapi>=0.100", "uvicorn[standard]>=0.29"), ("fastapi", "uvicorn"), "native",
         "none (one `session.run` per request, on the event loop)"),
    Peer("mlserver", ("mlserver>=1.3",), ("mlserver",), "v2",
         "adaptive batching: `max_batch_size` 32, `max_batch_time` 2 ms"),
    Peer("bentoml", ("bentoml>=1.2",), ("bentoml",), "native",
         "adaptive batching: `@bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=...)`"),
    Peer("litserve", ("litserve>=0.2.5",), ("litserve",), "native",
         "dynamic batching: `max_batch_size=32`, `batch_timeout=0.002`"),
    Peer("ray_serve", ("ray[serve]>=2.9",), ("ray",), "native",
         "`@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)`", network_namespace=True),
    Peer("pytriton", ("nvidia-pytriton>=0.5",), ("nvidia-pytriton",), "v2",
         "Triton's dynamic batcher: `max_batch_size` 32, `max_queue_delay_microseconds` 2000"),
)}


def peers_dir() -> Path:
    """Where the virtualenvs live: $FASTSERVE_PEERS_DIR, else /tmp/fastserve-peers."""
    return Path(os.environ.get("FASTSERVE_PEERS_DIR", "/tmp/fastserve-peers"))


def python(peer: Peer) -> Path:
    return peers_dir() / peer.name / "venv" / "bin" / "python"


def install_record(peer: Peer) -> Path:
    return peers_dir() / peer.name / "install.json"
