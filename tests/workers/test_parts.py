"""The parts of the control plane, alone: cores, merging of metrics, windows and sketches, the link's errors."""

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from fastserve._core.sketch import BinnedSketch
from fastserve.cores import threads_per_worker, usable_cores
from fastserve.exceptions import ModelNotFound
from fastserve.metrics import render
from fastserve.registry import Registry
from fastserve.routing.routes import ModelRoutes
from fastserve.routing.windows import Window
from fastserve.workers.link import Link, LinkClosed
from fastserve.workers.merge import summed
from fastserve.workers.plan import Plan, changes, follow, model_entries, whole_plan
from tests.conftest import MODELS, copy_model


def test_usable_cores_respect_the_affinity_and_a_container_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path) == affinity  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores: 2 workers can use them
    assert usable_cores(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 1
    assert threads_per_worker(4, cores=16) == 4 and threads_per_worker(8, cores=2) == 1


def test_metrics_of_several_processes_are_summed_sample_by_sample():
    def part(requests, buckets):
        counter = CounterMetricFamily("fastserve_requests", "", labels=["code"])
        counter.add_metric(["200"], requests)
        hist = HistogramMetricFamily("fastserve_request_duration_seconds", "")
        hist.add_metric([], buckets, sum_value=1.0)
        gauge = GaugeMetricFamily("fastserve_requests_in_flight", "")
        gauge.add_metric([], 2)
        return [counter, hist, gauge]

    merged = summed([part(3, [("0.1", 1), ("+Inf", 3)]), part(4, [("0.1", 4), ("+Inf", 4)])])
    text = render(merged).decode()
    assert 'fastserve_requests_total{code="200"} 7.0' in text
    assert 'fastserve_request_duration_seconds_bucket{le="0.1"} 5.0' in text
    assert 'fastserve_request_duration_seconds_bucket{le="+Inf"} 7.0' in text
    assert "fastserve_request_duration_seconds_count 7.0" in text and "fastserve_request_duration_seconds_sum 2.0" \
        in text
    assert "fastserve_requests_in_flight 4.0" in text


def test_windows_taken_in_workers_merge_into_the_same_seconds():
    now = 1000.5
    one, two, merged, alone = Window(30), Window(30), Window(30), Window(30)
    for i, (window, latency) in enumerate([(one, 0.001), (two, 0.002), (one, 0.003)]):
        for target in (window, alone):
            target.add({"requests": 1, "errors": i % 2}, now + i, latency_s=latency, labels=[i % 2],
                       maxima={"x": float(i)})
    merged.merge(two.take(), now + 3)
    merged.merge(one.take(), now + 3)
    assert one.read(now + 3).sums == {} and not one.total  # taken: forgotten where they were counted
    got, want = merged.read(now + 3), alone.read(now + 3)
    assert got.sums == want.sums and got.labels == want.labels
    assert (got.latency == want.latency).all() and dict(merged.total) == dict(alone.total)


def test_sketch_state_adds_into_a_sketch_in_another_process():
    edges = [np.linspace(-1, 1, 9), np.linspace(0, 10, 5)]
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 10.0])
    rng = np.random.default_rng(1)
    a, b, whole = (BinnedSketch(edges, low, high) for _ in range(3))
    x, y = (rng.normal(size=(n, 2)).astype(np.float32) for n in (50, 70))
    a.update(x)
    b.update(y)
    whole.update(np.concatenate([x, y]))
    b.add_state(*a.state())
    assert b.rows == whole.rows == 120
    for j in range(2):
        assert (b.bin_counts(j) == whole.bin_counts(j)).all()
    other = BinnedSketch([np.linspace(-1, 1, 5)], low[:1], high[:1])
    with pytest.raises(ValueError, match="same edges"):
        other.add_state(*a.state())


def test_a_call_gets_the_other_ends_error_as_the_same_kind_and_a_closed_link_says_so():
    async def run():
        server_side: list[Link] = []

        async def handle(kind, body):
            if kind == "missing":
                raise ModelNotFound("no model named 'x'", detail={"model": "x"})
            return body * 2

        async def accept(reader, writer):
            link = Link(reader, writer, handle)
            server_side.append(link)
            await link.run()

        path = f"/tmp/fastserve-link-test-{os.getpid()}.sock"
        server = await asyncio.start_unix_server(accept, path=path)
        reader, writer = await asyncio.open_unix_connection(path)
        client = Link(reader, writer, handle)
        task = asyncio.create_task(client.run())
        assert await client.call("double", 21) == 42
        with pytest.raises(ModelNotFound) as caught:
            await client.call("missing")
        assert caught.value.detail == {"model": "x"}
        server_side[0].close()
        await task
        with pytest.raises(LinkClosed):
            await client.call("double", 1)
        server.close()
        os.unlink(path)

    asyncio.run(run())


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers must be a number >= 1 or `auto`, got '0'"),
    (["--workers", "many"], "--workers must be a number >= 1 or `auto`, got 'many'"),
    (["--workers", "2", "--no-door-process"], "--workers > 1 needs the door process"),
])
def test_workers_that_cannot_run_are_refused_with_the_reason(args, message):
    done = subprocess.run([sys.executable, "-m", "fastserve", "serve", str(MODELS), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_plan_of_changes_touches_only_the_models_it_names(tmp_path):
    for name in ("a", "b", "c"):
        copy_model("spend", tmp_path, name=name)

    async def run():
        supervisor = Registry(tmp_path, serves=False, routes=ModelRoutes)
        supervisor.discover()
        await supervisor.load_all()
        worker = Registry(tmp_path, routes=ModelRoutes)
        sent = model_entries(supervisor)
        assert await follow(worker, whole_plan(supervisor, 1)) == []
        assert {n: m.primary.state for n, m in worker.models.items()} == dict.fromkeys("abc", "ready")
        kept = {n: m.primary for n, m in worker.models.items()}

        supervisor.models["b"].primary.state = "evicted"  # as the budget does
        del supervisor.models["c"]
        changed, removed = changes(sent, model_entries(supervisor))
        assert list(changed) == ["b"] and removed == ["c"]
        plan = Plan(2, 1, True, changed, removed)
        assert await follow(worker, plan) == []
        assert sorted(worker.models) == ["a", "b"]
        assert worker.models["a"].primary is kept["a"] and kept["a"].state == "ready"  # not named: untouched
        await asyncio.sleep(0.1)  # (retired in the background)
        assert worker.models["b"].primary.state == "evicted"
        supervisor.close()
        worker.close()

    asyncio.run(run())
