"""One trial on one server, as `run(rate) -> Result`: the compiled engine in this process or in P generator
processes (each at rate/P, their histograms merged), long trials in slices so the progress line has figures, and
the server's own counts read around it."""

from __future__ import annotations

import importlib
import math
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool
from typing import Any

from fastserve.bench import metrics
from fastserve.bench.progress import Progress
from fastserve.bench.results import Result, from_dict, from_trial, merge, summary, to_dict
from fastserve.bench.target import Target
from fastserve.exceptions import BenchError

SLICE_S = 10.0  # a longer trial runs as back-to-back slices of at most this, merged, to show figures meanwhile


def engine() -> Any:
    """The compiled engine (fastserve.bench.engine), or BenchError saying how to get it."""
    try:
        return importlib.import_module("fastserve.bench.engine")
    except ImportError as exc:
        raise BenchError(f"the compiled load generator is not built ({exc}); reinstall fastserve from a clone with a C "
                         "compiler: pip install '.[bench]'") from exc


@dataclass(frozen=True)
class Settings:
    duration_s: float
    connections: int = 64
    procs: int = 1
    poisson: bool = True
    timeout_ms: float = 10_000.0
    max_send_lag_us: float = 100.0


_requests: dict[str, list[bytes]] = {}  # in each generator process: each server's requests, sent once at start


def _init_worker(requests: dict[str, list[bytes]]) -> None:
    _requests.update(requests)


def _worker(server: str, host: str, port: int, rate: float, duration_s: float, connections: int, poisson: bool,
            timeout_ms: float, seed: int) -> dict[str, Any]:
    trial = engine().run_trial(host, port, _requests[server], rate, duration_s, connections=connections,
                               poisson=poisson, timeout_ms=timeout_ms, seed=seed)
    return to_dict(from_trial(trial))


def generator_pool(procs: int, requests: dict[str, list[bytes]]) -> Pool | None:
    """P spawned generator processes holding every server's requests; None for one (the engine runs here)."""
    if procs <= 1:
        return None
    engine()  # fail here, before starting processes, when it is not built
    return multiprocessing.get_context("spawn").Pool(procs, _init_worker, (requests,))


class Runner:
    """`run(rate)` for one server: a Result with the server's side of it (fastserve's /metrics, or --server-pid's
    CPU) in `server_side`."""

    def __init__(self, target: Target, requests: Sequence[bytes], settings: Settings, *, progress: Progress,
                 pool: Pool | None = None, fastserve: bool = False, models: Sequence[str] = (),
                 server_pid: int | None = None, seed: int = 0) -> None:
        self.target, self.requests, self.settings = target, list(requests), settings
        self.progress, self.pool = progress, pool
        self.fastserve, self.models, self.server_pid = fastserve, list(models), server_pid
        self._seed = seed * 1_000_003

    def __call__(self, rate: float) -> Result:
        s = self.settings
        before = metrics.scrape(self.target) if self.fastserve else None
        cpu_before = metrics.process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        slices = max(1, math.ceil(s.duration_s / SLICE_S - 1e-9))
        self.progress.trial(self.target.name, rate, s.duration_s)
        parts: list[Result] = []
        for k in range(slices):
            parts.append(self._slice(rate, s.duration_s / slices))
            so_far = merge(parts, side_by_side=False)
            self.progress.update(summary(so_far, s.max_send_lag_us), finished=k == slices - 1)
        result = merge(parts, side_by_side=False)
        if before is not None:
            result.server_side = metrics.server_side(before, metrics.scrape(self.target), self.models)
        elif self.server_pid:
            cpu = metrics.process_cpu_seconds(self.server_pid) - cpu_before
            result.server_side = {"cpu_s": cpu, "cpu_us_per_request": cpu / result.answered * 1e6
                                  if result.answered else None}
        return result

    def _slice(self, rate: float, duration_s: float) -> Result:
        s = self.settings
        self._seed += 1
        if self.pool is None:
            trial = engine().run_trial(self.target.host, self.target.port, self.requests, rate, duration_s,
                                       connections=s.connections, poisson=s.poisson, timeout_ms=s.timeout_ms,
                                       seed=self._seed)
            return from_trial(trial)
        procs = s.procs
        jobs = [(self.target.name, self.target.host, self.target.port, rate / procs, duration_s,
                 max(1, s.connections // procs), s.poisson, s.timeout_ms, self._seed * 64 + i) for i in range(procs)]
        return merge([from_dict(d) for d in self.pool.starmap(_worker, jobs)], side_by_side=True)
