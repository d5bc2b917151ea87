"""The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`: built once, kept as bytes.

Each group of routes is one function returning its paths; `ROUTE_GROUPS` lists them. A new group of routes adds
its function there and reuses the shared pieces: `operation()`, the error responses by status (`ERRORS`), and the
schemas under `components`. Model names are not enumerated: models come and go while the server runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from fastserve import __version__
from fastserve.http.codecs import JSON, MSGPACK
from fastserve.http.inputs import TENSOR_DTYPES
from fastserve.metrics import PROMETHEUS_CONTENT_TYPE
from fastserve.registry.models import STATES

Schema = dict[str, Any]
Paths = dict[str, dict[str, Any]]


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _retry_after(description: str) -> Schema:
    return {"description": description, "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def _error(description: str, both_formats: bool = True, **headers: Schema) -> Schema:
    """An error answer: `{"error": {"code", "message", "detail"}}`, in JSON, or in the answer's format on predict."""
    formats = (JSON, MSGPACK) if both_formats else (JSON,)
    out: Schema = {"description": description, "content": {f: {"schema": ref("schemas", "Error")} for f in formats}}
    if headers:
        out["headers"] = {name.replace("_", "-"): header for name, header in headers.items()}
    return out


# Error answers by status; each route lists the ones it can give. Keys are names under components/responses.
ERRORS: dict[str, tuple[int, Schema]] = {
    "MalformedBody": (400, _error("The body is not valid JSON or msgpack, is empty, repeats a key within one object, "
                                  "holds a msgpack ext type, or Content-Length is invalid.")),
    "Unauthorized": (401, _error("Missing or wrong admin token.", False, WWW_Authenticate={
        "description": "`Bearer realm=\"fastserve admin\"`", "schema": {"type": "string"}})),
    "AdminDisabled": (403, _error("The admin API is off: the server has no admin token.", False)),
    "NotFound": (404, _error("No such model or version.")),
    "NotFoundJSON": (404, _error("No such model or version.", False)),
    "NotAcceptable": (406, _error("`Accept` names neither JSON nor msgpack (the error is in JSON).", False)),
    "Refused": (409, _error("The call cannot be carried out now; the message says why.", False)),
    "BodyTooLarge": (413, _error("The body is over the server's `--max-body-bytes`.")),
    "UnsupportedMediaType": (415, _error("`Content-Type` is neither JSON nor msgpack.")),
    "InvalidInput": (422, _error("The body decodes but is not what the model takes; the message and "
                                 "`detail.path` say where (`$.inputs[4]`, `$.records[3].age`).")),
    "InvalidAdminBody": (422, _error("The body is not the object this call takes; the message says where.", False)),
    "MalformedAdminBody": (400, _error("The body is not valid JSON.", False)),
    "AdminBodyTooLarge": (413, _error("The body is over the server's `--max-body-bytes`.", False)),
    "QueueFull": (429, _error("The model's queue is full (`[batching] max_queue_rows`).",
                              Retry_After=_retry_after("Seconds to wait before retrying."))),
    "InferenceFailed": (500, _error("ONNX Runtime failed on input that passed validation.")),
    "Unavailable": (503, _error("The model has no version ready, or the request's deadline cannot be met (refused "
                                "before running).",
                                Retry_After=_retry_after("Seconds to wait before retrying."))),
}


def operation(summary: str, tag: str, ok: Schema, errors: tuple[str, ...] = (), *, parameters: tuple[str, ...] = (),
              body: Schema | None = None, admin: bool = False, description: str = "") -> Schema:
    """One operation: its 200 answer `ok`, the error responses named in `errors` (keys of ERRORS), path and header
    `parameters` (names under components/parameters), an optional request `body`, and for `admin` the bearer token."""
    op: Schema = {"summary": summary, "tags": [tag], "responses": {"200": ok}}
    if description:
        op["description"] = description
    for name in errors:
        op["responses"][str(ERRORS[name][0])] = ref("responses", name)
    if parameters:
        op["parameters"] = [ref("parameters", p) for p in parameters]
    if body is not None:
        op["requestBody"] = body
    if admin:
        op["security"] = [{"adminToken": []}]
    return op


def _json(schema: Schema, description: str = "OK", **extra: Any) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


# --- schemas ---------------------------------------------------------------------------------------------------------

_REQUEST_ID_ANSWER: Schema = {"description": "The request's id: the client's X-Request-Id, else V2's `id`, else one "
                               "the server made. Labels name its rows `id` (a request of one row) or `id:row`.",
                               "required": True, "schema": {"type": "string"}}
_SCALAR: Schema = {"type": ["number", "string", "boolean", "null"]}
_ROWS: Schema = {"type": "array", "minItems": 1, "description": "Rows of the model's input features, in order.",
                 "items": {"type": "array", "minItems": 1, "items": {"type": "number"}}}
_TENSOR: Schema = {
    "type": "object", "required": ["dtype", "shape", "data"], "additionalProperties": False,
    "description": "msgpack only: a raw little-endian tensor, decoded with no per-value work.",
    "properties": {
        "dtype": {"enum": list(TENSOR_DTYPES)},
        "shape": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0},
                  "description": "[rows, features]"},
        "data": {"type": "string", "contentEncoding": "binary", "description": "msgpack bin: rows * features values"},
    },
}
_TIMEOUT: Schema = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e9,
                    "description": "The client's deadline in milliseconds (with X-Request-Timeout-Ms, the sooner "
                                   "wins; the model's latency_slo_ms applies too)."}


def _predict_request(inputs: Schema) -> Schema:
    data = {
        "inputs": inputs,
        "records": {"type": "array", "minItems": 1, "description": "Raw records, for a model with a feature spec.",
                    "items": {"type": "object", "additionalProperties": _SCALAR}},
        "columns": {"type": "object", "minProperties": 1, "description": "Raw columns of one length, for a model "
                    "with a feature spec.", "additionalProperties": {"type": "array", "items": _SCALAR}},
    }
    return {"type": "object", "additionalProperties": False, "properties": {**data, "timeout_ms": _TIMEOUT},
            "oneOf": [{"required": [key]} for key in data]}


_VERSION_STATUS: Schema = {
    "type": "object", "required": ["version", "state"],
    "properties": {"version": {"type": "integer"}, "state": {"enum": [*STATES, "serving"]},
                   "error": {"type": "string"},
                   "inputs": {"type": "array"}, "outputs": {"type": "array"}, "providers": {"type": "array"},
                   "features": {"type": "array"}},
}
_MODEL_STATUS: Schema = {
    "type": "object",
    "required": ["name", "description", "ready", "primary", "pinned", "policy", "versions", "routing", "events"],
    "properties": {
        "name": {"type": "string"}, "description": _nullable({"type": "string"}), "ready": {"type": "boolean"},
        "primary": _nullable({"type": "integer"}), "pinned": _nullable({"type": "integer"}),
        "policy": {"type": "object"}, "versions": {"type": "array", "items": _VERSION_STATUS},
        "routing": {"type": "object", "required": ["canary", "shadows"],
                    "properties": {"canary": _nullable({"type": "object"}), "shadows": {"type": "array"}}},
        "events": {"type": "array", "items": {"type": "object", "required": ["at", "event"]}},
    },
}
SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "detail"], "additionalProperties": False,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "detail": {"description": "Where and what, for programs: `path`, `expected`, `got`..."}},
        }},
    },
    "PredictRequest": _predict_request(_ROWS),
    "PredictRequestMsgpack": _predict_request({"anyOf": [_ROWS, _TENSOR]}),
    "PredictResponse": {
        "type": "object", "required": ["model", "version", "outputs"], "additionalProperties": False,
        "properties": {"model": {"type": "string"}, "version": {"type": "integer"},
                       "outputs": {"type": "object", "description": "Every ONNX output by name, one entry per row.",
                                   "additionalProperties": {"type": "array"}}},
    },
    "ModelStatus": _MODEL_STATUS,
    "V2Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {"type": "string"}}},
    # In admin bodies a null is the same as a field left out.
    "AdminCanary": {"type": "object", "additionalProperties": False, "properties": {
        "version": _nullable({"type": "integer"}), "weight": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "sticky_key": _nullable({"type": "string", "description": "A record field, or `header:X-User-Id`.", "anyOf": [
            {"pattern": "^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}, {"minLength": 1, "not": {"pattern": "^header:"}}]})}},
    "AdminShadow": {"type": "object", "additionalProperties": False, "properties": {
        "sample": _nullable({"type": "number", "minimum": 0, "maximum": 1, "default": 1.0})}},
}
PARAMETERS: dict[str, Schema] = {
    "name": {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "example": "churn",
             "description": "The model's folder name in the repository."},
    "version": {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0},
                "example": 1, "description": "A version number (a version folder's name)."},
    "timeout": {"name": "X-Request-Timeout-Ms", "in": "header", "required": False, "schema": _TIMEOUT},
    "requestId": {"name": "X-Request-Id", "in": "header", "required": False,
                  "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
                  "description": "The request's id, for the labels posted later to `/feedback` (default: one the "
                                 "server makes)."},
}


# --- routes ----------------------------------------------------------------------------------------------------------

def _predict_paths() -> Paths:
    ok = {"description": "Every model output, in the format `Accept` asks for (default: the request's).",
          "headers": {"X-Model-Version": {"description": "The version that answered.", "required": True,
                                          "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                      "X-Request-Id": _REQUEST_ID_ANSWER},
          "content": {f: {"schema": ref("schemas", "PredictResponse")} for f in (JSON, MSGPACK)}}
    example = {"inputs": [[0.5] * 22]}  # a row for the bundled churn model
    body = {"required": True,
            "content": {JSON: {"schema": ref("schemas", "PredictRequest"), "example": example},
                        MSGPACK: {"schema": ref("schemas", "PredictRequestMsgpack"), "example": example}}}
    errors = ("MalformedBody", "NotFound", "NotAcceptable", "BodyTooLarge", "UnsupportedMediaType", "InvalidInput",
              "QueueFull", "InferenceFailed", "Unavailable")
    other = "Other methods: 405 with `Allow: POST`."
    return {
        "/v1/models/{name}/predict": {"description": other, "post": operation(
            "Predict with the model's primary (or canary)", "predict", ok, errors,
            parameters=("name", "timeout", "requestId"), body=body)},
        "/v1/models/{name}/versions/{version}/predict": {"description": other, "post": operation(
            "Predict with one version", "predict", ok, errors, parameters=("name", "version", "timeout", "requestId"),
            body=body)},
    }


def _model_paths() -> Paths:
    listing = {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
        "type": "object", "required": ["name", "ready", "primary", "versions"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                       "primary": _nullable({"type": "integer"}),
                       "versions": {"type": "array", "items": _VERSION_STATUS}}}}}}
    drift = {"type": "object", "required": ["model", "versions"], "properties": {
        "model": {"type": "string"},
        "versions": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "drift"],
            "properties": {"version": {"type": "integer"}, "state": {"enum": list(STATES)},
                           "drift": _nullable({"type": "object", "required": ["status"]}),
                           "why": {"type": "string"}}}}}}
    return {
        "/v1/models": {"get": operation("Models, their versions and states", "models", _json(listing))},
        "/v1/models/{name}": {"get": operation(
            "A model's versions, states, gate results, inputs and outputs, routing and events", "models",
            _json(ref("schemas", "ModelStatus")), ("NotFoundJSON",), parameters=("name",))},
        "/v1/models/{name}/drift": {"get": operation(
            "Per version: drift status and the last window's scores", "models", _json(drift), ("NotFoundJSON",),
            parameters=("name",))},
    }


def _quality_paths() -> Paths:
    label = {"type": ["integer", "string", "number"], "description": "The true class, or a regressor's true value."}
    request_id = {"type": "string", "minLength": 1, "maxLength": 140,
                  "description": "An answer's X-Request-Id (`id:row` for a row of a request of several rows)."}
    feedback = {"anyOf": [
        {"type": "object", "required": ["ids", "labels"], "additionalProperties": False,
         "properties": {"ids": {"type": "array", "minItems": 1, "items": request_id},
                        "labels": {"type": "array", "minItems": 1, "items": label}}},
        {"type": "object", "required": ["records"], "additionalProperties": False,
         "properties": {"records": {"type": "array", "minItems": 1, "items": {
             "type": "object", "required": ["id", "label"], "additionalProperties": False,
             "properties": {"id": request_id, "label": label}}}}}]}
    counted = {"type": "integer", "minimum": 0}
    joined = {"type": "object", "required": ["model", "received", "joined", "unknown", "expired", "repeated",
                                             "not_joined"],
              "properties": {"model": {"type": "string"}, "received": counted, "joined": counted,
                             "unknown": counted, "expired": counted, "repeated": counted,
                             "not_joined": {"type": "array", "items": {"type": "object"}}}}
    quality = {"type": "object", "required": ["model", "store", "ids", "versions"], "properties": {
        "model": {"type": "string"}, "store": _nullable({"type": "object"}), "ids": {"type": "object"},
        "versions": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "quality"],
            "properties": {"version": {"type": "integer"}, "state": {"enum": list(STATES)},
                           "quality": _nullable({"type": "object", "required": ["kind", "status"]}),
                           "why": {"type": "string"}}}}}}
    body = {"required": True, "content": {f: {"schema": feedback, "example": {"ids": ["1f3a9c0e00000001"],
                                                                              "labels": [1]}}
                                          for f in (JSON, MSGPACK)}}
    ok = {"description": "How many labels joined an answer, and why the others did not.",
          "content": {f: {"schema": joined} for f in (JSON, MSGPACK)}}
    return {
        "/v1/models/{name}/feedback": {"post": operation(
            "Labels for earlier answers, by request id", "quality", ok,
            ("MalformedBody", "NotFound", "NotAcceptable", "BodyTooLarge", "UnsupportedMediaType", "InvalidInput"),
            parameters=("name",), body=body)},
        "/v1/models/{name}/quality": {"get": operation(
            "Per version: live quality against labels, by window and since load, beside its reference", "models",
            _json(quality), ("NotFoundJSON",), parameters=("name",))},
    }


def _service_paths() -> Paths:
    ready = {"type": "object", "required": ["ready", "loading", "shutting_down", "models"], "properties": {
        "ready": {"type": "boolean"}, "loading": {"type": "boolean"}, "shutting_down": {"type": "boolean"},
        "models": {"type": "object", "additionalProperties": {"type": "boolean"}}}}
    not_ready = _json(ready, "Some model has no version ready to serve (models load in the background after start), "
                      "or the server is shutting down.",
                      headers={"Retry-After": _retry_after("Seconds to wait before asking again.")})
    readyz = operation("Whether every model has a version ready to serve", "service",
                       _json(ready, "Every model can serve."))
    readyz["responses"]["503"] = not_ready
    metrics = {"description": "Prometheus text exposition.",
               "content": {PROMETHEUS_CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}
    return {
        "/healthz": {"get": operation("The process is alive", "service", _json(
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}))},
        "/readyz": {"get": readyz},
        "/metrics": {"get": operation("Prometheus metrics", "service", metrics)},
        "/openapi.json": {"get": operation("This document", "service", _json({"type": "object"}))},
    }


def _admin_paths() -> Paths:
    status = _json(ref("schemas", "ModelStatus"), "The model's status after the call.")
    always = ("Unauthorized", "AdminDisabled")
    calls = (*always, "NotFoundJSON", "Refused")
    with_body = (*calls, "MalformedAdminBody", "AdminBodyTooLarge", "InvalidAdminBody")

    def admin(summary: str, parameters: tuple[str, ...], errors: tuple[str, ...] = calls,
              body: str | None = None, example: Schema | None = None) -> Schema:
        request = {"required": False, "content": {JSON: {"schema": ref("schemas", body), "example": example}}} \
            if body else None
        return operation(summary, "admin", status, errors, parameters=parameters, body=request, admin=True)

    model, version = ("name",), ("name", "version")
    base = "/v1/admin/models/{name}"
    return {
        f"{base}/versions/{{version}}/load": {"post": admin("Load, warm and gate a version; keep it loaded", version)},
        f"{base}/versions/{{version}}/unload": {"post": admin("Drain and unload a version; keep it unloaded",
                                                              version)},
        f"{base}/versions/{{version}}/promote": {"post": admin("Make a version the primary", version)},
        f"{base}/rollback": {"post": admin("Make the previous primary the primary again", model)},
        f"{base}/canary": {
            "post": admin("Start or change the canary (a weight alone changes it; 0 stops it)", model, with_body,
                          "AdminCanary", {"version": 2, "weight": 0.1, "sticky_key": "header:X-User-Id"}),
            "delete": admin("Stop the canary", model)},
        f"{base}/canary/promote": {"post": admin("Make the canary the primary", model)},
        f"{base}/shadows/{{version}}": {
            "post": admin("Add a shadow, or change its sample", version, with_body, "AdminShadow", {"sample": 0.5}),
            "delete": admin("Remove a shadow", version)},
        "/v1/admin/reload": {"post": operation(
            "Look at the repository and every config now", "admin",
            _json({"type": "object", "required": ["models"],
                   "properties": {"models": {"type": "array", "items": ref("schemas", "ModelStatus")}}}),
            always, admin=True)},
    }


def _v2_error(description: str, retry: bool = False) -> Schema:
    """A V2 (Open Inference protocol) error: `{"error": "<message>"}`."""
    out: Schema = {"description": description, "content": {JSON: {"schema": ref("schemas", "V2Error")}}}
    if retry:
        out["headers"] = {"Retry-After": _retry_after("Seconds to wait before retrying.")}
    return out


V2_ERRORS: dict[int, Schema] = {
    400: _v2_error("The request is not a valid inference request, or holds what the model cannot take; the message "
                   "says where (`inputs[0].shape`)."),
    404: _v2_error("No such model or version."),
    413: _v2_error("The body is over the server's `--max-body-bytes`."),
    415: _v2_error("A compressed body (Content-Encoding): send it uncompressed."),
    429: _v2_error("The model's queue is full.", retry=True),
    500: _v2_error("ONNX Runtime failed on input that passed validation."),
    503: _v2_error("No version ready, or the deadline cannot be met (refused before running).", retry=True),
}


def _v2(summary: str, ok: Schema, statuses: tuple[int, ...] = (), parameters: tuple[str, ...] = (),
        body: Schema | None = None) -> Schema:
    op = operation(summary, "v2", ok, parameters=parameters, body=body)
    for status in statuses:
        op["responses"][str(status)] = V2_ERRORS[status]
    return op


def _v2_paths() -> Paths:
    tensor = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"enum": ["BOOL", "INT32", "INT64", "FP32", "FP64", "BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer"}}, "parameters": {"type": "object"},
        "data": {"type": "array", "description": "Row-major values, flat or nested; left out when the tensor is "
                                                 "sent as binary data (`parameters.binary_data_size`)."}}}
    request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object", "description": "`binary_data_output`, `timeout` "
                                                                                   "(microseconds)."},
        "inputs": {"type": "array", "minItems": 1, "items": tensor},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
    response = {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": tensor}}}
    infer_ok = {"description": "The outputs; with binary outputs, the JSON header (its length in "
                               "Inference-Header-Content-Length) followed by the tensors' bytes.",
                "content": {JSON: {"schema": response},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    body = {"required": True, "description": "JSON; or, with the binary tensor data extension, a JSON header of "
                                             "Inference-Header-Content-Length bytes followed by the tensors' bytes.",
            "content": {JSON: {"schema": request, "example": {"inputs": [
                {"name": "inputs", "datatype": "FP32", "shape": [1, 22], "data": [0.5] * 22}]}}}}
    metadata = {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"], "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"}, "inputs": {"type": "array", "items": tensor},
        "outputs": {"type": "array", "items": tensor}}}
    model_ready = {"type": "object", "required": ["name", "ready"], "properties": {
        "name": {"type": "string"}, "ready": {"type": "boolean"}}}
    not_ready = _json(model_ready, "No version ready to serve.", headers={"Retry-After": _retry_after("Seconds.")})
    server_ready = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
    ready_op = _v2("Whether every model can serve", _json(server_ready))
    ready_op["responses"]["503"] = _json(server_ready, "Some model cannot serve yet.",
                                         headers={"Retry-After": _retry_after("Seconds.")})
    paths: Paths = {
        "/v2": {"get": _v2("Server metadata", _json({"type": "object", "required": ["name", "version", "extensions"],
                                                       "properties": {"name": {"type": "string"},
                                                                      "version": {"type": "string"},
                                                                      "extensions": {"type": "array"}}}))},
        "/v2/health/live": {"get": _v2("The server is alive", _json(
            {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}))},
        "/v2/health/ready": {"get": ready_op},
    }
    for prefix, params in (("/v2/models/{name}", ("name",)), ("/v2/models/{name}/versions/{version}",
                                                               ("name", "version"))):
        ready = _v2("Whether the model (version) can serve", _json(model_ready), (404,), params)
        ready["responses"]["503"] = not_ready
        paths[prefix] = {"get": _v2("Model metadata", _json(metadata), (404, 503), params)}
        paths[f"{prefix}/ready"] = {"get": ready}
        paths[f"{prefix}/infer"] = {"description": "Other methods: 405 with `Allow: POST`.", "post": _v2(
            "Inference (Open Inference / KServe V2 protocol)", infer_ok, (400, 404, 413, 415, 429, 500, 503),
            (*params, "timeout"), body)}
    return paths


ROUTE_GROUPS: tuple[Callable[[], Paths], ...] = (_predict_paths, _model_paths, _quality_paths, _service_paths,
                                                 _admin_paths, _v2_paths)


def document() -> dict[str, Any]:
    paths: Paths = {}
    for group in ROUTE_GROUPS:
        paths.update(group())
    return {
        "openapi": "3.1.0",
        "info": {"title": "fastserve", "version": __version__,
                 "description": "Inference server for ONNX models of tabular data. Errors are "
                                "`{\"error\": {\"code\", \"message\", \"detail\"}}`."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": {name: response for name, (_, response) in ERRORS.items()},
            "securitySchemes": {"adminToken": {
                "type": "http", "scheme": "bearer",
                "description": "The server's admin token (FASTSERVE_ADMIN_TOKEN or --admin-token-file)."}},
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served: built on first use, then the same bytes every time."""
    return orjson.dumps(document())
