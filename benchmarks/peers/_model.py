"""The bundled classifier as every peer runs it: one onnxruntime session on the CPU with fastserve's session options
(one intra-op and one inter-op thread, no spinning), and the V2 model metadata that `fastserve bench` reads to learn
the input's name, width and dtype. Imported by the peer servers from their own virtualenvs (numpy and onnxruntime
only), as a sibling module of the server file."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort

NAME = "churn_mlp"
NATIVE = f"/v1/models/{NAME}/predict"
V2_META = f"/v2/models/{NAME}"
V2_INFER = f"/v2/models/{NAME}/infer"


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="path of model.onnx")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    return parser.parse_args()


def session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class Model:
    def __init__(self, path: str) -> None:
        self.session = session(path)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.width = int(self.session.get_inputs()[0].shape[1])
        self.run(np.zeros((1, self.width), np.float32))  # warm

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """{output name: array} for rows `x` [N, 22] float32."""
        return dict(zip(self.outputs, self.session.run(None, {self.input: x}), strict=True))

    def metadata(self) -> dict[str, Any]:
        return metadata(self.input, self.width)


def metadata(input_name: str = "inputs", width: int = 22) -> dict[str, Any]:
    """V2 model metadata (`GET /v2/models/churn_mlp`)."""
    return {"name": NAME, "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": input_name, "datatype": "FP32", "shape": [-1, width]}],
            "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]}


def native_answer(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """fastserve's native answer body."""
    return {"model": NAME, "version": 1, "outputs": {k: v.tolist() for k, v in outputs.items()}}
