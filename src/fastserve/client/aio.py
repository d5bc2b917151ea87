"""The asyncio client."""

from __future__ import annotations

import asyncio
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


class AsyncClient(ClientBase):
    """The asyncio twin of `Client`, with the same options and methods as coroutines. One client serves any number
    of concurrent calls from one event loop over its pool of keep-alive connections; calls beyond
    `max_connections` wait for a free connection (within their timeout)."""

    def _open(self) -> None:
        self._http = httpx.AsyncClient(**self._httpx_options)
        self._sleep = asyncio.sleep

    async def predict(self, model: str, inputs: np.ndarray | Sequence[Sequence[Any]], *, version: int | None = None,
                      timeout: Timeout = USE_CLIENT_DEFAULT, headers: Mapping[str, str] | None = None
                      ) -> Prediction:
        """As `Client.predict`."""
        return await self._predict(model, version, inputs_body(inputs, self.media), timeout, headers)

    async def predict_records(self, model: str, records: Sequence[Mapping[str, Any]], *,
                              version: int | None = None, timeout: Timeout = USE_CLIENT_DEFAULT,
                              headers: Mapping[str, str] | None = None) -> Prediction:
        """As `Client.predict_records`."""
        return await self._predict(model, version, records_body(records, self.media), timeout, headers)

    async def predict_columns(self, model: str, columns: Mapping[str, Any], *, version: int | None = None,
                              timeout: Timeout = USE_CLIENT_DEFAULT, headers: Mapping[str, str] | None = None
                              ) -> Prediction:
        """As `Client.predict_columns`."""
        return await self._predict(model, version, columns_body(columns, self.media), timeout, headers)

    async def list_models(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = (await self._get("/v1/models", timeout))["models"]
        return models

    async def model_status(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        status: dict[str, Any] = await self._get(model_path(model), timeout)
        return status

    async def drift(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        report: dict[str, Any] = await self._get(f"{model_path(model)}/drift", timeout)
        return report

    async def feedback(self, model: str, ids: Sequence[str], labels: Sequence[Any] | np.ndarray, *,
                       timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """As `Client.feedback`."""
        call = self._call("POST", f"{model_path(model)}/feedback", timeout)
        answer = await self._send(call, feedback_body(ids, labels, self.media), self._headers(None))
        joined: dict[str, Any] = unpack(answer.content, answer.headers.get("content-type"))
        return joined

    async def quality(self, model: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> dict[str, Any]:
        """As `Client.quality`."""
        report: dict[str, Any] = await self._get(f"{model_path(model)}/quality", timeout)
        return report

    async def health(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> bool:
        return await self._probe("/healthz", timeout)

    async def ready(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> bool:
        return await self._probe("/readyz", timeout)

    async def close(self) -> None:
        await self._http.aclose()

    aclose = close  # for contextlib.aclosing

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _predict(self, model: str, version: int | None, body: bytes, timeout: Timeout,
                       headers: Mapping[str, str] | None) -> Prediction:
        call = self._call("POST", predict_path(model, version), timeout)
        answer = await self._send(call, body, self._headers(headers), deadline_header=True)
        return prediction(answer.content, answer.headers.get("content-type"), call.request,
                          answer.headers.get("x-request-id", ""))

    async def _get(self, path: str, timeout: Timeout) -> Any:
        answer = await self._send(self._call("GET", path, timeout), None, {})
        return unpack(answer.content, answer.headers.get("content-type"))

    async def _probe(self, path: str, timeout: Timeout) -> bool:
        try:
            answer = await self._send(self._call("GET", path, timeout, retries=False), None, {}, any_status=True)
        except FastserveClientError:
            return False
        return answer.status_code == 200

    async def _send(self, call: Call, content: bytes | None, headers: Mapping[str, str],
                    deadline_header: bool = False, any_status: bool = False) -> httpx.Response:
        """As `Client._send`."""
        while True:
            left = call.begin()
            try:
                answer = await self._http.request(call.method, call.path, content=content,
                                                  timeout=call.httpx_timeout(left),
                                                  headers=call.headers(headers, left) if deadline_header else headers)
            except httpx.TransportError as exc:
                failure = call.failed(exc)
            else:
                if answer.status_code == 200 or any_status:
                    return answer
                failure = call.refused(answer)
            await self._sleep(call.wait(failure))
