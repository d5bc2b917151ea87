"""The metrics text: formatted in slices with loop turns between them, byte for byte what one piece gives; the
histograms that multiply by versions labelled by version, by model, or left out; states without versions left out."""

import asyncio
import shutil

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from fastserve import metrics
from fastserve.config import AUTO_PER_VERSION_MODELS
from fastserve.metrics import format_family
from tests.conftest import MODELS, copy_model, start_server
from tests.http.test_batching import metric

ROW = np.load(MODELS / "spend" / "1" / "validation.npz")["inputs"][:1].tolist()


def test_a_family_formatted_in_slices_is_the_family_formatted_whole(monkeypatch):
    monkeypatch.setattr(metrics, "SLICE", 7)
    counter = CounterMetricFamily("fastserve_requests", "Requests", labels=["model", "code"])
    for i in range(40):
        counter.add_metric([f"m{i}", "200"], i)
    hist = HistogramMetricFamily("fastserve_request_duration_seconds", "Latency", labels=["model"])
    for i in range(5):
        hist.add_metric([f"m{i}"], [("0.001", i), ("+Inf", 2 * i)], sum_value=float(i))
    empty = CounterMetricFamily("fastserve_swaps", "Swaps", labels=["model"])
    ticks = []

    async def sliced():
        async def other_work():  # what else the loop serves meanwhile: it must get turns between slices
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        task = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        out = [await format_family(family) for family in (counter, hist, empty)]
        task.cancel()
        return b"".join(out)

    class All:
        def collect(self):
            yield from (counter, hist, empty)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(All())
    assert asyncio.run(sliced()) == generate_latest(registry)
    assert len(ticks) >= 40 // 7 + 2  # a turn for the loop after every slice


def two_versions(tmp_path, name="m"):
    target = copy_model("spend", tmp_path, name=name, config='[versions]\npolicy = "all"\n')
    shutil.copytree(target / "1", target / "2")
    return target


def scrape(srv):
    return httpx.get(f"{srv.url}/metrics").text


def predict(srv, name, version, n):
    for _ in range(n):
        r = httpx.post(f"{srv.url}/v1/models/{name}/versions/{version}/predict", json={"inputs": ROW}, timeout=30)
        assert r.status_code == 200, r.text


HISTOGRAMS = ("fastserve_request_duration_seconds", "fastserve_batch_size_rows", "fastserve_queue_wait_seconds",
              "fastserve_batch_run_seconds")


def test_histograms_by_model_sum_a_models_versions(tmp_path):
    two_versions(tmp_path)
    with start_server(tmp_path, "--histograms", "model") as srv:
        predict(srv, "m", 1, 3)
        predict(srv, "m", 2, 2)
        text = scrape(srv)
    for name in HISTOGRAMS:
        assert metric(text, f"{name}_count", model="m", version="") == (5 if name != "fastserve_batch_size_rows"
                                                                        else metric(text, f"{name}_count")), name
        assert f'{name}_count{{model="m",version="1"}}' not in text, name
    assert metric(text, "fastserve_batch_size_rows_sum", model="m", version="") == 5  # one row each
    assert metric(text, "fastserve_requests_total", model="m", version="1") == 3  # counters stay by version
    assert metric(text, "fastserve_requests_total", model="m", version="2") == 2


def test_histograms_off_leave_them_out_and_by_version_is_the_default_for_a_few_models(tmp_path):
    two_versions(tmp_path)
    with start_server(tmp_path, "--histograms", "off") as srv:
        predict(srv, "m", 1, 2)
        text = scrape(srv)
    assert not any(f"{name}_count" in text for name in HISTOGRAMS)
    assert metric(text, "fastserve_requests_total", model="m", version="1") == 2
    with start_server(tmp_path) as srv:
        predict(srv, "m", 1, 2)
        predict(srv, "m", 2, 1)
        text = scrape(srv)
    assert metric(text, "fastserve_request_duration_seconds_count", model="m", version="1") == 2
    assert metric(text, "fastserve_request_duration_seconds_count", model="m", version="2") == 1


def test_past_a_hundred_models_histograms_are_by_model_and_states_without_versions_are_left_out(tmp_path):
    for i in range(AUTO_PER_VERSION_MODELS + 1):
        copy_model("spend", tmp_path, name=f"m{i:03d}")
    with start_server(tmp_path, "--lazy") as srv:
        predict(srv, "m007", 1, 2)
        text = scrape(srv)
    assert metric(text, "fastserve_request_duration_seconds_count", model="m007", version="") == 2
    assert 'version="1"' not in "".join(line for line in text.splitlines() if line.startswith(HISTOGRAMS))
    states = [line for line in text.splitlines() if line.startswith("fastserve_model_versions{")]
    assert len(states) == AUTO_PER_VERSION_MODELS + 1  # one version each, in one state: not one series a state
    assert all(not line.endswith(" 0.0") for line in states)
    assert metric(text, "fastserve_model_versions", model="m007", state="ready") == 1
    assert metric(text, "fastserve_model_versions", model="m008", state="evicted") == 1
