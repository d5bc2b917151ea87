"""The native predict route as a bare ASGI handler: the hot path pays for no framework layer it does not need."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from fastserve._core.answers import msgpack_arrays
from fastserve._core.rows import json_rows, msgpack_tensor
from fastserve.exceptions import FastserveError, NotAcceptable
from fastserve.http.codecs import CONTENT_TYPE_HEADER, JSON, MSGPACK, decode, encode, request_format, response_format
from fastserve.http.errors import error_body, status_for
from fastserve.http.inputs import FLOAT32, ROW_DTYPES, Inputs, predict_inputs, refuse_oversized, row_limit
from fastserve.http.serving import Headers, Outputs, Scope, ServingApp, model_path, serve
from fastserve.routing.router import reading
from fastserve.routing.routes import routes_of

if TYPE_CHECKING:
    from fastserve.registry import LoadedModel, LoadedVersion
    from fastserve.runtime import ModelSession


def predict_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) for `/v1/models/{name}[/versions/{v}]/predict`, else None."""
    return model_path(path, "/v1/models/", "/predict")


def msgpack_answer(model: str, version: int, outputs: Outputs) -> bytes | None:
    """The answer in msgpack with its output arrays written in C (_core.answers): byte for byte what msgpack writes
    from them as lists, three times faster; None for outputs it does not write (msgpack then does)."""
    arrays = msgpack_arrays(outputs)
    return None if arrays is None else _answer_head(model, version) + arrays


@functools.lru_cache(maxsize=1024)
def _answer_head(model: str, version: int) -> bytes:
    """`{"model": model, "version": version, "outputs": ` in msgpack: the answer's map of three, up to its outputs."""
    return b"\x83" + b"".join(msgpack.packb(v, use_bin_type=True) for v in ("model", model, "version", version,
                                                                            "outputs"))


class NativeWire:
    """`{"inputs" | "records" | "columns", "timeout_ms"}` in JSON or msgpack by Content-Type; the answer
    `{"model", "version", "outputs"}` in the format Accept names; errors `{"error": {"code", "message", "detail"}}`."""

    __slots__ = ("body", "body_fmt", "decoded", "fmt", "rows", "rows_for")

    def __init__(self) -> None:
        self.fmt = self.body_fmt = JSON
        self.decoded: Any = None
        self.body = b""
        self.rows: np.ndarray | None = None  # the body's matrix, read straight from its bytes for `rows_for`
        self.rows_for: LoadedVersion | None = None

    def start(self, headers: Headers) -> tuple[bytes | None, bytes | None, bytes | None]:
        content_type = accept = content_length = timeout_header = request_id = None
        for key, value in headers:
            if key == b"content-type":
                content_type = value
            elif key == b"accept":
                accept = value
            elif key == b"content-length":
                content_length = value
            elif key == b"x-request-timeout-ms":
                timeout_header = value
            elif key == b"x-request-id":
                request_id = value
        self.body_fmt = request_format(content_type)
        self.fmt = response_format(accept, self.body_fmt)
        return content_length, timeout_header, request_id

    def body_id(self) -> str | None:
        return None

    def decode(self, body: bytes, model: LoadedModel) -> Any:
        read_for = reading(model)
        if read_for is not None:
            primary, serving = read_for
            session: ModelSession = serving.session
            options = primary.config.inputs
            if routes_of(model).canary is None and session.input_dtype in ROW_DTYPES:
                # The common bodies, JSON `{"inputs": [[...], ...]}` and a msgpack raw tensor of the model's dtype,
                # read from their bytes into the matrix: no object per value, nothing to bound or scan for duplicate
                # keys. Any other body goes the general way.
                read = json_rows if self.body_fmt == JSON else msgpack_tensor
                rows = read(body, session.n_features, row_limit(session, options), session.input_dtype == FLOAT32)
                if rows is not None and session.fixed_batch in (None, len(rows)):
                    self.rows, self.body, self.rows_for = rows, body, primary
                    return None
            refuse_oversized(body, self.body_fmt == MSGPACK, session, options, primary.field_count, "$")
        self.decoded = decode(body, self.body_fmt)
        return self.decoded

    def inputs(self, target: LoadedVersion, session: ModelSession) -> Inputs:
        if self.rows_for is not None:
            if self.rows_for is target and self.rows is not None:
                return Inputs(self.rows, None, None)
            self.decoded = decode(self.body, self.body_fmt)  # a version named in the path: its own reading
        return predict_inputs(self.decoded, session, target.config.inputs, target.transform,
                              target.sketches_raw_fields)

    def answer(self, target: LoadedVersion, outputs: Outputs) -> tuple[bytes, Headers]:
        body = msgpack_answer(target.model, target.number, outputs) if self.fmt == MSGPACK else None
        if body is None:
            body = encode({"model": target.model, "version": target.number, "outputs": outputs}, self.fmt)
        return body, [(b"content-type", CONTENT_TYPE_HEADER[self.fmt]),
                      (b"x-model-version", str(target.number).encode())]

    def error(self, exc: FastserveError) -> tuple[int, bytes, bytes]:
        fmt = JSON if isinstance(exc, NotAcceptable) else self.fmt
        return status_for(exc), encode(error_body(exc.code, exc.message, exc.detail), fmt), CONTENT_TYPE_HEADER[fmt]


async def handle_predict(app: ServingApp, scope: Scope, receive: Any, send: Any, name: str,
                         version: str | None) -> None:
    await serve(app, scope, receive, send, NativeWire(), name, version)
