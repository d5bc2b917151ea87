"""Batch formation without a clock, a loop or a model: times are arguments."""

import numpy as np
import pytest

from fastserve._core.batcher import (
    CANNOT_MEET_DEADLINE,
    NO_DEADLINE,
    PUSHED,
    QUEUE_FULL,
    BatchQueue,
    RunTimeModel,
)

US = 1_000
MS = 1_000_000


def buffers(n=1024):
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)


def take(q, now):
    batch, expired = buffers()
    nb, ne, rows = q.take(now, batch, expired)
    return list(batch[:nb]), list(expired[:ne]), rows


def model(per_row_ns=1_000, fixed_ns=10_000):
    m = RunTimeModel()
    for rows in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        m.observe(rows, fixed_ns + per_row_ns * rows)
    return m


def test_run_time_model_interpolates_and_extrapolates():
    m = model()
    assert m.estimate(1) == pytest.approx(11_000)
    assert m.estimate(48) == pytest.approx(10_000 + 48_000)
    assert m.estimate(512) == pytest.approx(266_000 * 2)  # linear past the largest bucket seen: an overestimate
    assert RunTimeModel().estimate(10) == 0.0


def test_run_time_model_follows_a_slower_machine():
    m = model()
    for _ in range(50):
        m.observe(8, 36_000)  # twice as slow
    assert m.estimate(8) == pytest.approx(36_000, rel=1e-3)


def test_one_stalled_run_does_not_make_every_request_look_late():
    m = model()
    m.observe(8, 1_000 * 18_000)  # one run a thousand times too slow (the machine paused)
    assert m.estimate(8) <= 18_000 * (1 + 0.2 * 3) + 1  # counted as at most 4x the estimate
    for _ in range(20):
        m.observe(8, 180_000)  # ten times slower for good: still followed within a few runs
    assert m.estimate(8) == pytest.approx(180_000, rel=0.05)


def test_an_idle_queue_probes_an_estimate_that_only_refusals_would_follow():
    q = BatchQueue(8, 1024, 0, run_time=model(per_row_ns=10 * MS))  # the estimate says 10 ms a row
    assert q.push(1, 1, 0, NO_DEADLINE) == PUSHED
    assert take(q, 0)[0] == [1]
    q.finished(1, 10 * MS)
    # Just after a batch started, a request the estimate calls late is refused; so it is 100 ms later as long as
    # fewer than 8 have been...
    assert q.push(2, 1, 50 * MS, 55 * MS) == CANNOT_MEET_DEADLINE
    for t in range(10, 16):
        assert q.push(t, 1, 150 * MS, 155 * MS) == CANNOT_MEET_DEADLINE
    # ...but then, with nothing running or queued, one whose deadline has not passed runs anyway, and is not dropped
    # from the queue for its deadline either; then the estimate learns from its run.
    later = 200 * MS
    assert q.push(16, 1, later, later + 5 * MS) == CANNOT_MEET_DEADLINE  # the 8th refusal
    assert q.push(3, 1, later, later + 5 * MS) == PUSHED
    assert take(q, later) == ([3], [], 1)
    assert q.push(4, 1, later, later + 5 * MS) == CANNOT_MEET_DEADLINE  # one at a time: 3 is running
    q.finished(1, 20 * US)
    assert q.run_time.estimate(1) < 10 * MS
    assert q.push(5, 1, later + 1, later + 1) == CANNOT_MEET_DEADLINE  # a deadline already passed is never run


def test_a_lone_request_goes_at_once():
    q = BatchQueue(32, 1024, 2 * MS, run_time=model())
    assert q.push(1, 1, 0, NO_DEADLINE) == PUSHED
    assert q.wait_ns(0) == 0  # no arrival history: waiting cannot help
    assert take(q, 0) == ([1], [], 1)
    assert q.in_flight == 1 and q.queued_rows == 0


def test_full_batch_goes_at_once_and_requests_stay_whole():
    q = BatchQueue(8, 1024, 10 * MS, run_time=model())
    for t in range(5):
        q.push(t, 3, t * US, NO_DEADLINE)
    assert q.wait_ns(5 * US) == 0
    assert take(q, 5 * US) == ([0, 1], [], 6)  # a third request of 3 rows would make 9 > 8
    assert take(q, 5 * US) == ([2, 3], [], 6)
    assert q.queued_rows == 3


def test_waits_for_companions_while_they_keep_coming():
    q = BatchQueue(256, 1024, 1 * MS, run_time=model(fixed_ns=50_000))  # a run (50 us) outlasts the 10 us gaps
    for t in range(4):  # arrivals every 10 us
        q.push(t, 1, t * 10 * US, NO_DEADLINE)
    assert q.wait_ns(30 * US) == 40 * US  # while the next is due (four mean gaps): then it looks again
    q.push(4, 1, 70 * US, NO_DEADLINE)
    assert q.wait_ns(70 * US) == 64 * US  # they keep coming (the mean gap grew to 16 us)
    for t in range(5, 95):  # ... until the oldest has waited max_delay
        q.push(t, 1, (t + 3) * 10 * US, NO_DEADLINE)
    assert q.wait_ns(975 * US) == 25 * US
    assert q.wait_ns(1 * MS) == 0


def test_stops_waiting_once_requests_stop_coming():
    # A closed loop: 8 clients send together, microseconds apart, then nothing until they are answered.
    q = BatchQueue(64, 1024, 1 * MS, run_time=model(fixed_ns=50_000))
    for t in range(8):
        q.push(t, 1, t * 2 * US, NO_DEADLINE)
    assert q.wait_ns(14 * US) == 8 * US
    assert q.wait_ns(22 * US) == 0  # four mean gaps with no arrival: none is coming, the batch goes


def test_does_not_wait_when_arrivals_are_too_rare_to_help():
    q = BatchQueue(64, 1024, 1 * MS, run_time=model())
    q.push(1, 1, 0, NO_DEADLINE)
    q.push(2, 1, 5 * MS, NO_DEADLINE)  # gaps of 5 ms > max_delay
    take(q, 5 * MS)
    q.finished(2, 12_000)
    q.push(3, 1, 10 * MS, NO_DEADLINE)
    assert q.wait_ns(10 * MS) == 0


def test_does_not_wait_when_the_session_keeps_up():
    q = BatchQueue(64, 1024, 1 * MS, run_time=model())  # a one-row run takes 11 us
    for t in range(4):  # arrivals every 100 us: each run ends long before the next arrival
        q.push(t, 1, t * 100 * US, NO_DEADLINE)
        take(q, t * 100 * US)
        q.finished(1, 11_000)
    q.push(9, 1, 400 * US, NO_DEADLINE)
    assert q.wait_ns(400 * US) == 0


def test_deadline_limits_the_wait():
    q = BatchQueue(64, 1024, 10 * MS, run_time=model(fixed_ns=50_000))
    for t in range(3):
        q.push(t, 1, t * 10 * US, NO_DEADLINE)
    q.push(9, 1, 30 * US, 30 * US + 200 * US)
    wait = q.wait_ns(30 * US)
    assert 0 < wait < 200 * US


def test_queue_bound_refuses():
    q = BatchQueue(8, 10, 1 * MS)
    assert q.push(1, 6, 0, NO_DEADLINE) == PUSHED
    assert q.push(2, 5, 0, NO_DEADLINE) == QUEUE_FULL
    assert q.push(3, 4, 0, NO_DEADLINE) == PUSHED
    assert q.stats()["shed_queue_full"] == 1


def test_unmeetable_deadline_is_refused_at_push():
    q = BatchQueue(8, 1024, 1 * MS, run_time=model())
    assert q.push(1, 1, 0, 5_000) == CANNOT_MEET_DEADLINE  # a run takes 11 us
    assert q.push(2, 1, 0, 50_000) == PUSHED
    assert q.stats()["shed_deadline_at_arrival"] == 1


def test_backlog_counts_against_the_deadline():
    q = BatchQueue(4, 1024, 1 * MS, run_time=model())
    for t in range(10):
        q.push(t, 4, 0, NO_DEADLINE)  # 10 batches of 4 rows queued, 14 us each
    assert q.backlog_ns(0) == pytest.approx(140_000, rel=0.01)
    assert q.push(99, 1, 0, 100_000) == CANNOT_MEET_DEADLINE
    assert q.push(100, 1, 0, 200_000) == PUSHED


def test_expired_requests_are_dropped_before_running():
    q = BatchQueue(8, 1024, 1 * MS, run_time=model())
    q.push(1, 1, 0, 100 * US)
    q.push(2, 1, 0, NO_DEADLINE)
    batch, expired, rows = take(q, 95 * US)  # 95 us + 11 us run > 100 us
    assert (batch, expired, rows) == ([2], [1], 1)
    assert q.stats()["shed_deadline_in_queue"] == 1


def test_batch_is_capped_by_its_earliest_deadline():
    q = BatchQueue(256, 1024, 1 * MS, run_time=model())
    q.push(1, 10, 0, 50 * US)  # 10 rows run in 20 us
    q.push(2, 100, 0, NO_DEADLINE)  # with them: 120 us, past the first request's deadline
    assert take(q, 0) == ([1], [], 10)
    assert take(q, 0) == ([2], [], 100)


def test_oversize_request_runs_alone():
    q = BatchQueue(8, 1024, 1 * MS)
    q.push(1, 20, 0, NO_DEADLINE)
    q.push(2, 1, 0, NO_DEADLINE)
    assert take(q, 0) == ([1], [], 20)
    assert take(q, 0) == ([2], [], 1)


def test_cancelled_requests_never_run():
    q = BatchQueue(8, 1024, 1 * MS)
    for t in range(3):
        q.push(t, 1, 0, NO_DEADLINE)
    assert q.cancel(1) is True
    assert q.cancel(1) is False
    assert q.queued_rows == 2
    assert take(q, 0) == ([0, 2], [], 2)
    assert q.cancel(0) is False  # already taken
    assert q.stats()["cancelled"] == 1


def test_cancelled_head_does_not_hold_the_queue():
    q = BatchQueue(8, 1024, 1 * MS)
    q.push(1, 1, 0, NO_DEADLINE)
    q.cancel(1)
    assert q.wait_ns(0) == -1


def test_ring_wraps_around():
    q = BatchQueue(4, 8, 0)
    seen = []
    for t in range(100):
        assert q.push(t, 1, t, NO_DEADLINE) == PUSHED
        if t % 3 == 2:
            batch, _, _ = take(q, t)
            seen.extend(batch)
            q.finished(len(batch), 1000)
    while q.queued_requests:
        seen.extend(take(q, 1000)[0])
    assert seen == list(range(100))


def test_stats_count_batches_and_histograms():
    q = BatchQueue(8, 1024, 0)
    for t in range(6):
        q.push(t, 1, 0, NO_DEADLINE)
    take(q, 300 * US)
    q.finished(6, 2 * MS)
    s = q.stats()
    assert s["batches"] == 1 and s["batched_rows"] == 6
    assert s["batch_sizes"][2] == 1  # 4..7 rows
    assert sum(s["queue_wait"]) == 6 and s["queue_wait"][2] == 6  # 300 us falls in (250 us, 500 us]
    assert s["run_time"][4] == 1 and s["run_time_sum"] == pytest.approx(0.002)
    assert s["in_flight"] == 0


def test_invalid_arguments():
    with pytest.raises(ValueError):
        BatchQueue(0, 10, 0)
    with pytest.raises(ValueError):
        BatchQueue(8, 10, 0).push(1, 0, 0, NO_DEADLINE)


def test_ran_alone_counts_a_batch_of_one_with_no_wait():
    q = BatchQueue(8, 1024, 1 * MS)
    q.ran_alone(3, 1, 20_000)  # monotonic clocks never read 0
    q.ran_alone(1, 1 + 100 * US, 12_000)
    s = q.stats()
    assert (s["batches"], s["batched_rows"], s["queue_wait"][0], s["in_flight"]) == (2, 4, 2, 0)
    assert s["arrival_gap_ns"] == 100 * US
    assert q.run_time.estimate(1) == pytest.approx(12_000)
