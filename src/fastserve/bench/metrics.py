"""The server's side of a trial: fastserve's /metrics read before and after, and what changed (requests by status,
batch sizes, queue wait, refusals by reason, CPU per request); for another local server, its CPU from /proc."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fastserve.bench.target import Target, get

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_CPU = ("fastserve_process_cpu_seconds_total", "process_cpu_seconds_total")


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples


def scrape(target: Target) -> Samples:
    status, body = get(target, "/metrics")
    return parse(body.decode("utf-8", "replace")) if status == 200 else {}


def _sum(samples: Samples, name: str, models: set[str] | None, by: str | None = None) -> dict[str, float]:
    """`name` summed over its series (those of `models` where it has a model label), by label `by`."""
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample != name:
            continue
        label = dict(labels)
        if models is not None and "model" in label and label["model"] not in models:
            continue
        key = label.get(by, "") if by else ""
        out[key] = out.get(key, 0.0) + value
    return out


def _delta(before: Samples, after: Samples, name: str, models: set[str] | None, by: str | None = None
           ) -> dict[str, float]:
    old = _sum(before, name, models, by)
    return {k: v - old.get(k, 0.0) for k, v in _sum(after, name, models, by).items()}


def _bucket_quantile(before: Samples, after: Samples, name: str, models: set[str] | None, q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` of what a histogram counted between the scrapes."""
    buckets = _delta(before, after, f"{name}_bucket", models, by="le")
    total = buckets.get("+Inf", 0.0)
    if total <= 0:
        return None
    for le, count in sorted(((float(k), v) for k, v in buckets.items()), key=lambda kv: kv[0]):
        if count >= q * total:
            return le
    return None


def server_side(before: Samples, after: Samples, models: Iterable[str]) -> dict[str, Any]:
    """What a fastserve server counted for `models` between two scrapes."""
    names = set(models)
    codes = {k: int(v) for k, v in _delta(before, after, "fastserve_requests_total", names, by="code").items() if v}
    by_model = {k: int(v) for k, v in _delta(before, after, "fastserve_requests_total", names, by="model").items()
                if v}
    requests = sum(codes.values())
    batches = sum(_delta(before, after, "fastserve_batch_size_rows_count", names).values())
    rows = sum(_delta(before, after, "fastserve_batch_size_rows_sum", names).values())
    waits = sum(_delta(before, after, "fastserve_queue_wait_seconds_count", names).values())
    wait_s = sum(_delta(before, after, "fastserve_queue_wait_seconds_sum", names).values())
    shed = _delta(before, after, "fastserve_shed_requests_total", names, by="reason")
    refusals = {f"shed_{k}": int(v) for k, v in shed.items() if v}
    admission = sum(_delta(before, after, "fastserve_admission_refused_total", names).values())
    if admission:
        refusals["admission"] = int(admission)
    connections = _delta(before, after, "fastserve_connections_refused_total", None, by="reason")
    refusals.update({f"connection_{k}": int(v) for k, v in connections.items() if v})
    cpu = next((v for name in _CPU if (v := sum(_delta(before, after, name, None).values()))), 0.0)
    p99_wait = _bucket_quantile(before, after, "fastserve_queue_wait_seconds", names, 0.99)
    return {
        "requests": requests,
        "requests_by_status": codes,
        "requests_by_model": by_model,
        "batches": int(batches),
        "batch_rows_mean": rows / batches if batches else None,
        "batch_rows_p99_le": _bucket_quantile(before, after, "fastserve_batch_size_rows", names, 0.99),
        "queue_wait_ms_mean": wait_s / waits * 1e3 if waits else None,
        "queue_wait_ms_p99_le": p99_wait * 1e3 if p99_wait is not None else None,
        "refusals": refusals,
        "cpu_s": cpu,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
    }


def combine(sides: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The server's side of several trials run one after another (server_side's dicts) as one."""
    def total(key: str) -> Any:
        return sum(side.get(key) or 0 for side in sides)

    def counts(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for side in sides:
            for k, v in (side.get(key) or {}).items():
                out[k] = out.get(k, 0) + v
        return out

    def bound(key: str) -> float | None:
        return max((side[key] for side in sides if side.get(key) is not None), default=None)

    requests, batches, cpu = total("requests"), total("batches"), total("cpu_s")
    rows = sum((side.get("batch_rows_mean") or 0) * (side.get("batches") or 0) for side in sides)
    waited = sum((side.get("queue_wait_ms_mean") or 0) * (side.get("batches") or 0) for side in sides)
    out = {"requests": requests, "requests_by_status": counts("requests_by_status"),
           "requests_by_model": counts("requests_by_model"), "batches": batches,
           "batch_rows_mean": rows / batches if batches else None, "batch_rows_p99_le": bound("batch_rows_p99_le"),
           "queue_wait_ms_mean": waited / batches if batches else None,
           "queue_wait_ms_p99_le": bound("queue_wait_ms_p99_le"), "refusals": counts("refusals"), "cpu_s": cpu,
           "cpu_us_per_request": cpu / requests * 1e6 if requests else None}
    return {k: v for k, v in out.items() if any(k in side for side in sides)}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` and its children, all threads (Linux /proc)."""
    def cpu(p: int) -> float:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
    return cpu(pid) + sum(cpu(c) for c in children)


def check_pid(pid: int) -> None:
    if not Path(f"/proc/{pid}/stat").exists():
        raise ValueError(f"no process {pid} here (--server-pid reads /proc/PID on this machine, Linux only)")
