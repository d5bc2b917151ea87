"""Ray Serve with `@serve.batch` (`max_batch_size` 32, `batch_wait_timeout_s` a few ms): one replica behind Ray
Serve's HTTP proxy, a FastAPI ingress on fastserve's native route, taking fastserve's request and answering as
fastserve does (no `from __future__ import annotations` here: the ingress reads the real annotations). The replica
takes up to 256 requests at once (`max_ongoing_requests`; the default, 5, would cap a batch at 5). Access logs off.
Ray probes the network when it starts: run it in a network namespace with only loopback up (`unshare --net`, then
`ip link set lo up`), as `python -m benchmarks.peers.run` does.

    python ray_serve_server.py --port P --model models/churn_mlp/1/model.onnx"""

import signal
import sys
import threading
from typing import Any

import numpy as np
import ray
from _model import NATIVE, V2_META, Model, arguments, metadata, native_answer
from fastapi import FastAPI, Request
from ray import serve

app = FastAPI()


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class ChurnMLP:
    def __init__(self, model_path: str, max_batch: int, max_delay_s: float) -> None:
        self.model = Model(model_path)
        self.run.set_max_batch_size(max_batch)
        self.run.set_batch_wait_timeout_s(max_delay_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run(self, rows: list[np.ndarray]) -> list[dict[str, Any]]:
        out = self.model.run(np.concatenate(rows))
        return [native_answer({k: v[i:i + 1] for k, v in out.items()}) for i in range(len(rows))]

    @app.post(NATIVE)
    async def predict(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return await self.run(np.asarray(body["inputs"], dtype=np.float32))

    @app.get(V2_META)
    async def metadata(self) -> dict[str, Any]:
        return metadata()


def main() -> None:
    args = arguments(__doc__ or "")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port},
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    serve.run(ChurnMLP.bind(args.model, args.max_batch, args.max_delay_ms / 1000.0), route_prefix="/",
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
