"""The V2 protocol's health and metadata routes, served through Starlette (they are not on the hot path)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import fastserve
from fastserve.exceptions import ModelNotReady
from fastserve.http.endpoints import JSONResponse
from fastserve.http.v2.tensors import datatype_of
from fastserve.registry import LoadedModel, LoadedVersion
from fastserve.registry.models import READY
from fastserve.routing.router import pinned
from fastserve.runtime.session import TensorInfo

PLATFORM = "onnxruntime_onnx"  # the name Triton gives models run by its onnxruntime backend
EXTENSIONS = ("binary_tensor_data",)
_NOT_READY = {"retry-after": "1"}


def _registry(request: Request) -> Any:
    return request.app.state.fastserve.registry


def _version(model: LoadedModel, version: str | None) -> LoadedVersion:
    """The version the path names, else the primary (what unversioned infer requests get when no canary is set)."""
    if version is not None:
        return pinned(model, version)
    if model.primary is None:
        raise ModelNotReady(f"model {model.name!r} has no version ready to serve", detail={"model": model.name})
    return model.primary


def _tensor(info: TensorInfo) -> dict[str, Any]:
    return {"name": info.name, "datatype": datatype_of(info.dtype),
            "shape": [d if isinstance(d, int) else -1 for d in info.shape]}


async def server_metadata(request: Request) -> Response:
    return JSONResponse({"name": "fastserve", "version": fastserve.__version__, "extensions": list(EXTENSIONS)})


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    is_ready = _registry(request).ready
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503,
                        headers=None if is_ready else _NOT_READY)


async def model_metadata(request: Request) -> Response:
    model = _registry(request).model(request.path_params["name"])
    version = _version(model, request.path_params.get("version"))
    if version.tensors is None:  # (loaded on demand, and not yet: `--lazy`)
        raise ModelNotReady(f"{version.label} has not been loaded yet; its first request loads it",
                            detail={"model": model.name, "version": version.number})
    tensor_in, tensors_out = version.tensors
    return JSONResponse({
        "name": model.name,
        "versions": [str(n) for n, v in sorted(model.versions.items()) if v.state == READY],
        "platform": PLATFORM,
        "inputs": [_tensor(tensor_in)],
        "outputs": [_tensor(o) for o in tensors_out],
    })


async def model_ready(request: Request) -> Response:
    model = _registry(request).model(request.path_params["name"])
    try:
        _version(model, request.path_params.get("version"))
        is_ready = True
    except ModelNotReady:
        is_ready = False
    return JSONResponse({"name": model.name, "ready": is_ready}, status_code=200 if is_ready else 503,
                        headers=None if is_ready else _NOT_READY)


ROUTES = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{name}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
]
