"""A worker process's side of the control plane: it follows the supervisor's plans, sends it the operators' calls
and the views of the whole server, and hands it what it counted (canary evidence, shadow comparisons, drift
sketches, metrics) when asked."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastserve.drift.monitor import DriftCounts, DriftMonitor
from fastserve.quality.store import UNKNOWN
from fastserve.registry.feedback import FeedbackAnswer, take_labels
from fastserve.registry.lifecycle import freeze_loaded
from fastserve.routing.routes import routes_of
from fastserve.routing.windows import Bucket
from fastserve.workers.link import Link
from fastserve.workers.plan import Plan, follow

if TYPE_CHECKING:
    from fastserve.http.app import App

log = logging.getLogger("fastserve.workers")


@dataclass(frozen=True, slots=True)
class Counted:
    """What a worker counted of one model since it was last asked (`collect`), for its supervisor to merge."""

    canary: tuple[int, dict[bool, list[tuple[int, Bucket]]]] | None  # its version, and the evidence
    shadows: dict[int, list[tuple[int, Bucket]]]
    calls: dict[int, int]  # requests per version (the budget's recency)
    drift: dict[int, DriftCounts]

    def __bool__(self) -> bool:
        """Whether there is anything to send."""
        return self.canary is not None or bool(self.shadows or self.calls or self.drift)


class WorkerControl:
    def __init__(self, app: App, index: int, path: str) -> None:
        self.app, self.index, self.path = app, index, path
        self.link: Link | None = None
        self._following = asyncio.Lock()
        self._seq = -1  # the last plan followed: an older one that arrives late is not applied over it
        self._task: asyncio.Task[None] | None = None
        self._routed: set[str] = set()  # models with a canary or shadows

    async def start(self) -> None:
        """Connect, and follow the current plan (versions loaded) before the worker takes connections."""
        DriftMonitor.closes_windows = False  # the supervisor closes them, over every worker's traffic
        reader, writer = await asyncio.open_unix_connection(self.path)
        self.link = Link(reader, writer, self._handle)
        self._task = asyncio.get_running_loop().create_task(self._run())
        plan = await self.link.call("hello", {"index": self.index, "pid": os.getpid()})
        await self._follow(plan)
        await self.link.call("ready")  # (it joins the door next)

    async def _run(self) -> None:
        assert self.link is not None
        await self.link.run()
        if not self.app.shutting_down:  # the supervisor is gone: so is the control plane; this worker stops too
            log.error("worker %d: the supervisor went away; stopping", self.index)
            os.kill(os.getpid(), signal.SIGTERM)

    async def _follow(self, plan: Plan) -> list[str]:
        async with self._following:
            if plan.seq < self._seq:
                return []
            if plan.base is not None and self._seq < plan.base:  # changes to a plan this worker missed
                assert self.link is not None
                plan = await self.link.call("whole_plan")
            self._seq = plan.seq
            first_loaded = plan.loaded and not self.app.registry.loaded
            problems = await follow(self.app.registry, plan)
            # Shadow comparisons finish after their requests: these are collected whether asked for or not.
            models = self.app.registry.models
            named = plan.models if plan.base is not None else models
            self._routed = {n for n in self._routed if n in models and n not in named} | {
                n for n in named if n in models and routes_of(models[n]).versions()}
            if first_loaded:
                freeze_loaded()
        for problem in problems:
            log.error("worker %d cannot follow the supervisor's plan: %s", self.index, problem)
        return problems

    async def _handle(self, kind: str, body: Any) -> Any:
        if kind == "plan":
            return await self._follow(body)
        if kind == "collect":
            return self.collect()
        if kind == "join":  # labels for answers this worker may have made
            name, ids = body
            model = self.app.registry.models.get(name)
            return take_labels(model, ids) if model is not None else ([UNKNOWN] * len(ids), [])
        if kind == "store":
            model = self.app.registry.models.get(body)
            return model.store.status() if model is not None and model.store is not None else None
        if kind == "metrics":  # (a loop turn after each family: a scrape never holds the serving loop long)
            families = []
            for family in self.app.metrics.serving():
                families.append(family)
                await asyncio.sleep(0)
            return families
        raise ValueError(f"unknown call {kind!r}")

    def collect(self) -> dict[str, Counted]:
        """What this worker counted since it was last asked, per model: canary evidence, shadow comparisons, and
        each version's drift window."""
        out: dict[str, Counted] = {}
        registry = self.app.registry
        for name in registry.take_used() | self._routed:  # (drift, evidence and calls come with requests)
            model = registry.models.get(name)
            if model is None:
                continue
            routes = routes_of(model)
            entry = Counted(
                (routes.canary.version, routes.canary.take_evidence()) if routes.canary is not None else None,
                {n: runner.take() for n, runner in routes.shadows.items()},
                {n: v.calls for n, v in model.versions.items() if v.calls},
                {n: taken for n, v in model.versions.items() if v.batcher and (taken := v.drift.take()) is not None})
            for number in entry.calls:
                model.versions[number].calls = 0
            if entry:
                out[name] = entry
        return out

    async def operate(self, operation: str, *args: Any) -> Any:
        assert self.link is not None
        return await self.link.call("operate", (operation, args))

    async def warm(self, name: str, number: int) -> None:
        """An evicted version has requests here: the supervisor loads it (one decision) and every worker follows."""
        assert self.link is not None
        await self.link.call("warm", (name, number))

    async def feedback(self, name: str, ids: list[str], labels: list[Any]) -> FeedbackAnswer:
        """Labels, joined in every worker's store and scored in the supervisor."""
        assert self.link is not None
        answer: FeedbackAnswer = await self.link.call("feedback", (name, ids, labels))
        return answer

    async def view(self, kind: str, *args: Any) -> Any:
        assert self.link is not None
        return await self.link.call("view", (kind, args))

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
