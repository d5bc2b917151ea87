"""The ASGI application: predict on a bare fast path, everything else through Starlette."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from fastserve.config import ServerConfig
from fastserve.cores import threads_per_worker
from fastserve.exceptions import FastserveError
from fastserve.http import admin, endpoints, feedback, v2
from fastserve.http.admission import Admission
from fastserve.http.predict import handle_predict, predict_target
from fastserve.metrics import Metrics
from fastserve.registry import Registry
from fastserve.registry.feedback import FeedbackAnswer
from fastserve.routing.routes import ModelRoutes

log = logging.getLogger("fastserve")


class SupervisorLink(Protocol):
    """What a worker process's app asks of its supervisor (`workers/worker.py`, `WorkerControl`)."""

    async def start(self) -> None: ...
    def close(self) -> None: ...
    async def operate(self, operation: str, *args: Any) -> Any: ...
    async def view(self, kind: str, *args: Any) -> Any: ...
    async def warm(self, name: str, number: int) -> None: ...
    async def feedback(self, name: str, ids: list[str], labels: list[Any]) -> FeedbackAnswer: ...


class App:
    """ASGI entry point: the native predict and the V2 infer routes are bare ASGI handlers, the rest goes through
    Starlette. Models load in the background after start-up, so /healthz answers at once and
    /readyz tells when every model can serve."""

    def __init__(self, config: ServerConfig, supervisor: Callable[[App], SupervisorLink] | None = None) -> None:
        """`supervisor`: in a worker process of `--workers N`, makes its link to the supervisor: the registry
        follows the supervisor's plans, and the views of the whole server come from the supervisor."""
        self.config = config
        worker = supervisor is not None
        max_threads = threads_per_worker(config.workers) if config.workers > 1 else None
        # (In a worker the budget is the supervisor's: it decides what is loaded, the worker follows.)
        self.registry = Registry(config.models_dir, config.device, max_threads,
                                 None if worker else config.max_loaded_versions,
                                 lazy=config.lazy and not worker, state_dir=config.state_dir, routes=ModelRoutes)
        self.control: SupervisorLink | None = None
        if supervisor is not None:
            self.control = supervisor(self)
            self.registry.remote_warm = self.control.warm
        self.admission = Admission(self.registry)  # used by the HTTP protocol, at each request's headers
        self.metrics = Metrics(self.registry, self.admission, config.histograms)
        self._loading: asyncio.Task[None] | None = None  # loads, then watches the repository
        self.shutting_down = False  # set on SIGTERM: readiness turns false while accepted requests finish
        self._starlette = Starlette(
            routes=[
                Route("/v1/models", endpoints.list_models, methods=["GET"]),
                Route("/v1/models/{name}", endpoints.model_status, methods=["GET"]),
                Route("/v1/models/{name}/drift", endpoints.model_drift, methods=["GET"]),
                Route("/v1/models/{name}/feedback", feedback.feedback, methods=["POST"]),
                Route("/v1/models/{name}/quality", feedback.quality, methods=["GET"]),
                Route("/healthz", endpoints.healthz, methods=["GET"]),
                Route("/readyz", endpoints.readyz, methods=["GET"]),
                Route("/metrics", endpoints.metrics, methods=["GET"]),
                Route("/openapi.json", endpoints.openapi_document, methods=["GET"]),
                *admin.ROUTES,
                *v2.ROUTES,
            ],
            exception_handlers={FastserveError: endpoints.fastserve_error, HTTPException: endpoints.http_error},
            lifespan=self._lifespan,
        )
        self._starlette.state.fastserve = self

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            target = predict_target(path)
            if target is not None:
                await handle_predict(self, scope, receive, send, *target)
                return
            target = v2.infer_target(path)
            if target is not None:
                await v2.handle_infer(self, scope, receive, send, *target)
                return
        await self._starlette(scope, receive, send)

    def begin_shutdown(self) -> None:
        if not self.shutting_down:
            self.shutting_down = True
            log.info("shutting down: readiness is false, new connections are refused, accepted requests finish "
                     "(grace %g s)", self.config.shutdown_grace_s)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        if self.control is not None:  # the supervisor's plan, its versions loaded, before connections come
            await self.control.start()
            try:
                yield
            finally:
                self.control.close()
                self.registry.close()
            return
        self.registry.discover()  # fail start-up at once on a missing directory or a broken config
        self._loading = asyncio.create_task(self._load())
        try:
            yield
        finally:
            if not self._loading.done():
                self._loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loading
            self.registry.close()

    async def _load(self) -> None:
        await self.registry.load_and_watch(self.config.poll_interval_s)


def create_app(config: ServerConfig, supervisor: Callable[[App], SupervisorLink] | None = None) -> App:
    return App(config, supervisor)
