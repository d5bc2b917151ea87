"""BentoML with its adaptive batching: a batchable API (`max_batch_size` 32) on fastserve's native route, which
takes fastserve's request (`{"inputs": [[22 floats]]}`). BentoML learns how long to wait for a batch from the run
times it measures (there is no delay to set); `max_latency_ms` is the time a queued request may wait before BentoML
refuses it, set to 1 s so that it never refuses a request the SLO has not already failed. A batchable API answers
one list element per row: `[{"label": 1, "probabilities": [p0, p1]}]`. Access logs off; one worker.

    python bentoml_server.py --port P --model models/churn_mlp/1/model.onnx

runs `bentoml serve bentoml_server:ChurnMLP` here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from _model import NATIVE, Model, metadata
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_BATCH = int(os.environ.get("FASTSERVE_PEER_MAX_BATCH", "32"))


async def _metadata(request: Request) -> JSONResponse:
    return JSONResponse(metadata())


metadata_app = Starlette(routes=[Route("/models/churn_mlp", _metadata)])  # fastserve bench reads it


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
@bentoml.asgi_app(metadata_app, path="/v2")
class ChurnMLP:
    def __init__(self) -> None:
        self.model = Model(os.environ["FASTSERVE_PEER_MODEL"])

    @bentoml.api(route=NATIVE, batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=1000)
    async def predict(self, inputs: np.ndarray) -> list[dict[str, Any]]:
        out = self.model.run(inputs.astype(np.float32, copy=False))
        return [{"label": int(label), "probabilities": p.tolist()}
                for label, p in zip(out["label"], out["probabilities"], strict=True)]


if __name__ == "__main__":
    from _model import arguments

    args = arguments(__doc__ or "")
    here = Path(__file__).resolve().parent
    env = {**os.environ, "FASTSERVE_PEER_MODEL": str(Path(args.model).resolve()),
           "FASTSERVE_PEER_MAX_BATCH": str(args.max_batch), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    os.chdir(here)
    os.execve(str(bentoml_cli), [str(bentoml_cli), "serve", "bentoml_server:ChurnMLP", "--host", "127.0.0.1",
                                 "--port", str(args.port)], env)
