"""The admin API: load, unload, promote, roll back, reload; canary and shadows.

Off unless the server has a token; every call needs `Authorization: Bearer <token>`."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastserve.config import sticky_key_error
from fastserve.exceptions import AdminDisabled, InvalidInput, MalformedBody, Unauthorized, VersionNotFound
from fastserve.http.endpoints import JSONResponse
from fastserve.http.serving import read_body
from fastserve.registry.repository import version_number
from fastserve.routing.operations import perform


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
    return app


async def _operate(app: Any, operation: str, *args: Any) -> Response:
    """Run the operation here, or, in a worker process, in the supervisor, which applies it in every worker before
    it answers."""
    if app.control is not None:
        return JSONResponse(await app.control.operate(operation, *args))
    return JSONResponse(await perform(app.registry, operation, *args))


def _version(request: Request) -> int:
    raw = request.path_params["version"]
    number = version_number(raw)
    if number is None:
        raise VersionNotFound(f"version must be a number, got {raw!r}", detail={"version": raw})
    return number


async def load(request: Request) -> Response:
    return await _operate(_authorized(request), "load_version", request.path_params["name"], _version(request))


async def unload(request: Request) -> Response:
    return await _operate(_authorized(request), "unload_version", request.path_params["name"], _version(request))


async def promote(request: Request) -> Response:
    return await _operate(_authorized(request), "promote", request.path_params["name"], _version(request))


async def rollback(request: Request) -> Response:
    return await _operate(_authorized(request), "rollback", request.path_params["name"])


async def _body(request: Request) -> dict[str, Any]:
    # Within the server's body limit, as on the predict route: refused from its Content-Length, or while counting.
    declared = request.headers.get("content-length")
    raw = await read_body(request.receive, None if declared is None else declared.encode("latin-1"),
                          request.app.state.fastserve.config.max_body_bytes)
    try:
        # orjson, as on the predict route: it refuses NaN and nesting past 1024 levels (the stdlib's json would
        # take NaN, and recurse until RecursionError).
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body must be a JSON object: {exc}") from None
    if type(body) is not dict:
        raise InvalidInput("the body must be a JSON object - at `$`", detail={"path": "$"})
    return body


def _checked(body: dict[str, Any], keys: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    unknown = sorted(body.keys() - keys.keys())
    if unknown:
        raise InvalidInput(f"unknown field `{unknown[0]}`; expected {', '.join(keys)} - at `$`", detail={"path": "$"})
    for key, kinds in keys.items():
        value = body.get(key)
        if value is not None and (type(value) not in kinds or (float in kinds and not 0 <= value <= 1)):
            what = "a number between 0 and 1" if float in kinds else " or ".join(k.__name__ for k in kinds)
            raise InvalidInput(f"expected {what}, got {value!r} - at `$.{key}`", detail={"path": f"$.{key}"})
    return body


async def set_canary(request: Request) -> Response:
    """Body: {"version": 3, "weight": 0.1, "sticky_key": "user_id" | "header:X-User-Id"}; a weight alone changes
    the current canary's weight (0 stops it)."""
    app = _authorized(request)
    body = _checked(await _body(request), {"version": (int,), "weight": (int, float), "sticky_key": (str,)})
    sticky = body.get("sticky_key")
    why = sticky_key_error(sticky) if sticky is not None else None
    if why is not None:  # a header name is sent as latin-1 by HTTP: anything else can never match
        raise InvalidInput(f"{why} - at `$.sticky_key`", detail={"path": "$.sticky_key"})
    weight = body.get("weight")
    return await _operate(app, "set_canary", request.path_params["name"], body.get("version"),
                          float(weight) if weight is not None else None, body.get("sticky_key"))


async def remove_canary(request: Request) -> Response:
    return await _operate(_authorized(request), "remove_canary", request.path_params["name"])


async def promote_canary(request: Request) -> Response:
    return await _operate(_authorized(request), "promote_canary", request.path_params["name"])


async def add_shadow(request: Request) -> Response:
    """Body: {"sample": 0.5} (default 1.0)."""
    app = _authorized(request)
    body = _checked(await _body(request), {"sample": (int, float)})
    sample = body.get("sample")
    return await _operate(app, "add_shadow", request.path_params["name"], _version(request),
                          float(sample) if sample is not None else 1.0)


async def remove_shadow(request: Request) -> Response:
    return await _operate(_authorized(request), "remove_shadow", request.path_params["name"], _version(request))


async def reload(request: Request) -> Response:
    """Read the repository and every config now, as the watcher would on its next poll."""
    return await _operate(_authorized(request), "reload")


def _by_method(**endpoints: Any) -> Any:
    """One route for a path with several methods: two Routes on one path would each answer 405 with only their own
    method in `Allow`."""
    async def dispatch(request: Request) -> Response:
        response: Response = await endpoints[request.method](request)
        return response
    return dispatch


ROUTES = [
    Route("/v1/admin/models/{name}/versions/{version}/load", load, methods=["POST"]),
    Route("/v1/admin/models/{name}/versions/{version}/unload", unload, methods=["POST"]),
    Route("/v1/admin/models/{name}/versions/{version}/promote", promote, methods=["POST"]),
    Route("/v1/admin/models/{name}/rollback", rollback, methods=["POST"]),
    Route("/v1/admin/models/{name}/canary", _by_method(POST=set_canary, DELETE=remove_canary),
          methods=["POST", "DELETE"]),
    Route("/v1/admin/models/{name}/canary/promote", promote_canary, methods=["POST"]),
    Route("/v1/admin/models/{name}/shadows/{version}", _by_method(POST=add_shadow, DELETE=remove_shadow),
          methods=["POST", "DELETE"]),
    Route("/v1/admin/reload", reload, methods=["POST"]),
]
