"""The asyncio batch driver in-process, on a real session: timing and failure behaviour without HTTP."""

import asyncio
import time

import numpy as np
import pytest

from fastserve.batching import Batcher
from fastserve.config import BatchingOptions, RuntimeOptions
from fastserve.exceptions import DeadlineUnmeetable, InferenceError, ModelNotReady
from fastserve.runtime import ModelSession
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def session():
    return ModelSession(MODELS / "churn" / "1" / "model.onnx", RuntimeOptions(device="cpu"), "churn v1")


class Slow:
    """The real session, made to take `seconds` more per run: a model the session cannot keep up with alone."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds
        self.n_features, self.input_dtype = inner.n_features, inner.input_dtype

    def run(self, x):
        time.sleep(self.seconds)
        return self.inner.run(x)


def test_max_delay_is_honoured_and_companions_share_a_batch(session):
    """Runs of 10 ms, arrivals every 2 ms (a loaded machine's late timers leave them well under a run apart), a 40 ms
    delay: waiting helps, so the batcher gathers companions. (That the oldest waits no longer than the delay is the
    core's decision, tested on a clock of its own: tests/core/test_batcher.py.)"""
    slow = Slow(session, 0.010)
    batcher = Batcher(slow, BatchingOptions(max_batch_size=64, max_delay_us=40_000), "churn v1",
                      warm_up={1: 0.010, 8: 0.010})
    x = np.ones((1, 22), dtype=np.float32)

    async def main():
        tasks = []
        for _ in range(8):
            tasks.append(asyncio.create_task(batcher.submit(x)))
            await asyncio.sleep(0.002)
        return await asyncio.gather(*tasks)

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    stats = batcher.queue.stats()
    assert len(answers) == 8 and stats["batched_rows"] == 8
    assert stats["batches"] <= 3, stats  # the first goes alone, before arrivals are known to be frequent


def test_lone_request_does_not_wait(session):
    """A 500 ms delay, and one request: waiting could not help, so it runs at once, a batch of its own counted with
    no wait at all (the first bucket of the queue wait; a request that waited for the timer would not be there)."""
    batcher = Batcher(session, BatchingOptions(max_batch_size=64, max_delay_us=500_000), "churn v1")
    x = np.ones((1, 22), dtype=np.float32)
    try:
        asyncio.run(batcher.submit(x))
    finally:
        batcher.close()
    stats = batcher.queue.stats()
    assert stats["batches"] == 1 and stats["queue_wait"][0] == 1 and sum(stats["queue_wait"]) == 1, stats


def test_deadline_from_slo_and_client_timeout(session):
    batcher = Batcher(session, BatchingOptions(latency_slo_ms=10), "churn v1")
    try:
        assert batcher.deadline_ns(1_000, None) == 1_000 + 10_000_000
        assert batcher.deadline_ns(1_000, 2.5) == 1_000 + 2_500_000
        assert batcher.deadline_ns(1_000, 50) == 1_000 + 10_000_000
    finally:
        batcher.close()


@pytest.mark.parametrize("inline_max_s", [0.0, 1.0], ids=["worker", "inline"])
def test_run_failure_reaches_every_request_of_the_batch_and_the_batcher_recovers(session, inline_max_s):
    class Flaky:
        """A real session that fails on its first multi-row batch."""

        def __init__(self, inner):
            self.inner, self.failed = inner, False
            self.n_features, self.input_dtype = inner.n_features, inner.input_dtype

        def run(self, x):
            if len(x) > 1 and not self.failed:
                self.failed = True
                raise InferenceError("boom")
            return self.inner.run(x)

    batcher = Batcher(Flaky(session), BatchingOptions(max_batch_size=8, max_delay_us=50_000), "flaky",
                      warm_up={1: 20e-6, 8: 50e-6}, inline_max_s=inline_max_s)
    x = np.ones((1, 22), dtype=np.float32)

    async def main():
        first = [asyncio.create_task(batcher.submit(x)) for _ in range(4)]
        results = await asyncio.gather(*first, return_exceptions=True)
        again = await batcher.submit(np.ones((3, 22), dtype=np.float32))
        return results, again

    try:
        results, again = asyncio.run(main())
    finally:
        batcher.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors and all(isinstance(e, InferenceError) for e in errors)
    assert again["probabilities"].shape == (3, 2)
    assert batcher.queue.in_flight == 0


def test_expired_in_queue_is_refused(session):
    """A batch that takes 200 ms blocks the single instance; a request with a 20 ms timeout behind it expires."""
    batcher = Batcher(Slow(session, 0.2), BatchingOptions(max_batch_size=1, max_delay_us=0), "slow")
    x = np.ones((1, 22), dtype=np.float32)

    async def main():
        first = asyncio.create_task(batcher.submit(x))
        await asyncio.sleep(0.01)
        second = batcher.submit(x, time.monotonic_ns() + 20_000_000)
        return await asyncio.gather(first, second, return_exceptions=True)

    try:
        first, second = asyncio.run(main())
    finally:
        batcher.close()
    assert first["label"].shape == (1,)
    assert isinstance(second, DeadlineUnmeetable)


def test_short_runs_happen_on_the_loop_thread_and_long_ones_on_a_worker(session):
    """A run estimated under `inline_max_s` happens on the loop thread, whether its request came alone (no queue) or
    through the queue; a longer one goes to the instance's worker thread. All are counted as batches."""
    import threading

    seen = []

    class Where:
        n_features, input_dtype = session.n_features, session.input_dtype

        @staticmethod
        def run(x):
            seen.append((len(x), threading.current_thread().name))
            return session.run(x)

    batcher = Batcher(Where(), BatchingOptions(), "churn v1", warm_up={1: 20e-6, 64: 1e-3}, inline_max_s=200e-6)
    x = np.ones((1, 22), dtype=np.float32)
    big = np.ones((64, 22), dtype=np.float32)

    async def main():
        alone = await batcher.submit(x, alone=True)
        queued = await batcher.submit(x, alone=False)
        long = await batcher.submit(big, alone=False)
        return alone, queued, long

    try:
        alone, queued, long = asyncio.run(main())
    finally:
        batcher.close()
    here = threading.current_thread().name
    assert seen[0] == (1, here) and seen[1] == (1, here)
    assert seen[2][0] == 64 and seen[2][1] != here
    np.testing.assert_array_equal(alone["probabilities"], queued["probabilities"])
    np.testing.assert_array_equal(long["probabilities"], np.repeat(alone["probabilities"], 64, axis=0))
    assert batcher.queue.stats()["batches"] == 3


def test_runs_stay_on_the_loop_thread_after_slow_runs_on_a_worker(session):
    """Whether a run is short is read from the warm-up: runs that measured slow (a worker waiting for the GIL, a
    paused machine) move the estimate the deadlines use, not the choice of thread."""
    import threading

    seen = []

    class Where:
        n_features, input_dtype = session.n_features, session.input_dtype

        @staticmethod
        def run(x):
            seen.append(threading.current_thread().name)
            return session.run(x)

    batcher = Batcher(Where(), BatchingOptions(), "churn v1", warm_up={1: 20e-6, 64: 1e-3}, inline_max_s=200e-6)
    for _ in range(20):
        batcher.queue.run_time.observe(1, 5_000_000)  # 5 ms a row, as measured on a busy worker
    assert batcher.queue.run_time.estimate(1) > 200_000

    async def main():
        return await batcher.submit(np.ones((1, 22), dtype=np.float32), alone=False)

    try:
        asyncio.run(main())
    finally:
        batcher.close()
    assert seen == [threading.current_thread().name]


def test_drain_waits_for_held_requests_and_refuse_waiting_answers_the_rest(session):
    """A version being retired: drain waits while requests are held; what is still queued after its timeout is
    answered with ModelNotReady (503) rather than left waiting forever."""
    slow = Slow(session, 0.05)
    batcher = Batcher(slow, BatchingOptions(max_batch_size=1, max_delay_us=0), "churn v1", warm_up={1: 0.05})
    x = np.ones((1, 22), dtype=np.float32)

    async def main():
        tasks = [asyncio.create_task(batcher.submit(x)) for _ in range(6)]
        await asyncio.sleep(0.01)
        assert not batcher.idle
        await batcher.drain(0.08)  # one or two runs of 50 ms fit; the rest still wait
        refused = batcher.refuse_waiting("version unloaded")
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.drain(5.0)
        return refused, results

    try:
        refused, results = asyncio.run(main())
    finally:
        batcher.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert refused == len(errors) and 1 <= refused <= 5
    assert all(isinstance(e, ModelNotReady) and "version unloaded" in e.message for e in errors)
    assert all(isinstance(r, dict) for r in results if r not in errors)
    assert batcher.idle
