"""FastAPI + onnxruntime, no batching: one `session.run` per request on the event loop (uvicorn with uvloop and
httptools), the body validated by a pydantic model as a FastAPI application would.

    python fastapi_server.py --port P --model models/churn_mlp/1/model.onnx"""

from __future__ import annotations

import numpy as np
import uvicorn
from _model import NATIVE, V2_META, Model, arguments, native_answer
from fastapi import FastAPI
from pydantic import BaseModel


class Rows(BaseModel):
    inputs: list[list[float]]


def build(model: Model) -> FastAPI:
    app = FastAPI()

    @app.post(NATIVE)
    async def predict(body: Rows) -> dict:
        return native_answer(model.run(np.asarray(body.inputs, dtype=np.float32)))

    @app.get(V2_META)
    async def metadata() -> dict:
        return model.metadata()

    return app


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    uvicorn.run(build(Model(args.model)), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
