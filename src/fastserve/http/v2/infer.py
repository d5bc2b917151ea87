"""The V2 infer route, `POST /v2/models/{name}[/versions/{v}]/infer`, as a bare ASGI handler on the path the native
predict route takes (http/serving.py): same batcher, routing, deadlines, guard, shadows and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from fastserve._core.rows import v2_tensor
from fastserve.exceptions import FastserveError, UnsupportedMediaType
from fastserve.http.errors import v2_error_body, v2_status_for
from fastserve.http.inputs import FLOAT32, ROW_DTYPES, Inputs, refuse_oversized, row_limit
from fastserve.http.serving import Headers, Outputs, Scope, ServingApp, model_path, serve
from fastserve.http.v2.request import (
    InferRequest,
    first_values,
    load_request,
    model_input,
    parse_request,
    selected_outputs,
    split_body,
)
from fastserve.http.v2.tensors import encode_output
from fastserve.routing.router import reading
from fastserve.routing.routes import routes_of

if TYPE_CHECKING:
    from fastserve.registry import LoadedModel, LoadedVersion
    from fastserve.runtime import ModelSession

JSON = b"application/json"
BINARY = b"application/octet-stream"


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) for `/v2/models/{name}[/versions/{v}]/infer`, else None."""
    return model_path(path, "/v2/models/", "/infer")


class V2Wire:
    """The inference request object (JSON, optionally followed by binary tensor data); the inference response object
    (JSON, optionally followed by binary output data); errors as `{"error": message}`."""

    __slots__ = ("decoded", "header_length", "outputs", "request", "rows", "rows_for", "tail")

    def __init__(self) -> None:
        self.header_length: bytes | None = None
        self.request: InferRequest | None = None
        self.outputs: list[tuple[str, bool]] = []
        self.decoded: Any = None  # the request object's JSON, decoded
        self.tail = memoryview(b"")  # the binary tensor data after it
        self.rows: np.ndarray | None = None  # the common request's matrix, read for `rows_for` (`v2_tensor`)
        self.rows_for: LoadedVersion | None = None

    def start(self, headers: Headers) -> tuple[bytes | None, bytes | None, bytes | None]:
        content_length = timeout_header = request_id = None
        for key, value in headers:
            if key == b"content-length":
                content_length = value
            elif key == b"inference-header-content-length":
                self.header_length = value
            elif key == b"x-request-timeout-ms":
                timeout_header = value
            elif key == b"x-request-id":
                request_id = value
            elif key == b"content-encoding" and value.strip().lower() != b"identity":
                encoding = value.decode("latin-1")
                raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the body "
                                           "uncompressed", detail={"content_encoding": encoding})
        return content_length, timeout_header, request_id

    def body_id(self) -> str | None:
        return self.request.id if self.request is not None else None

    def decode(self, body: bytes, model: LoadedModel) -> Any:
        read_for, canary = reading(model), routes_of(model).canary
        head, self.tail = split_body(body, self.header_length)  # the binary tensor data is never parsed
        if read_for is None:
            self.request = request = parse_request(load_request(head), self.tail)
        else:
            primary, serving = read_for
            session = serving.session
            options = primary.config.inputs
            refuse_oversized(head, False, session, options, primary.field_count, "$.inputs")
            self.decoded = decoded = load_request(head)
            if canary is None and session.input_dtype in ROW_DTYPES:
                # The common request (one input of the model's float dtype, its values as JSON or binary data)
                # read in one pass in C; any other takes the general way, which tells what is wrong with it.
                common = v2_tensor(decoded, self.tail, session.input.name, session.n_features,
                                   row_limit(session, options), session.input_dtype == FLOAT32)
                if common is not None and session.fixed_batch in (None, len(common[0])):
                    self.rows, request_id, binary_output, timeout = common
                    self.rows_for = primary
                    self.request = InferRequest(request_id, [], None, binary_output,
                                                timeout / 1000 if timeout is not None else None)
                    return None
            self.request = request = parse_request(decoded, self.tail)
        if canary is not None and canary.field is not None:
            return first_values(request, canary.field)
        return None

    def inputs(self, target: LoadedVersion, session: ModelSession) -> Inputs:
        request = self.request
        assert request is not None  # (read by decode)
        if self.rows_for is not None:
            if self.rows_for is target and self.rows is not None:
                self.outputs = [(name, request.binary_output) for name in session.output_names]
                return Inputs(self.rows, request.timeout_ms, None)
            self.request = request = parse_request(self.decoded, self.tail)  # a version named in the path: its own
        self.outputs = selected_outputs(request, session)
        x, raw = model_input(request, session, target.config.inputs, target.transform, target.sketches_raw_fields)
        return Inputs(x, request.timeout_ms, raw)

    def answer(self, target: LoadedVersion, outputs: Outputs) -> tuple[bytes, Headers]:
        blobs: list[bytes] = []
        response: dict[str, Any] = {"model_name": target.model, "model_version": str(target.number)}
        assert self.request is not None  # (read by decode)
        request_id = self.request.id
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = [encode_output(name, outputs[name], binary, blobs) for name, binary in self.outputs]
        head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        if not blobs:
            return head, [(b"content-type", JSON)]
        return b"".join((head, *blobs)), [(b"content-type", BINARY),
                                          (b"inference-header-content-length", str(len(head)).encode())]

    def error(self, exc: FastserveError) -> tuple[int, bytes, bytes]:
        return v2_status_for(exc), orjson.dumps(v2_error_body(exc.message)), JSON


async def handle_infer(app: ServingApp, scope: Scope, receive: Any, send: Any, name: str, version: str | None) -> None:
    await serve(app, scope, receive, send, V2Wire(), name, version)
