"""Prometheus metrics. The request path only bumps plain counters; a collector turns them into metric
families when /metrics is scraped, so serving pays nothing per request for the Prometheus client."""

from __future__ import annotations

import asyncio
import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

import fastserve
from fastserve._core.batcher import TIME_BUCKETS_S
from fastserve.config import AUTO_PER_VERSION_MODELS
from fastserve.drift.monitor import STATUSES
from fastserve.quality.monitor import STATUSES as QUALITY_STATUSES
from fastserve.registry.feedback import OUTCOMES
from fastserve.registry.models import DRAINING, READY, STATES
from fastserve.routing.routes import routes_of

if TYPE_CHECKING:
    from fastserve.registry import Registry


class AdmissionLimit(Protocol):
    """A model's admission limit, as counted (`http/admission.py`, `AdmissionLimit`)."""

    @property
    def refused(self) -> int: ...
    @property
    def limit(self) -> float: ...
    @property
    def in_flight(self) -> int: ...


class Admission(Protocol):
    """The admission limits by model (`http/admission.py`): metrics read them, the http layer keeps them."""

    @property
    def limits(self) -> Mapping[str, AdmissionLimit]: ...

# Seconds. Fine at the low end, where a tabular model answers. The compiled batcher counts in the same buckets.
LATENCY_BUCKETS = TIME_BUCKETS_S
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MEASURES = ("accuracy", "log_loss", "brier", "roc_auc", "calibration_error", "mae", "rmse", "bias")


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        return _cumulative(LATENCY_BUCKETS, self.buckets)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one past every bound) as Prometheus' cumulative `le` buckets."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        total += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return out


def _summed(series: Iterable[tuple[str, str, list[int], float]], per_model: bool
            ) -> list[tuple[str, str, list[int], float]]:
    """(model, version, per-bucket counts, sum) as they are, or summed per model with version ""."""
    if not per_model:
        return sorted(series, key=lambda s: s[:2])
    out: dict[str, tuple[list[int], float]] = {}
    for model, _, counts, total in series:
        have = out.get(model)
        out[model] = (counts, total) if have is None else ([a + b for a, b in zip(have[0], counts, strict=True)],
                                                           have[1] + total)
    return [(model, "", counts, total) for model, (counts, total) in sorted(out.items())]


# fastserve_shed_requests_total{reason} label -> the batcher's counter.
_SHED_REASONS = (("queue_full", "shed_queue_full"), ("deadline_at_arrival", "shed_deadline_at_arrival"),
                 ("deadline_in_queue", "shed_deadline_in_queue"), ("cancelled", "cancelled"))

# The batcher's batch-size buckets hold 1, 2-3, 4-7, ... rows: upper bounds 2**(b+1) - 1.
BATCH_SIZE_BOUNDS = tuple(float(2 ** (b + 1) - 1) for b in range(23))


class RequestStats:
    """Counts kept by the request path. Model and version labels come from the registry, never from the
    client: an unknown model is counted under model="" so label values stay bounded."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self.in_flight = 0
        # Requests whose headers the server has read and which are not answered yet, counted by the connection
        # (http/protocol.py): unlike `in_flight`, it includes requests whose handler has not started. 0 when the app
        # runs under another server.
        self.received = 0
        # Requests answered below the app by the connection guard, by reason (http/protocol.py).
        self.connections_refused: dict[str, int] = {}
        # The server's open client connections (uvicorn's own set, given by http/server.py's build_server).
        self.connections: Sized = ()
        # Connections the door process holds, waiting for their first request's headers (http/door.py).
        self.waiting_at_door = 0

    def observe(self, model: str, version: str, status: int, seconds: float) -> None:
        key = (model, version, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((model, version))
        if hist is None:
            hist = self.latency[(model, version)] = _Histogram()
        hist.observe(seconds)


def build_info() -> Metric:
    info = GaugeMetricFamily("fastserve_build_info", "fastserve build", labels=["version", "core", "python"])
    info.add_metric([fastserve.__version__, "compiled", platform.python_version()], 1)
    return info


class _Collector:
    def __init__(self, stats: RequestStats, registry: Registry, admission: Admission | None,
                 histograms: str = "auto") -> None:
        self._stats = stats
        self._registry = registry
        self._admission = admission
        self._histograms = histograms

    def _per_model(self) -> bool:
        if self._histograms == "auto":
            return len(self._registry.models) > AUTO_PER_VERSION_MODELS
        return self._histograms == "model"

    def collect(self) -> Iterator[Metric]:
        yield build_info()
        yield from self.serving()
        yield from self.control()

    def serving(self) -> Iterator[Metric]:
        """What each serving process counts: with worker processes, the supervisor sums them."""
        requests = CounterMetricFamily("fastserve_requests", "Prediction requests answered, by status code",
                                       labels=["model", "version", "code"])
        for (model, version, code), n in sorted(self._stats.requests.items()):
            requests.add_metric([model, version, str(code)], n)
        yield requests

        if self._histograms != "off":
            latency = HistogramMetricFamily("fastserve_request_duration_seconds",
                                            "Time from request start to the last byte of the answer, in the server",
                                            labels=["model", "version"])
            series = ((model, version, h.buckets, h.sum) for (model, version), h in self._stats.latency.items())
            for model, version, counts, total in _summed(series, self._per_model()):
                latency.add_metric([model, version], _cumulative(LATENCY_BUCKETS, counts), total)
            yield latency

        refused = CounterMetricFamily("fastserve_connections_refused", "Connections answered and closed before the "
                                      "app, by reason (too slow, headers too large, too many connections, not HTTP, "
                                      "server stalled past the door process's wait, head incomplete at shutdown)",
                                      labels=["reason"])
        for reason, n in sorted(self._stats.connections_refused.items()):
            refused.add_metric([reason], n)
        yield refused

        in_flight = GaugeMetricFamily("fastserve_requests_in_flight", "Prediction requests being served now")
        in_flight.add_metric([], self._stats.in_flight)
        yield in_flight
        received = GaugeMetricFamily("fastserve_requests_received", "Requests of any kind whose headers are read and "
                                     "that are not answered yet, including those whose handler has not started")
        received.add_metric([], self._stats.received)
        yield received
        connections = GaugeMetricFamily("fastserve_connections_open", "Client connections accepted and not closed "
                                        "(a connection is accepted when its first bytes arrive, or a second after "
                                        "it opened; those the door process holds are counted as of its last "
                                        "report, each second)")
        connections.add_metric([], len(self._stats.connections) + self._stats.waiting_at_door)
        yield connections
        yield from self._batching()
        yield from self._admitted()
        yield from self._stores()

    def control(self) -> Iterator[Metric]:
        """The registry's state, routing and drift: with worker processes, the supervisor's (it merges the workers'
        evidence and sketches into them)."""
        ready = GaugeMetricFamily("fastserve_model_version_ready", "1 when the version is loaded and can serve",
                                  labels=["model", "version", "provider"])
        load = GaugeMetricFamily("fastserve_model_version_load_seconds", "Time to load and warm the version",
                                 labels=["model", "version"])
        for loaded in self._registry.models.values():
            for v in loaded.versions.values():
                provider = v.provider if v.state == READY else ""
                ready.add_metric([loaded.name, str(v.number), provider], 1 if v.state == READY else 0)
                if v.load_seconds is not None:
                    load.add_metric([loaded.name, str(v.number)], v.load_seconds)
        yield ready
        yield load
        yield from self._lifecycle()
        yield from self._routing()
        yield from self._drift()
        yield from self._quality()

    def _admitted(self) -> Iterator[Metric]:
        refused = CounterMetricFamily("fastserve_admission_refused", "Requests to a model with a latency SLO answered "
                                      "503 at their headers, over its admission limit", labels=["model"])
        limit = GaugeMetricFamily("fastserve_admission_limit", "Requests of the model the server admits at once",
                                  labels=["model"])
        admitted = GaugeMetricFamily("fastserve_admission_in_flight", "Requests of the model admitted and not yet "
                                     "answered", labels=["model"])
        for name, limit_of in sorted(self._admission.limits.items() if self._admission is not None else ()):
            refused.add_metric([name], limit_of.refused)
            limit.add_metric([name], limit_of.limit)
            admitted.add_metric([name], limit_of.in_flight)
        yield from (refused, limit, admitted)

    def _drift(self) -> Iterator[Metric]:
        status = GaugeMetricFamily("fastserve_drift_status", "Drift status of the last window: 0 ok, 1 warn, 2 alert",
                                   labels=["model", "version"])
        windows = CounterMetricFamily("fastserve_drift_windows", "Drift windows scored", labels=["model", "version"])
        labels = ["model", "version", "column"]
        psi = GaugeMetricFamily("fastserve_drift_psi", "PSI of the last window against the reference", labels=labels)
        ks = GaugeMetricFamily("fastserve_drift_ks", "Binned Kolmogorov-Smirnov statistic of the last window",
                               labels=labels)
        js = GaugeMetricFamily("fastserve_drift_js_distance", "Jensen-Shannon distance of the last window",
                               labels=labels)
        for loaded in self._registry.models.values():
            for v in loaded.versions.values():
                monitor = v.drift
                if monitor.why or v.state not in (READY, DRAINING):
                    continue
                key = [loaded.name, str(v.number)]
                status.add_metric(key, STATUSES.index(monitor.status))
                windows.add_metric(key, monitor.windows)
                last = monitor.last
                for column in (last.inputs + last.predictions) if last else []:
                    for family, value in ((psi, column.psi), (ks, column.ks), (js, column.js)):
                        if value is not None:
                            family.add_metric([*key, column.name], value)
        yield from (status, windows, psi, ks, js)

    def _stores(self) -> Iterator[Metric]:
        """Each model's answers awaiting labels (per process: with workers, the supervisor sums them)."""
        kept = GaugeMetricFamily("fastserve_feedback_store_bytes", "Memory held by the model's answers awaiting "
                                 "labels", labels=["model"])
        dropped = CounterMetricFamily("fastserve_feedback_answers_not_kept", "Answers the store let go before a "
                                      "label came (fell_out: written over within the budget), or never kept "
                                      "(sampled_out, too_large)", labels=["model", "reason"])
        for name, loaded in sorted(self._registry.models.items()):
            store = loaded.store
            if store is None:
                continue
            status = store.status()
            kept.add_metric([name], status.bytes)
            for reason, count in (("fell_out", status.fell_out), ("sampled_out", status.sampled_out),
                                  ("too_large", status.too_large)):
                dropped.add_metric([name, reason], count)
        yield from (kept, dropped)

    def _quality(self) -> Iterator[Metric]:
        status = GaugeMetricFamily("fastserve_quality_status", "Live quality of the last window against the "
                                   "version's reference: 0 ok, 1 warn, 2 alert", labels=["model", "version"])
        labelled = CounterMetricFamily("fastserve_quality_labels", "Rows scored against labels since load",
                                       labels=["model", "version"])
        measure = GaugeMetricFamily("fastserve_quality", "Live quality measures (accuracy, log_loss, brier, roc_auc, "
                                    "calibration_error; mae, rmse, bias) of the last window and since load",
                                    labels=["model", "version", "measure", "scope"])
        outcomes = CounterMetricFamily("fastserve_feedback_ids", "Ids in feedback, by outcome (joined, unknown, "
                                       "expired, repeated)", labels=["model", "outcome"])
        for loaded in self._registry.models.values():
            if loaded.feedback_ids:
                for outcome in OUTCOMES:
                    outcomes.add_metric([loaded.name, outcome], loaded.feedback_ids[outcome])
            for v in loaded.versions.values():
                monitor = v.quality
                if monitor is None or not monitor.since_load.rows:
                    continue
                key = [loaded.name, str(v.number)]
                if monitor.status in QUALITY_STATUSES:
                    status.add_metric(key, QUALITY_STATUSES.index(monitor.status))
                labelled.add_metric(key, monitor.since_load.rows)
                last = monitor.last.figures if monitor.last is not None else {}
                for scope, figures in (("since_load", monitor.since_load.figures()), ("last_window", last)):
                    for name, value in figures.items():
                        if name in MEASURES and value is not None:
                            measure.add_metric([*key, name, scope], value)
        yield from (status, labelled, measure, outcomes)

    def _routing(self) -> Iterator[Metric]:
        weight = GaugeMetricFamily("fastserve_canary_weight", "Share of traffic sent to the canary",
                                   labels=["model", "version"])
        rollbacks = CounterMetricFamily("fastserve_canary_rollbacks", "Canaries pulled back by the guard",
                                        labels=["model"])
        shadow_requests = CounterMetricFamily("fastserve_shadow_requests", "Requests copied to a shadow, by outcome",
                                              labels=["model", "version", "outcome"])
        labels = ["model", "version", "scope"]
        agreement = GaugeMetricFamily("fastserve_shadow_label_agreement_ratio",
                                      "Share of rows where the shadow's label equals the primary's", labels=labels)
        mean_diff = GaugeMetricFamily("fastserve_shadow_score_abs_diff_mean",
                                      "Mean absolute difference of the shadow's scores from the primary's",
                                      labels=labels)
        max_diff = GaugeMetricFamily("fastserve_shadow_score_abs_diff_max",
                                     "Largest absolute difference of the shadow's scores from the primary's",
                                     labels=labels)
        latency = GaugeMetricFamily("fastserve_shadow_latency_seconds_mean",
                                    "Mean time from a copy being queued to its shadow answer", labels=labels)
        for loaded in self._registry.models.values():
            routes = routes_of(loaded)
            rollbacks.add_metric([loaded.name], routes.rollbacks)
            if routes.canary is not None:
                weight.add_metric([loaded.name, str(routes.canary.version)], routes.canary.weight)
            for number, runner in routes.shadows.items():
                status = runner.status()
                key = [loaded.name, str(number)]
                total = status.total
                for outcome, count in (("compared", total.compared), ("dropped", total.dropped),
                                       ("errors", total.errors)):
                    shadow_requests.add_metric([*key, outcome], count)
                for scope, figures in (("window", status.window), ("total", total)):
                    for family, value, scale in ((agreement, figures.label_agreement, 1.0),
                                                 (mean_diff, figures.mean_abs_diff, 1.0),
                                                 (max_diff, figures.max_abs_diff, 1.0),
                                                 (latency, figures.latency_ms_mean, 1e-3)):
                        if value is not None:
                            family.add_metric([*key, scope], value * scale)
        yield from (weight, rollbacks, shadow_requests, agreement, mean_diff, max_diff, latency)

    def _lifecycle(self) -> Iterator[Metric]:
        primary = GaugeMetricFamily("fastserve_model_primary_version", "The version answering unversioned requests",
                                    labels=["model"])
        swaps = CounterMetricFamily("fastserve_model_swaps", "Times the primary version changed", labels=["model"])
        gate = CounterMetricFamily("fastserve_model_gate_failures", "Versions refused by the validation gate",
                                   labels=["model"])
        evictions = CounterMetricFamily("fastserve_model_evictions", "Versions unloaded to keep within the budget of "
                                        "loaded versions (--max-loaded-versions), least recently used first",
                                        labels=["model"])
        states = GaugeMetricFamily("fastserve_model_versions", "Versions known, by state (states a model has no "
                                   "version in are left out)", labels=["model", "state"])
        for loaded in self._registry.models.values():
            if loaded.primary is not None:
                primary.add_metric([loaded.name], loaded.primary.number)
            swaps.add_metric([loaded.name], loaded.swaps)
            gate.add_metric([loaded.name], loaded.gate_failures)
            evictions.add_metric([loaded.name], loaded.evictions)
            counts: dict[str, int] = {}
            for v in loaded.versions.values():
                counts[v.state] = counts.get(v.state, 0) + 1
            for state in STATES:  # (in the order of the lifecycle; 10,000 models x every state: 90,000 series)
                if state in counts:
                    states.add_metric([loaded.name, state], counts[state])
        yield from (primary, swaps, gate, evictions, states)

    def _batching(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        sizes = HistogramMetricFamily("fastserve_batch_size_rows", "Rows per batch run", labels=labels)
        wait = HistogramMetricFamily("fastserve_queue_wait_seconds", "Time a request waited in the batch queue",
                                     labels=labels)
        run = HistogramMetricFamily("fastserve_batch_run_seconds", "session.run time per batch", labels=labels)
        queued = GaugeMetricFamily("fastserve_queue_rows", "Rows waiting in the batch queue", labels=labels)
        running = GaugeMetricFamily("fastserve_batches_in_flight", "Batches running now", labels=labels)
        shed = CounterMetricFamily("fastserve_shed_requests", "Requests refused to protect latency, by reason",
                                   labels=[*labels, "reason"])
        hists: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for loaded in self._registry.models.values():
            for v in loaded.versions.values():
                if v.batcher is None:
                    continue
                s = v.batcher.queue.stats()
                key = [loaded.name, str(v.number)]
                hists[0].append((*key, s["batch_sizes"], float(s["batched_rows"])))
                hists[1].append((*key, s["queue_wait"], s["queue_wait_sum"]))
                hists[2].append((*key, s["run_time"], s["run_time_sum"]))
                queued.add_metric(key, s["queued_rows"])
                running.add_metric(key, s["in_flight"])
                for reason, counter in _SHED_REASONS:
                    shed.add_metric([*key, reason], s[counter])
        if self._histograms != "off":
            per_model = self._per_model()
            for family, bounds, series in zip((sizes, wait, run), (BATCH_SIZE_BOUNDS, TIME_BUCKETS_S, TIME_BUCKETS_S),
                                              hists, strict=True):
                for model, version, counts, total in _summed(series, per_model):
                    family.add_metric([model, version], _cumulative(bounds, counts), total)
                yield family
        yield from (queued, running, shed)


SLICE = 500  # samples formatted between two turns of the event loop


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(families: list[Metric]) -> bytes:
    """Families in the text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


async def format_family(family: Metric) -> bytes:
    """One family in the text format, SLICE samples at a time with a loop turn after each (and after building it)."""
    out = []
    samples = family.samples
    for start in range(0, max(len(samples), 1), SLICE):
        part = Metric(family.name, family.documentation, family.type, family.unit)
        part.samples = samples[start:start + SLICE]
        text = render([part])
        if start:  # (the family's HELP and TYPE lines once)
            text = text.split(b"\n", 2)[2]
        out.append(text)
        await asyncio.sleep(0)
    return b"".join(out)


def control_families(registry: Registry) -> list[Metric]:
    """The registry's state, routing and drift families (a supervisor's, which serves nothing itself)."""
    return list(_Collector(RequestStats(), registry, None).control())


class Metrics:
    """The server's metrics registry: request counts, latency, model state, process figures."""

    def __init__(self, registry: Registry, admission: Admission, histograms: str = "auto") -> None:
        self.stats = RequestStats()
        self.prometheus = CollectorRegistry(auto_describe=False)
        self._collector = _Collector(self.stats, registry, admission, histograms)
        self.prometheus.register(self._collector)
        self.prometheus.register(ProcessCollector(namespace="fastserve", registry=None))

    def render(self) -> bytes:
        return generate_latest(self.prometheus)

    async def render_async(self) -> bytes:
        """`render`, giving the event loop a turn between families and every SLICE samples of a large one: at a
        thousand models a scrape builds and formats tens of thousands of lines, which in one piece would hold every
        request back for the whole of it (~100 ms)."""
        parts: list[bytes] = []
        for family in self.prometheus.collect():
            parts.append(await format_family(family))
        return b"".join(parts)

    def serving(self) -> Iterator[Metric]:
        return self._collector.serving()

    def control(self) -> Iterator[Metric]:
        return self._collector.control()
