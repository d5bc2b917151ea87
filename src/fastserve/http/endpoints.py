"""Everything but predict: model listing and status, health, readiness, metrics. Served through Starlette."""

from __future__ import annotations

from typing import Any, cast

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastserve.exceptions import FastserveError
from fastserve.http.errors import error_body, error_headers, is_v2, status_for, v2_error_body, v2_status_for
from fastserve.http.openapi import document_bytes
from fastserve.metrics import PROMETHEUS_CONTENT_TYPE


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _app(request: Request) -> Any:
    return request.app.state.fastserve


async def list_models(request: Request) -> Response:
    registry = _app(request).registry
    return JSONResponse({"models": [
        {"name": m.name, "ready": m.ready, "primary": m.primary.number if m.primary else None,
         "versions": [{"version": v.number, "state": v.state} for _, v in sorted(m.versions.items())]}
        for _, m in sorted(registry.models.items())
    ]})


async def model_status(request: Request) -> Response:
    return JSONResponse(_app(request).registry.model(request.path_params["name"]).status())


async def model_drift(request: Request) -> Response:
    """Per version: its drift status, the last window's scores per column, and the scores since load."""
    model = _app(request).registry.model(request.path_params["name"])
    return JSONResponse({"model": model.name, "versions": [
        {"version": n, "state": v.state, "drift": v.drift.report() if v.drift else None,
         **({} if v.drift else {"why": "no profile.json in the version folder, or [drift] enabled = false"})}
        for n, v in sorted(model.versions.items())]})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    app = _app(request)
    registry = app.registry
    models = {name: m.ready for name, m in sorted(registry.models.items())}
    ready = registry.ready and not app.shutting_down
    body = {"ready": ready, "loading": not registry.loaded, "shutting_down": app.shutting_down, "models": models}
    return JSONResponse(body, status_code=200 if ready else 503, headers=None if ready else {"retry-after": "1"})


async def metrics(request: Request) -> Response:
    return Response(_app(request).metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)


async def openapi_document(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")


async def fastserve_error(request: Request, exc: Exception) -> Response:
    exc = cast(FastserveError, exc)  # registered for this type only
    v2 = is_v2(request.url.path)
    status = v2_status_for(exc) if v2 else status_for(exc)
    headers = {k.decode(): v.decode() for k, v in error_headers(exc, status)}
    body = v2_error_body(exc.message) if v2 else error_body(exc.code, exc.message, exc.detail)
    return JSONResponse(body, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    exc = cast(HTTPException, exc)  # registered for this type only
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no route for {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    body = v2_error_body(message) if is_v2(request.url.path) else error_body(code, message)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
