"""One `/metrics` for the whole server: the workers' counts summed (histograms bucket by bucket), the registry's
state, routing and drift from the supervisor (which merged the workers' evidence and sketches), and the process
figures of every process, labelled by process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample


def summed(parts: Iterable[Iterable[Metric]]) -> list[Metric]:
    """Families of the same name from several processes, one family each: every sample with the same name and
    labels added (counters, gauges of things in flight, and histograms' cumulative buckets, sums and counts all add)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for part in parts:
        for family in part:
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            sums = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                sums[key] = sums.get(key, 0.0) + sample.value
    for name, family in families.items():
        family.samples = [Sample(sample_name, dict(labels), value) for (sample_name, labels), value in
                          values[name].items()]
    return list(families.values())


def process_figures(processes: Iterable[tuple[str, Callable[[], int | str]]]) -> list[Metric]:
    """CPU, memory, open files and start time of each process, by `process` label."""
    families: dict[str, Metric] = {}
    for label, pid in processes:
        for family in ProcessCollector(namespace="fastserve", pid=pid, registry=None).collect():
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            merged.samples += [Sample(s.name, {**s.labels, "process": label}, s.value) for s in family.samples]
    return list(families.values())
