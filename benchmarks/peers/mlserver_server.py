"""Seldon MLServer with a custom runtime that runs the ONNX model with onnxruntime, and MLServer's adaptive batching
(`max_batch_size` 32, `max_batch_time` a few ms). MLServer speaks the Open Inference (V2) protocol:
`POST /v2/models/churn_mlp/infer`. Inference runs in the server's own process (`parallel_workers` 0: on one core a
worker process would only add a hand-off per batch); metrics and gRPC are off where the settings allow.

    python mlserver_server.py --port P --model models/churn_mlp/1/model.onnx

writes MLServer's settings to a temporary folder and runs `mlserver start` on it."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

HERE = Path(__file__).resolve().parent


class OnnxModel(MLModel):
    async def load(self) -> bool:
        from _model import Model

        self._model = Model(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        outputs = self._model.run(x.reshape(-1, self._model.width))
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(name, value) for name, value in outputs.items()])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    from _model import NAME, arguments

    args = arguments(__doc__ or "")
    folder = Path(tempfile.mkdtemp(prefix="fastserve-mlserver-"))
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": args.port, "grpc_port": _free_port(), "parallel_workers": 0,
        "metrics_endpoint": None, "metrics_port": _free_port(), "debug": False, "load_models_at_startup": True,
    }))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": NAME, "implementation": "mlserver_server.OnnxModel",
        "max_batch_size": args.max_batch, "max_batch_time": args.max_delay_ms / 1000.0,
        "inputs": [{"name": "inputs", "datatype": "FP32", "shape": [-1, 22]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "parameters": {"uri": str(Path(args.model).resolve()), "version": "1"},
    }))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    mlserver = Path(sys.executable).parent / "mlserver"
    os.execve(str(mlserver), [str(mlserver), "start", str(folder)], env)


if __name__ == "__main__":
    main()
