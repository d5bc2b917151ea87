"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from fastserve.client.base import USE_CLIENT_DEFAULT, ClientBase, Timeout, model_path, predict_path
from fastserve.client.exceptions import FastserveClientError
from fastserve.client.retry import Call
from fastserve.client.wire import (
    Prediction,
    columns_body,
    feedback_body,
    inputs_body,
    prediction,
    records_body,
    unpack,
)


class Client(ClientBase):
    """A fastserve server's client, safe to share between threads: one pool of keep-alive connections (at most
    `max_connections`; an idle one is dropped after 4 s, before the server's 5 s keep-alive would close it).

    `format`: "msgpack" (default; a numpy array goes as a raw tensor) or "json". `timeout`: seconds for a whole
    call, retries and waits included (None: no deadline), sent to the server as X-Request-Timeout-Ms (the time
    left) with every predict; each call may give its own. `connect_timeout`: the most one connection attempt may
    take within that. `max_retries` / `retry`: the `RetryPolicy` (429, 503 and connection failures; default 3
    retries). `headers`: sent with every request. `transport`: an httpx transport in place of the default pool
    (one with other socket options, say; its own limits then apply)."""

    def _open(self) -> None:
        self._http = httpx.Client(**self._httpx_options)
        self._sleep = time.sleep

    def predict(self, model: str, inputs: np.ndarray | Sequence[Sequence[Any]], *, version: int | None = None,
                timeout: Timeout = USE_CLIENT_DEFAULT, headers: Mapping[str, str] | None = None) -> Prediction:
        """Outputs for `inputs`: a 2-D float32/float64/int32/int64 array, or a list of rows of numbers.
        `version` pins one; otherwise the server's routing picks (the answer says which answered)."""
        return self._predict(model, version, inputs_body(inputs, self.media), timeout, headers)

    def predict_records(self, model: str, records: Sequence[Mapping[str, Any]], *, version: int | None = None,
                        timeout: Timeout = USE_CLIENT_DEFAULT, headers: Mapping[str, str] | None = None
                        ) -> Prediction:
        """Outputs for raw records (dicts of field -> value), for a model with a feature spec."""
        return self._predict(model, version, records_body(records, self.media), timeout, headers)

    def predict_columns(self, model: str, columns: Mapping[str, Any], *, version: int | None = None,
                        timeout: Timeout = USE_CLIENT_DEFAULT, headers: Mapping[str, str] | None = None
                        ) -> Prediction:
        """Outputs for raw columns (field -> list or 1-D array of values), for a model with a feature spec."""
        return self._predict(model, version, columns_body(columns, self.media), timeout, headers)

    def list_models(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[dict[str, Any]]:
        """Every model with its primary, readiness and versions' states."""
        models: list[dict[str, Any]] = self._get("/v1/models", timeout)["models"]
        return models

    def model_status(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """`GET /v1/models/{model}`: versions, states, inputs and outputs, features, routing, events."""
        status: dict[str, Any] = self._get(model_path(model), timeout)
        return status

    def drift(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """`GET /v1/models/{model}/drift`: per version, the drift status and the last window's scores."""
        report: dict[str, Any] = self._get(f"{model_path(model)}/drift", timeout)
        return report

    def feedback(self, model: str, ids: Sequence[str], labels: Sequence[Any] | np.ndarray, *,
                 timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """`POST /v1/models/{model}/feedback`: labels for earlier answers, by their request ids
        (`Prediction.request_id`, `id:row` for a row of an answer of several rows); how many joined an answer, and
        why the others did not (unknown, expired, repeated)."""
        call = self._call("POST", f"{model_path(model)}/feedback", timeout)
        answer = self._send(call, feedback_body(ids, labels, self.media), self._headers(None))
        joined: dict[str, Any] = unpack(answer.content, answer.headers.get("content-type"))
        return joined

    def quality(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """`GET /v1/models/{model}/quality`: per version, live quality against the labels beside its
        reference."""
        report: dict[str, Any] = self._get(f"{model_path(model)}/quality", timeout)
        return report

    def health(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> bool:
        """Whether the server process answers (`/healthz`); False when it cannot be reached. Not retried."""
        return self._probe("/healthz", timeout)

    def ready(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> bool:
        """Whether every model has a version ready to serve (`/readyz`); False when not, or unreachable. Not
        retried."""
        return self._probe("/readyz", timeout)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _predict(self, model: str, version: int | None, body: bytes, timeout: Timeout,
                 headers: Mapping[str, str] | None) -> Prediction:
        call = self._call("POST", predict_path(model, version), timeout)
        answer = self._send(call, body, self._headers(headers), deadline_header=True)
        return prediction(answer.content, answer.headers.get("content-type"), call.request,
                          answer.headers.get("x-request-id", ""))

    def _get(self, path: str, timeout: Timeout) -> Any:
        answer = self._send(self._call("GET", path, timeout), None, {})
        return unpack(answer.content, answer.headers.get("content-type"))

    def _probe(self, path: str, timeout: Timeout) -> bool:
        try:
            return self._send(self._call("GET", path, timeout, retries=False), None, {}, any_status=True
                              ).status_code == 200
        except FastserveClientError:
            return False

    def _send(self, call: Call, content: bytes | None, headers: Mapping[str, str], deadline_header: bool = False,
              any_status: bool = False) -> httpx.Response:
        """The answer to `call`, retried as its policy says; raises the client's error for any other outcome."""
        while True:
            left = call.begin()
            try:
                answer = self._http.request(call.method, call.path, content=content, timeout=call.httpx_timeout(left),
                                            headers=call.headers(headers, left) if deadline_header else headers)
            except httpx.TransportError as exc:
                failure = call.failed(exc)
            else:
                if answer.status_code == 200 or any_status:
                    return answer
                failure = call.refused(answer)
            self._sleep(call.wait(failure))
