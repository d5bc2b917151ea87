"""The admin API: load, unload, promote, roll back, reload. Off unless the server has a token; every call needs
`Authorization: Bearer <token>`."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastserve.exceptions import AdminDisabled, Unauthorized, VersionNotFound
from fastserve.http.endpoints import JSONResponse


def _authorized(request: Request) -> Any:
    app = request.app.state.fastserve
    token = app.config.admin_token
    if token is None:
        raise AdminDisabled("the admin API is off; start the server with FASTSERVE_ADMIN_TOKEN set or "
                            "--admin-token-file")
    given = request.headers.get("authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        raise Unauthorized("missing or wrong admin token: send `Authorization: Bearer <token>`")
    return app.registry


def _version(request: Request) -> int:
    raw = request.path_params["version"]
    if not raw.isdigit():
        raise VersionNotFound(f"version must be a number, got {raw!r}", detail={"version": raw})
    return int(raw)


async def load(request: Request) -> Response:
    model = await _authorized(request).load_version(request.path_params["name"], _version(request))
    return JSONResponse(model.status())


async def unload(request: Request) -> Response:
    model = await _authorized(request).unload_version(request.path_params["name"], _version(request))
    return JSONResponse(model.status())


async def promote(request: Request) -> Response:
    model = await _authorized(request).promote(request.path_params["name"], _version(request))
    return JSONResponse(model.status())


async def rollback(request: Request) -> Response:
    model = await _authorized(request).rollback(request.path_params["name"])
    return JSONResponse(model.status())


async def reload(request: Request) -> Response:
    """Read the repository and every config now, as the watcher would on its next poll."""
    registry = _authorized(request)
    await registry.sync()
    return JSONResponse({"models": [m.status() for _, m in sorted(registry.models.items())]})


ROUTES = [
    Route("/v1/admin/models/{name}/versions/{version}/load", load, methods=["POST"]),
    Route("/v1/admin/models/{name}/versions/{version}/unload", unload, methods=["POST"]),
    Route("/v1/admin/models/{name}/versions/{version}/promote", promote, methods=["POST"]),
    Route("/v1/admin/models/{name}/rollback", rollback, methods=["POST"]),
    Route("/v1/admin/reload", reload, methods=["POST"]),
]
