"""`fastserve serve --workers N`: every worker serves, one control plane decides, and the server tells one story."""

import asyncio
import os
import re
import signal
import subprocess
import time

import httpx
import msgpack
import numpy as np
import pytest

from fastserve.http.door import door_supported
from tests.conftest import MODELS, copy_model, start_server
from tests.loadclient import Answer, post_many
from tests.registry.test_hot_swap import BODY, MSGPACK, SOURCES, admin, expected, publish, repository, wait_for

pytestmark = pytest.mark.skipif(not door_supported(), reason="worker processes need the door process (Linux)")

ROW = {"inputs": [np.random.default_rng(3).normal(size=22).round(4).tolist()]}


def serve_workers(tmp_path, *args, workers=2):
    """Ready once every worker serves (readiness is a worker's: the first one ready answers it)."""
    return start_workers(tmp_path, "--admin-token-file", str(tmp_path / "token"), "--workers", str(workers), *args,
                         workers=workers)


def start_workers(tmp_path, *args, workers=2):
    srv = start_server(tmp_path, *args)
    try:
        wait_for(lambda: metric(httpx.get(f"{srv.url}/metrics").text, "fastserve_workers", state="serving")
                 == workers)
    except Exception:
        srv.stop()
        raise
    return srv


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    found = False
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and (not want or all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items())):
            total += float(match.group(2))
            found = True
    assert found, f"{name} {labels} not in /metrics"
    return total


def children(pid):
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.strip().splitlines()}


def workers_of(srv):
    return sorted(pid for pid, args in children(srv.proc.pid).items() if "--worker" in args)


def post(port, n, connections, path="/v1/models/m/predict", body=BODY, headers=MSGPACK):
    return asyncio.run(post_many(port, path, [body] * n, connections, headers))


def test_every_worker_serves_and_metrics_describe_the_whole_server(tmp_path):
    repository(tmp_path)
    srv = serve_workers(tmp_path)
    try:
        assert len(workers_of(srv)) == 2
        answers = post(srv.port, 400, 16)
        text = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert all(a.status_code == 200 for a in answers)
    per_worker = [metric(text, "fastserve_worker_requests", worker=w) for w in ("0", "1")]
    assert min(per_worker) > 0 and sum(per_worker) == 400, per_worker  # both served; counts summed once
    assert metric(text, "fastserve_requests_total", model="m", code="200") == 400
    assert metric(text, "fastserve_request_duration_seconds_count", model="m") == 400
    assert metric(text, "fastserve_batch_size_rows_sum", model="m") == 800  # two rows a request, batched anywhere
    for process in ("supervisor", "door", "worker-0", "worker-1"):
        assert metric(text, "fastserve_process_cpu_seconds_total", process=process) > 0
    assert metric(text, "fastserve_workers", state="running") == 2
    assert "Traceback" not in log, log


def test_a_promote_is_in_every_worker_when_it_returns(tmp_path):
    # Version 2 is not loaded at first (outside the policy): the first promote has every worker load it.
    model_dir = repository(tmp_path, '[versions]\npolicy = "specific"\nspecific = [1]\n')
    publish(model_dir, 2, SOURCES[2])
    want = {n: expected(s) for n, s in SOURCES.items()}
    srv = serve_workers(tmp_path, "--poll-interval", "0")
    try:
        assert httpx.get(f"{srv.url}/v1/models/m").json()["versions"][1]["state"] == "discovered"
        for number in (2, 1, 2):
            assert admin(srv, f"/versions/{number}/promote").json()["primary"] == number
            answers = post(srv.port, 1000, 64)
            versions = {int(a.headers["x-model-version"]) for a in answers if a.status_code == 200}
            assert all(a.status_code == 200 for a in answers) and versions == {number}, (number, versions)
            got = np.array(msgpack.unpackb(answers[-1].content)["outputs"]["probabilities"], dtype=np.float32)
            np.testing.assert_allclose(got, want[number], atol=1e-5)
            # The same story from whichever worker answers (new connections are spread over both).
            stories = {httpx.get(f"{srv.url}/v1/models/m").text for _ in range(8)}
            listings = {httpx.get(f"{srv.url}/v1/models").text for _ in range(8)}
            assert len(stories) == 1 and len(listings) == 1
            assert f'"primary":{number}' in stories.pop()
        text = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert metric(text, "fastserve_worker_requests", worker="0") > 0
    assert metric(text, "fastserve_worker_requests", worker="1") > 0
    assert "Traceback" not in log, log


def test_a_version_that_fails_its_gate_fails_once_not_per_worker(tmp_path):
    from tests.registry.test_hot_swap import _bad_golden

    model_dir = repository(tmp_path, "")
    staging = model_dir / ".staging"
    import shutil

    shutil.copytree(MODELS / "churn" / "1", staging)
    _bad_golden(staging)
    os.replace(staging, model_dir / "2")
    srv = serve_workers(tmp_path, "--poll-interval", "0")
    try:
        body = httpx.get(f"{srv.url}/v1/models/m").json()
        text = httpx.get(f"{srv.url}/metrics").text
        answers = post(srv.port, 50, 8)
    finally:
        log = srv.stop()
    assert body["primary"] == 1 and body["versions"][1]["state"] == "failed"
    assert metric(text, "fastserve_model_gate_failures_total", model="m") == 1
    assert log.count("validation gate failed") == 1, log  # the supervisor's gate, not one per worker
    assert {a.headers["x-model-version"] for a in answers} == {"1"}


def _killed_worker_run(srv, victim):
    """Traffic on 32 connections while `victim` is killed: (answers, connections that broke)."""
    broken = []

    async def client(stop):
        answers = []
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            try:
                while not stop.is_set():
                    head = (f"POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
                            f"Content-Length: {len(BODY)}\r\n\r\n")
                    writer.write(head.encode() + BODY)
                    from tests.loadclient import _read_answer

                    answers.append(await _read_answer(reader))
            except (ConnectionError, asyncio.IncompleteReadError):
                broken.append(1)
            finally:
                writer.close()
        return answers

    async def run():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(stop)) for _ in range(32)]
        await asyncio.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(3.0)
        stop.set()
        return [a for t in tasks for a in await t]

    return asyncio.run(run()), len(broken)


def test_a_killed_worker_is_replaced_and_every_other_request_is_answered(tmp_path):
    repository(tmp_path)
    srv = serve_workers(tmp_path)
    try:
        victim = workers_of(srv)[0]
        answers, broken = _killed_worker_run(srv, victim)
        wait_for(lambda: len(workers_of(srv)) == 2 and victim not in workers_of(srv))
        wait_for(lambda: metric(httpx.get(f"{srv.url}/metrics").text, "fastserve_worker_requests") > 0)
        text = httpx.get(f"{srv.url}/metrics").text
        after = post(srv.port, 200, 16)
    finally:
        log = srv.stop()
    lost = metric(text, "fastserve_connections_lost_total")
    assert broken > 0  # the killed worker's connections broke...
    assert lost == broken, (lost, broken)  # ...and the server counted each
    codes = [a.status_code for a in answers if not isinstance(a, Answer) or a.status_code != 200]
    assert not codes, codes[:5]  # every other request was answered
    assert len(answers) > 500, len(answers)
    assert metric(text, "fastserve_worker_restarts_total") == 1
    assert all(a.status_code == 200 for a in after)
    assert "exited with status -9" in log


def test_a_killed_supervisor_takes_its_workers_and_door_with_it(tmp_path):
    repository(tmp_path)
    srv = serve_workers(tmp_path)
    try:
        processes = list(children(srv.proc.pid))
        assert len(processes) == 3  # the door and two workers
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                                  "Z" not in _state(p) for p in processes):
            time.sleep(0.05)
        alive = [p for p in processes if os.path.exists(f"/proc/{p}") and "Z" not in _state(p)]
    finally:
        srv.stop()
    assert not alive, f"orphans left running: {alive}"


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_sigterm_drains_every_worker(tmp_path):
    repository(tmp_path)
    srv = serve_workers(tmp_path)
    try:
        async def run():
            sent = asyncio.Event()
            work = asyncio.create_task(post_many(srv.port, "/v1/models/m/predict", [BODY] * 600, 24, MSGPACK,
                                                 sent=sent))
            await sent.wait()
            await asyncio.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            return await work
        answers = asyncio.run(run())
        code = srv.proc.wait(60)
    finally:
        log = srv.stop()
    assert code == 0, log
    assert len(answers) == 600 and all(a is not None for a in answers)
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 503]
    assert len(ok) + len(refused) == 600 and len(ok) > 0, {a.status_code for a in answers}
    assert "Traceback" not in log, log


def test_the_supervisor_gates_versions_and_holds_no_session_of_its_own(tmp_path):
    for i in range(60):
        copy_model("churn_mlp", tmp_path, name=f"m{i}")
    srv = start_workers(tmp_path, "--workers", "2")
    try:
        text = httpx.get(f"{srv.url}/metrics").text
        listed = httpx.get(f"{srv.url}/v1/models/m7").json()  # answered by the supervisor
    finally:
        log = srv.stop()
    rss = {p: metric(text, "fastserve_process_resident_memory_bytes", process=p) for p in ("supervisor", "worker-0")}
    # 60 sessions of churn_mlp are ~60 MB in a worker (with them, the supervisor's memory was the worker's); the
    # supervisor keeps what status and drift need
    assert rss["supervisor"] < rss["worker-0"] - 30 * 2**20, rss
    (version,) = listed["versions"]
    assert version["gate"] == "passed" and version["inputs"] and version["outputs"]
    assert metric(text, "fastserve_model_version_ready", model="m7", provider="CPUExecutionProvider") == 1
    assert "Traceback" not in log, log
