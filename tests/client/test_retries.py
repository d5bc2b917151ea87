"""Retries: the backoff schedule and the rules of one call, deterministically (an injected random source and
clock); then real 429s and 503s from real servers, which the client retries as the server's Retry-After says, up
to max_retries and the call's deadline, before it raises Overloaded."""

import asyncio
import time

import httpx
import numpy as np
import pytest

from fastserve.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RetryPolicy,
)
from fastserve.client.retry import Call
from tests.client.conftest import assert_answer
from tests.conftest import MODELS, copy_model, start_server
from tests.http.test_batching import metric


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    top = RetryPolicy(backoff_base=0.05, backoff_max=2.0, random=lambda: 1.0)
    assert [top.delay(n) for n in range(8)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    quarter = RetryPolicy(backoff_base=0.05, backoff_max=2.0, random=lambda: 0.25)
    assert [quarter.delay(n) for n in range(8)] == pytest.approx([0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert RetryPolicy(random=lambda: 0.0).delay(3) == 0.0
    assert top.delay(10_000) == 2.0  # no overflow however many retries


def test_retry_after_is_the_floor_and_jitter_comes_on_top():
    policy = RetryPolicy(backoff_base=0.1, random=lambda: 0.5)
    assert policy.delay(0, retry_after=1.0) == pytest.approx(1.05)
    assert policy.delay(2, retry_after=3.0) == pytest.approx(3.2)
    ignoring = RetryPolicy(backoff_base=0.1, respect_retry_after=False, random=lambda: 0.5)
    assert ignoring.delay(0, retry_after=1.0) == pytest.approx(0.05)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def overloaded(retry_after=None, status=503):
    return Overloaded(status, "queue_full", "queue full", request="POST /p", retry_after=retry_after)


def call(clock, timeout=10.0, **policy):
    return Call("POST", "/p", RetryPolicy(random=lambda: 1.0, **policy), timeout, 5.0, clock=clock)


def test_call_retries_until_max_retries_then_raises_with_the_count():
    clock = FakeClock()
    c = call(clock, max_retries=3, backoff_base=0.1)
    waits = []
    with pytest.raises(Overloaded) as caught:
        while True:
            c.begin()
            waits.append(c.wait(overloaded()))
            clock.now += waits[-1]
    assert waits == pytest.approx([0.1, 0.2, 0.4]) and c.attempts == 4
    assert caught.value.attempts == 4 and "gave up after 4 attempts: max_retries is 3" in str(caught.value)


def test_call_stops_when_the_next_wait_would_pass_the_deadline():
    clock = FakeClock()
    c = call(clock, timeout=2.5, max_retries=10, backoff_base=0.0)
    c.begin()
    assert c.wait(overloaded(retry_after=1.0)) == 1.0
    clock.now += 1.0
    assert c.begin() == pytest.approx(1.5)
    with pytest.raises(Overloaded) as caught:
        c.wait(overloaded(retry_after=2.0))  # 2 s from now is past the deadline: give up now, not then
    assert caught.value.attempts == 2 and caught.value.retry_after == 2.0
    assert "would start past the 2.5 s timeout" in str(caught.value)


def test_call_raises_deadline_exceeded_when_no_time_is_left_and_sends_the_time_left():
    clock = FakeClock()
    c = call(clock, timeout=0.5)
    assert c.headers({"a": "b"}, c.begin()) == {"a": "b", "x-request-timeout-ms": "500"}
    assert c.httpx_timeout(0.5) == httpx.Timeout(0.5, connect=0.5)
    assert c.httpx_timeout(60.0) == httpx.Timeout(60.0, connect=5.0)
    assert c.httpx_timeout(None) == httpx.Timeout(None, connect=5.0)
    c.wait(overloaded())
    clock.now += 0.6
    with pytest.raises(DeadlineExceeded) as caught:
        c.begin()
    assert isinstance(caught.value.__cause__, Overloaded) and caught.value.attempts == 1


def test_what_is_retried():
    clock = FakeClock()
    for error in (InvalidRequest(422, "invalid_input", "no"), DeadlineExceeded("late"),
                  InvalidRequest(404, "model_not_found", "no")):
        c = call(clock)
        c.begin()
        with pytest.raises(type(error)):
            c.wait(error)
    c = call(clock)
    c.begin()
    assert c.wait(overloaded(status=429)) > 0 and c.wait(ConnectionFailed("refused")) > 0
    c = call(clock, retry_connection_errors=False)
    c.begin()
    with pytest.raises(ConnectionFailed):
        c.wait(ConnectionFailed("refused"))
    c = Call("GET", "/readyz", RetryPolicy(), 1.0, 1.0, retries=False, clock=clock)
    c.begin()
    with pytest.raises(Overloaded):
        c.wait(overloaded())


@pytest.fixture(scope="module")
def not_ready_server(tmp_path_factory):
    """`churn_mlp` whose only version fails its gate (golden outputs altered): every predict is a 503
    `model_not_ready` with Retry-After: 1."""
    root = tmp_path_factory.mktemp("not-ready")
    folder = copy_model("churn_mlp", root)
    golden = dict(np.load(MODELS / "churn_mlp" / "1" / "validation.npz"))
    golden["probabilities"] = 1.0 - golden["probabilities"]
    np.savez(folder / "1" / "validation.npz", **golden)
    srv = start_server(root, ready_status=503)
    yield srv
    srv.stop()


def requests_counted(url: str, code: str) -> float:
    return metric(httpx.get(f"{url}/metrics").text, "fastserve_requests_total", code=code)


def test_503_is_retried_after_retry_after_until_max_retries(not_ready_server):
    x = np.ones((1, 22), np.float32)
    before = requests_counted(not_ready_server.url, "503")
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        time.sleep(seconds)

    with Client(not_ready_server.url, retry=RetryPolicy(max_retries=2, backoff_base=0.001)) as client:
        client._sleep = sleep
        started = time.monotonic()
        with pytest.raises(Overloaded) as caught:
            client.predict("churn_mlp", x)
        elapsed = time.monotonic() - started
        assert client.health() and not client.ready()
    err = caught.value
    assert (err.status, err.code, err.retry_after, err.attempts) == (503, "model_not_ready", 1.0, 3)
    assert len(slept) == 2 and all(1.0 <= s <= 1.002 for s in slept) and elapsed >= 2.0
    assert requests_counted(not_ready_server.url, "503") - before == 3  # the server saw every attempt
    assert "503 model_not_ready" in str(err) and "gave up after 3 attempts" in str(err)


def test_retries_stop_at_the_deadline(not_ready_server):
    slept = []

    async def main():
        async with AsyncClient(not_ready_server.url, timeout=1.5, max_retries=10) as client:
            async def sleep(seconds):
                slept.append(seconds)
                await asyncio.sleep(seconds)
            client._sleep = sleep
            with pytest.raises(Overloaded) as caught:
                await client.predict("churn_mlp", [[0.0] * 22])
            return caught.value

    err = asyncio.run(main())
    # one wait of Retry-After (1 s) fits in 1.5 s, a second does not: raised without waiting it
    # (Retry-After plus a jitter of at most backoff_base, 0.05 s, for the first retry)
    assert err.attempts == 2 and len(slept) == 1 and 1.0 <= slept[0] <= 1.05 and "1.5 s timeout" in str(err)


def _mlp_taking(tmp_path_factory, rows: int):
    """`churn_mlp` taking `rows` rows a request, in one batch, with room to queue one such request."""
    root = tmp_path_factory.mktemp(f"batches-of-{rows}")
    copy_model("churn_mlp", root, config=f"[inputs]\nmax_rows = {rows}\n[batching]\nmax_batch_size = {rows}\n"
                                         f"max_queue_rows = {rows}\n")
    srv = start_server(root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def big_batch_server(tmp_path_factory):
    """8,192 rows a request: each runs for milliseconds, so a few concurrent ones overflow the queue."""
    yield from _mlp_taking(tmp_path_factory, 8192)


def shed(url: str, reason: str) -> float:
    return metric(httpx.get(f"{url}/metrics").text, "fastserve_shed_requests_total", reason=reason)


def test_429_without_retries_raises_overloaded(big_batch_server, mlp_inputs):
    x = np.tile(mlp_inputs, (128, 1))  # 8,192 rows

    async def main():
        async with AsyncClient(big_batch_server.url, max_retries=0, timeout=30) as client:
            return await asyncio.gather(*(client.predict("churn_mlp", x) for _ in range(8)), return_exceptions=True)

    for _ in range(3):  # a refusal needs a third request in while one runs and one waits: up to the scheduler
        results = asyncio.run(main())
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:
            break
    assert refused and all(isinstance(r, Overloaded) for r in refused), results
    assert {(r.status, r.code, r.retry_after, r.attempts) for r in refused} == {(429, "queue_full", 1.0, 1)}
    assert len(refused) < len(results)
    for answer in results:
        if not isinstance(answer, Exception):
            assert_answer(answer, "churn_mlp", x, exact=False)


def test_429s_are_retried_until_every_call_is_answered(big_batch_server, mlp_inputs):
    x = np.tile(mlp_inputs, (128, 1))
    before = shed(big_batch_server.url, "queue_full")
    slept = []

    async def main():
        policy = RetryPolicy(max_retries=20, backoff_base=0.25)
        async with AsyncClient(big_batch_server.url, retry=policy, timeout=60) as client:
            async def sleep(seconds):
                slept.append(seconds)
                await asyncio.sleep(seconds)

            client._sleep = sleep
            return await asyncio.gather(*(client.predict("churn_mlp", x) for _ in range(6)))

    for _ in range(3):  # as above: a burst that met no full queue proves nothing about retries, so again
        for answer in asyncio.run(main()):
            assert_answer(answer, "churn_mlp", x, exact=False)
        refusals = shed(big_batch_server.url, "queue_full") - before
        if refusals:
            break
    assert refusals > 0 and len(slept) == refusals  # every refusal was waited out and retried
    assert all(s >= 1.0 for s in slept)  # never sooner than Retry-After


@pytest.fixture(scope="module")
def huge_batch_server(tmp_path_factory):
    """32,768 rows a request: a run of 85-250 ms, depending on the machine; its 2.9 MB body is sent, read and refused
    in 8-25 ms."""
    yield from _mlp_taking(tmp_path_factory, 32768)


def test_the_deadline_reaches_the_server_which_refuses_work_it_cannot_finish_in_time(huge_batch_server,
                                                                                      mlp_inputs):
    """With less time left than its run takes, the server refuses at once (503 deadline_exceeded) rather than run
    it, and the client does not wait a Retry-After of 1 s it does not have."""
    x = np.tile(mlp_inputs, (512, 1))  # 32,768 rows
    url = huge_batch_server.url
    run_s = "fastserve_batch_run_seconds_sum"
    with Client(url, max_retries=5) as client:
        ran = metric(httpx.get(f"{url}/metrics").text, run_s)
        assert_answer(client.predict("churn_mlp", x, timeout=10), "churn_mlp", x, exact=False)
        ran = metric(httpx.get(f"{url}/metrics").text, run_s) - ran
        before = shed(url, "deadline_at_arrival")
        # Half its run (85-250 ms, by machine): too little to run it, enough to send it and read the refusal.
        with pytest.raises(Overloaded) as caught:
            client.predict("churn_mlp", x, timeout=max(0.03, 0.5 * ran))
    err = caught.value
    assert (err.status, err.code, err.attempts) == (503, "deadline_exceeded", 1)
    assert shed(url, "deadline_at_arrival") - before == 1
