"""LitServe with its dynamic batching (`max_batch_size` 32, `batch_timeout` a few ms) on fastserve's native route,
taking fastserve's request and answering as fastserve does. LitServe's own layout: one API server process (uvicorn)
hands requests to an inference worker process over queues; the worker forms the batches. `decode_request` and
`encode_response` are left unannotated: LitServe reads their annotations as the request and response models.

    python litserve_server.py --port P --model models/churn_mlp/1/model.onnx"""

from typing import Any

import litserve as ls
import numpy as np
from _model import NATIVE, V2_META, Model, arguments, metadata, native_answer


class ChurnAPI(ls.LitAPI):
    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(**options)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.model = Model(self.model_path)

    def decode_request(self, request):
        return np.asarray(request["inputs"], dtype=np.float32)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.run(x)

    def unbatch(self, output: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{k: v[i:i + 1] for k, v in output.items()} for i in range(len(output["label"]))]

    def encode_response(self, output):
        return native_answer(output)


async def _metadata() -> dict[str, Any]:
    return metadata()


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    api = ChurnAPI(args.model, max_batch_size=args.max_batch, batch_timeout=args.max_delay_ms / 1000.0,
                   api_path=NATIVE)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.app.add_api_route(V2_META, _metadata, methods=["GET"])  # fastserve bench reads it
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)
