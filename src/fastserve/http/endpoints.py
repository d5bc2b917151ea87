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
from fastserve.registry.operations import drift_report, listing


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _app(request: Request) -> Any:
    return request.app.state.fastserve


# In a worker process (`--workers N`) the views of the whole server come from the supervisor (`app.control`).

async def list_models(request: Request) -> Response:
    app = _app(request)
    return JSONResponse(await app.control.view("listing") if app.control else listing(app.registry))


async def model_status(request: Request) -> Response:
    app, name = _app(request), request.path_params["name"]
    return JSONResponse(await app.control.view("status", name) if app.control else app.registry.model(name).status())


async def model_drift(request: Request) -> Response:
    app, name = _app(request), request.path_params["name"]
    return JSONResponse(await app.control.view("drift", name) if app.control else drift_report(app.registry, name))


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
    app = _app(request)
    text = await app.control.view("metrics") if app.control else await app.metrics.render_async()
    return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)


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
