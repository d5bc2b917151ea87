"""PyTriton: NVIDIA Triton Inference Server (shipped inside the `nvidia-pytriton` wheel) with its dynamic batcher
(`max_batch_size` 32, `max_queue_delay_microseconds` a few ms), the model run by a Python callable in this process
(Triton's Python backend hands it each batch). Triton speaks the Open Inference (V2) protocol:
`POST /v2/models/churn_mlp/infer`. gRPC and metrics are bound to loopback ports of their own.

    python pytriton_server.py --port P --model models/churn_mlp/1/model.onnx"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
from _model import NAME, Model, arguments
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _own_libpython() -> None:
    """Triton's Python backend stub loads `libpython3.X.so` by name: without this it may find the system's (Debian's
    3.11.2) and run it on this interpreter's standard library (3.11.7 here), which fails at start. This
    interpreter's own shared library comes first instead, where it has one; Triton's processes inherit it."""
    lib = Path(sys.base_prefix) / "lib"
    if (lib / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0").exists():
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), os.environ.get("LD_LIBRARY_PATH")) if p)


def main() -> None:
    args = arguments(__doc__ or "")
    _own_libpython()
    model = Model(args.model)

    @batch
    def infer(inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = model.run(inputs.astype(np.float32, copy=False))
        return {"label": out["label"].astype(np.int64).reshape(-1, 1), "probabilities": out["probabilities"]}

    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, grpc_address="127.0.0.1",
                          grpc_port=_free_port(), metrics_address="127.0.0.1", metrics_port=_free_port(),
                          log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(model_name=NAME, infer_func=infer,
                    inputs=[Tensor(name="inputs", dtype=np.float32, shape=(model.width,))],
                    outputs=[Tensor(name="label", dtype=np.int64, shape=(1,)),
                             Tensor(name="probabilities", dtype=np.float32, shape=(2,))],
                    config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
                        max_queue_delay_microseconds=int(args.max_delay_ms * 1000))),
                    strict=False)
        print("ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
