"""The metrics text: formatted in slices with loop turns between them, byte for byte what one piece gives."""

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from fastserve import metrics
from fastserve.metrics import format_family


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
