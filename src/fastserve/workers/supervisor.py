"""The supervisor of `fastserve serve --workers N`: the one process that owns the repository and decides (loads,
gates, promotions, rollbacks, the canary's guard), the door process that accepts the connections, and N workers
that serve them and follow its plans. It serves no request itself.

A worker that dies is started again (its connections are lost, and counted); the workers and the door die with the
supervisor (PR_SET_PDEATHSIG). SIGTERM drains every worker, as one process drains."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

import fastserve
from fastserve.config import ServerConfig
from fastserve.http.door import Door, _package_root
from fastserve.http.protocol import bind_listeners, door_answers
from fastserve.metrics import build_info, control_families, render
from fastserve.quality.store import StoreStatus
from fastserve.registry import Registry
from fastserve.registry.feedback import FeedbackAnswer, feedback_answer, merge_outcomes, score_labels
from fastserve.registry.operations import drift_report, listing, quality_report
from fastserve.routing.operations import perform
from fastserve.routing.routes import ModelRoutes, routes_of
from fastserve.workers.link import Link
from fastserve.workers.merge import process_figures, summed
from fastserve.workers.plan import ModelEntry, Plan, changes, model_entries, model_entry, whole_plan
from fastserve.workers.worker import Counted

log = logging.getLogger("fastserve.workers")

GATHER_S = 1.0  # how often the workers' evidence, comparisons and sketches are merged (and the guard looks)
_PLAN_TIMEOUT_S = 600.0  # a worker loading a plan's versions; one that takes longer is logged and left to finish
_STOP_MARGIN_S = 5.0  # past the shutdown grace, a worker still running is killed
_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after a worker's death, by how many died within the minute


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.link: Link | None = None
        self.ready = False  # it followed its first plan and takes connections
        self.deaths: list[float] = []  # when it died lately (the restart delay grows with them)


class Supervisor:
    def __init__(self, config: ServerConfig, argv: list[str], workers: int, balance: str) -> None:
        self.config = config
        self.argv = argv  # the serve command's arguments, for the workers
        self.registry = Registry(config.models_dir, config.device, max_loaded=config.max_loaded_versions,
                                 lazy=config.lazy, state_dir=config.state_dir, serves=False, routes=ModelRoutes)
        self.workers = [_Worker(i) for i in range(workers)]
        self.balance = balance
        self.seq = 0  # the last plan broadcast; a worker's hello gets the whole state under it
        self._sent: dict[str, ModelEntry] = {}  # per model, its entry in the plans sent so far
        self._sent_loaded = False
        self.stopping = False
        self.stopped: asyncio.Event | None = None
        self.door: Door | None = None
        self.restarts = 0
        self.lost = 0  # connections held by workers that died (the door's count)
        self.refused: dict[str, int] = {}
        self.waiting = 0
        self._gathering: asyncio.Lock | None = None
        self.directory = ""

    def run(self) -> int:
        import uvloop

        return uvloop.run(self._main())

    async def _main(self) -> int:
        self.directory = tempfile.mkdtemp(prefix="fastserve-")  # (0700: only this user reaches the sockets)
        try:
            return await self._serve()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopped, self._gathering = asyncio.Event(), asyncio.Lock()
        self.registry.discover()
        limits = self.config.limits
        try:
            listeners = bind_listeners(self.config.host, self.config.port, 2048)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", self.config.host, self.config.port, exc)
            return 3
        door_path = os.path.join(self.directory, "door.sock")
        workers_socket = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        workers_socket.bind(door_path)
        workers_socket.listen(256)
        server = await asyncio.start_unix_server(self._connected, path=os.path.join(self.directory, "control.sock"))
        self.door = Door(listeners, limits, door_answers(limits), _no_connections, self._door_counts,
                         workers=workers_socket, balance=self.balance)
        self.door.start()
        for worker in self.workers:
            self._spawn(worker)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        log.info("fastserve %s serving %s on http://%s:%d with %d worker processes (connections to the one with "
                 "the fewest %s)", fastserve.__version__, self.config.models_dir.resolve(), self.config.host,
                 self.config.port, len(self.workers), "open connections" if self.balance == "connections"
                 else "requests in flight")
        tasks = [loop.create_task(coro)
                 for coro in (self._load_and_watch(), self._watch_workers(), self._gather_each())]
        await self.stopped.wait()
        await self._shutdown(tasks, server)
        return 0

    # -- processes ---------------------------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "fastserve", *self.argv, "--worker", str(worker.index),
                   "--control-dir", self.directory]
        worker.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    async def _watch_workers(self) -> None:
        """A worker that exits is started again, after a delay that grows while it keeps dying."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            for worker in self.workers:
                process = worker.process
                if process is None or process.poll() is None:
                    continue
                worker.process = None
                if worker.link is not None:
                    worker.link.close()
                    worker.link, worker.ready = None, False
                now = time.monotonic()
                worker.deaths = [t for t in worker.deaths if now - t < 60.0] + [now]
                delay = _RESTART_DELAYS_S[min(len(worker.deaths), len(_RESTART_DELAYS_S)) - 1]
                self.restarts += 1
                log.error("worker %d (pid %d) exited with status %s; starting it again in %g s (its connections "
                          "are lost; the other workers serve on)", worker.index, process.pid, process.returncode,
                          delay)
                loop.call_later(delay, self._respawn, worker)

    def _respawn(self, worker: _Worker) -> None:
        if not self.stopping and worker.process is None:
            self._spawn(worker)

    def _door_counts(self, waiting: int, refused: dict[str, int], lost: int = 0) -> None:
        self.waiting = waiting
        for reason, n in refused.items():
            self.refused[reason] = self.refused.get(reason, 0) + n
        self.lost += lost

    def _stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("shutting down: the door stops accepting, every worker finishes the requests it accepted "
                     "(grace %g s)", self.config.shutdown_grace_s)
            assert self.stopped is not None
            self.stopped.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]], server: asyncio.AbstractServer) -> None:
        # The door and the workers get SIGTERM together: a worker closes its connections only once the door has
        # stopped accepting (its report says so), as one serving process does.
        assert self.door is not None
        for task in tasks:  # (no restarts from here on)
            task.cancel()
        closing = asyncio.get_running_loop().create_task(self.door.close())
        processes = [(w.index, w.process) for w in self.workers if w.process is not None]
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace_s + _STOP_MARGIN_S
        for index, process in processes:
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                log.error("worker %d did not stop within the grace; killing it", index)
                process.kill()
                process.wait()
        await closing
        await self.door.wait_closed()
        server.close()
        self.registry.close()

    # -- the control plane -------------------------------------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A worker's control link: it says hello (which worker it is) and gets the current plan."""
        worker: _Worker | None = None

        async def handle(kind: str, body: Any) -> Any:
            nonlocal worker
            if kind == "hello":
                worker = self.workers[body["index"]]
                worker.link = link  # registered before the plan is made: every later plan goes to it too
                worker.ready = False
                return whole_plan(self.registry, self.seq)
            if kind == "whole_plan":
                return whole_plan(self.registry, self.seq)
            if kind == "ready" and worker is not None:
                worker.ready = True
                log.info("worker %d serving", worker.index)
                return None
            return await self._handle(kind, body)

        link = Link(reader, writer, handle)
        await link.run()
        if worker is not None and worker.link is link:
            worker.link, worker.ready = None, False

    async def _handle(self, kind: str, body: Any) -> Any:
        if kind == "operate":
            operation, args = body
            result = await perform(self.registry, operation, *args)
            await self.broadcast()  # in every worker before the call returns
            if operation == "reload":
                return result
            await self.gather()
            return self.registry.model(args[0]).status()
        if kind == "warm":  # a worker has requests for an evicted version: one load, then every worker has it
            name, number = body
            model = self.registry.model(name)
            await self.registry.warm(model, self.registry.version(model, number))
            touched, self.registry.touched = self.registry.touched, set()
            await self.broadcast(models=touched | {name})
            return None
        if kind == "feedback":
            return await self.feedback(*body)
        if kind == "view":
            view, args = body
            if view == "listing":
                return listing(self.registry)
            if view == "quality":
                stores = [s for _, s in await self._ask_all("store", args[0]) if isinstance(s, StoreStatus)]
                return quality_report(self.registry, args[0], stores)
            await self.gather()  # the workers' latest evidence, comparisons and sketches in what is shown
            if view == "status":
                return self.registry.model(args[0]).status()
            if view == "drift":
                return drift_report(self.registry, args[0])
            if view == "metrics":
                return await self.metrics()
        raise ValueError(f"unknown call {kind!r}")

    async def feedback(self, name: str, ids: list[str], labels: list[Any]) -> FeedbackAnswer:
        """Labels: joined in each worker's store (the answers are kept where they were made), scored here."""
        model = self.registry.model(name)
        answers = [a for _, a in await self._ask_all("join", (name, ids)) if not isinstance(a, BaseException)]
        outcomes, joined = merge_outcomes(answers, len(ids))
        score_labels(model, joined, labels)
        if routes_of(model).judge_quality():
            await self.broadcast()
        return feedback_answer(model, ids, outcomes)

    async def _ask_all(self, kind: str, body: Any = None, timeout: float = 10.0) -> list[tuple[_Worker, Any]]:
        """One call to every worker linked now, at once: (worker, its answer, or the exception it raised)."""
        linked = [(w, w.link) for w in self.workers if w.link is not None]
        answers = await asyncio.gather(*(link.call(kind, body, timeout) for _, link in linked),
                                       return_exceptions=True)
        return [(w, answer) for (w, _), answer in zip(linked, answers, strict=True)]

    async def broadcast(self, only_changes: bool = False, models: set[str] | None = None) -> None:
        """The models that changed since the last plan, to every worker; returns once each has followed it (or
        gone). `only_changes`: nothing is sent when nothing changed. `models`: only these can have changed (a load
        on demand and the evictions it made), so only their entries are made again: at 10,000 models a whole look
        took 130 ms of the supervisor's loop."""
        if models is None:
            now = model_entries(self.registry)
            self.registry.touched.clear()  # (this look covers them)
        else:
            now = dict(self._sent)
            for name in models:
                model = self.registry.models.get(name)
                if model is None:
                    now.pop(name, None)
                else:
                    now[name] = model_entry(model)
        changed, removed = changes(self._sent, now)
        if only_changes and not changed and not removed and self._sent_loaded == self.registry.loaded:
            return
        self._sent, self._sent_loaded = now, self.registry.loaded
        self.seq += 1
        plan = Plan(self.seq, self.seq - 1, self.registry.loaded, changed, removed)
        for _, result in await self._ask_all("plan", plan, _PLAN_TIMEOUT_S):
            if isinstance(result, BaseException):
                log.error("a worker did not follow the plan: %s", result)
            elif result:
                log.error("a worker could not follow all of the plan: %s", "; ".join(result))

    async def _load_and_watch(self) -> None:
        await self.broadcast()  # the models known (nothing loaded yet): the workers answer /healthz and /readyz

        async def changed() -> None:  # after the loading, and after each look at the repository
            await self.broadcast(only_changes=True)

        await self.registry.load_and_watch(self.config.poll_interval_s, changed)

    async def _gather_each(self) -> None:
        while True:
            await asyncio.sleep(GATHER_S)
            try:
                await self.gather()
            except Exception:
                log.exception("merging the workers' figures failed")

    async def gather(self) -> None:
        """Merge what each worker counted since it was last asked (canary evidence, shadow comparisons, drift
        sketches) into the supervisor's own objects, then let the canary guard judge all of it together."""
        assert self._gathering is not None
        async with self._gathering:
            for _, result in await self._ask_all("collect"):
                if isinstance(result, BaseException):
                    continue
                for name, entry in result.items():
                    self._merge(name, entry)
            tripped = False
            for model in self.registry.models.values():
                routes = routes_of(model)
                canary = routes.canary
                if canary is not None and canary.guard.enabled and canary.weight > 0 and canary.pending():
                    evidence = canary.check()
                    if evidence is not None:
                        routes.tripped(evidence)
                        tripped = True
        if tripped:
            await self.broadcast()

    def _merge(self, name: str, entry: Counted) -> None:
        model = self.registry.models.get(name)
        if model is None:
            return
        routes = routes_of(model)
        canary = entry.canary
        if canary is not None and routes.canary is not None and routes.canary.version == canary[0]:
            routes.canary.add_evidence(canary[1])
        for number, buckets in entry.shadows.items():
            runner = routes.shadows.get(number)
            if runner is not None:
                runner.merge(buckets)
        for number, calls in entry.calls.items():  # the budget's recency
            version = model.versions.get(number)
            if version is not None:
                version.calls += calls
                self.registry.used.add(model.name)
        for number, taken in entry.drift.items():
            version = model.versions.get(number)
            if version is not None:
                version.drift.add(taken)

    async def metrics(self) -> bytes:
        answers = await self._ask_all("metrics")
        answered = GaugeMetricFamily("fastserve_worker_requests", "Prediction requests answered by each worker "
                                     "process since it started (how evenly the door spreads the load)",
                                     labels=["worker"])
        serving = []
        for worker, part in answers:
            if isinstance(part, BaseException):
                continue
            serving.append(part)
            answered.add_metric([str(worker.index)], sum(s.value for family in part if family.name ==
                                                         "fastserve_requests" for s in family.samples))
        serving.append(self._door_families())
        control = control_families(self.registry)
        processes: list[tuple[str, Any]] = [("supervisor", os.getpid)]
        if self.door is not None and self.door.process is not None:
            processes.append(("door", _pid(self.door.process)))
        processes += [(f"worker-{w.index}", _pid(w.process)) for w in self.workers if w.process is not None]
        return render([build_info(), *summed(serving), *control, *self._supervisor_families(), answered,
                       *process_figures(processes)])

    def _door_families(self) -> list[Metric]:
        refused = CounterMetricFamily("fastserve_connections_refused", "", labels=["reason"])
        for reason, n in sorted(self.refused.items()):
            refused.add_metric([reason], n)
        waiting = GaugeMetricFamily("fastserve_connections_open", "")
        waiting.add_metric([], self.waiting)
        return [refused, waiting]

    def _supervisor_families(self) -> list[Metric]:
        alive = GaugeMetricFamily("fastserve_workers", "Worker processes asked for, running, and serving (their "
                                  "versions loaded, taking connections)", labels=["state"])
        alive.add_metric(["running"], sum(1 for w in self.workers if w.process is not None))
        alive.add_metric(["serving"], sum(1 for w in self.workers if w.ready and w.link is not None))
        alive.add_metric(["configured"], len(self.workers))
        restarts = CounterMetricFamily("fastserve_worker_restarts", "Worker processes that exited and were started "
                                       "again")
        restarts.add_metric([], self.restarts)
        lost = CounterMetricFamily("fastserve_connections_lost", "Client connections held by a worker process when it "
                                   "died")
        lost.add_metric([], self.lost)
        return [alive, restarts, lost]


def _pid(process: subprocess.Popen[bytes]) -> Any:
    return lambda: process.pid


def _no_connections(head: bytes, waiting: int) -> asyncio.Protocol:
    raise RuntimeError("the supervisor's channel to the door carries no connections")


def serve_with_workers(config: ServerConfig, argv: list[str], workers: int, balance: str) -> int:
    return Supervisor(config, argv, workers, balance).run()
