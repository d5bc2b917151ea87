"""Many models in one server: threads bounded by the cores, not the versions; a flooded model does not starve others."""

import asyncio
import time

import numpy as np

from tests.conftest import copy_model, start_server
from tests.loadclient import post_until


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_threads_do_not_grow_with_the_models_loaded(tmp_path):
    counts = {}
    for n in (2, 40):
        folder = tmp_path / str(n)
        folder.mkdir()
        for i in range(n):
            copy_model("spend", folder, name=f"m{i}")
        srv = start_server(folder, "--poll-interval", "0")
        try:
            row = {"inputs": [[0.5] * 22]}
            import httpx

            for i in range(n):  # every version runs a batch (a lone request may run on the loop: send two at once)
                assert httpx.post(f"{srv.url}/v1/models/m{i}/predict", json=row).status_code == 200
            counts[n] = threads_of(srv.proc.pid)
        finally:
            srv.stop()
    assert counts[40] <= counts[2] + 2, counts  # (before the shared pool: one thread per version, 38 more)


def test_a_flooded_model_does_not_starve_a_quiet_one(tmp_path):
    copy_model("churn_mlp", tmp_path, name="busy")
    copy_model("churn", tmp_path, name="quiet")
    srv = start_server(tmp_path, "--poll-interval", "0")
    import httpx

    x = np.random.default_rng(0).normal(size=(64, 22)).round(3).tolist()
    flood_body = httpx.Request("POST", "http://x", json={"inputs": x}).content
    stop = []

    async def flood():
        return await post_until(srv.port, "/v1/models/busy/predict", flood_body, 16, lambda: bool(stop),
                                {"content-type": "application/json"})

    async def main():
        task = asyncio.create_task(flood())
        await asyncio.sleep(1.0)
        latencies = []
        async with httpx.AsyncClient(base_url=srv.url) as client:
            for _ in range(200):
                started = time.perf_counter()
                r = await client.post("/v1/models/quiet/predict", json={"inputs": [x[0]]})
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200
        stop.append(True)
        flooded = await task
        return latencies, flooded

    try:
        latencies, flooded = asyncio.run(main())
    finally:
        srv.stop()
    assert len(flooded) > 100 and all(r.status_code == 200 for r in flooded)
    p99 = float(np.percentile(latencies, 99))
    assert p99 < 0.05, f"the quiet model's p99 was {p99 * 1e3:.1f} ms while the busy one was flooded"
