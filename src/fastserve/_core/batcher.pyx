"""Batch formation: which queued requests run together, when, and which are refused.

Pure bookkeeping over C arrays. Times come in as arguments (`now_ns`), so the logic is tested without a clock, a loop
or a model; `fastserve.batching` drives it from asyncio and runs the batches.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport ceil
from libc.stdint cimport INT64_MAX, int64_t
from libc.string cimport memset

# Seconds; the same buckets as the request latency histogram (fastserve.metrics).
TIME_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0)
cdef int64_t[16] _TIME_BOUNDS_NS = [100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
                                    25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000,
                                    2_500_000_000, 5_000_000_000, 10_000_000_000]
NO_DEADLINE = INT64_MAX
PUSHED, QUEUE_FULL, CANNOT_MEET_DEADLINE = 0, 1, 2
# A run moves its estimate up at most as if it took this many times the estimate: one run stalled by the machine
# (a descheduled thread, a paused VM) must not make every later request look late. A machine that really got slower
# is still followed within a few runs.
cdef double MAX_STEP_UP = 4.0
# With nothing running or queued, no batch started for this long and this many requests refused for their deadline
# since, a request whose deadline has not passed runs whatever the estimate says: an estimate that only refusals
# follow would never be corrected.
cdef int64_t PROBE_AFTER_NS = 100_000_000
cdef int64_t PROBE_AFTER_REFUSALS = 8
# Requests have stopped coming once none came for this many mean gaps: a closed loop of clients sends its requests
# together, microseconds apart, then nothing until answered; a batch that waited on for the mean gap's promise would
# wait out its whole delay every time. (An open stream at that mean rate goes this long without an arrival in under
# 2% of its gaps.)
cdef double PAUSE_GAPS = 4.0


cdef inline int _size_bucket(Py_ssize_t rows) noexcept nogil:
    cdef int b = 0
    while rows > 1 and b < N_SIZE_BUCKETS - 1:
        rows >>= 1
        b += 1
    return b


cdef inline int _time_bucket(int64_t ns) noexcept nogil:
    cdef int b = 0
    while b < N_TIME_BUCKETS - 1 and ns > _TIME_BOUNDS_NS[b]:
        b += 1
    return b


cdef class RunTimeModel:
    """Online estimate of `session.run` time as a function of batch rows.

    One moving average per power-of-two bucket of batch sizes, updated from every run, so the estimate follows the
    machine when it gets slower or faster. Between buckets it interpolates; past the largest seen bucket it scales
    linearly with rows (an overestimate when a run has a fixed cost: the safe side for deadlines). One run counts
    as at most `MAX_STEP_UP` times the current estimate.
    """

    def __cinit__(self, double weight=0.2):
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        memset(self._ns, 0, sizeof(self._ns))
        memset(self._rows, 0, sizeof(self._rows))

    cpdef void observe(self, Py_ssize_t rows, int64_t ns) noexcept:
        if rows <= 0 or ns < 0:
            return
        cdef int b = _size_bucket(rows)
        cdef double seen = ns
        if self._rows[b] == 0:
            self._rows[b] = rows
            self._ns[b] = ns
        else:
            if seen > MAX_STEP_UP * self._ns[b] and self._ns[b] > 0:
                seen = MAX_STEP_UP * self._ns[b]
            self._rows[b] += self.weight * (rows - self._rows[b])
            self._ns[b] += self.weight * (seen - self._ns[b])

    cpdef double estimate(self, Py_ssize_t rows) noexcept:
        """Expected nanoseconds for a batch of `rows`; 0 when nothing has been observed."""
        cdef int b = _size_bucket(rows)
        cdef int lo = -1, hi = -1, i
        i = b
        while i >= 0:
            if self._rows[i] > 0 and self._rows[i] <= rows:
                lo = i
                break
            i -= 1
        i = b
        while i < N_SIZE_BUCKETS:
            if self._rows[i] >= rows:
                hi = i
                break
            i += 1
        if lo >= 0 and hi >= 0:
            if hi == lo or self._rows[hi] == self._rows[lo]:
                return self._ns[lo] if self._ns[lo] > self._ns[hi] else self._ns[hi]
            return self._ns[lo] + (self._ns[hi] - self._ns[lo]) * (rows - self._rows[lo]) / (
                self._rows[hi] - self._rows[lo])
        if lo >= 0:
            return self._ns[lo] * rows / self._rows[lo]
        if hi >= 0:
            return self._ns[hi]
        return 0.0


cdef class BatchQueue:
    """The queue of one model version: requests (tickets with a row count, an arrival time and a deadline) in,
    batches of tickets out.

    - A batch goes as soon as an instance is free and `max_batch_rows` rows wait, or the oldest request has waited
      `max_delay_ns`, or earlier when waiting cannot help: no other request is expected before the delay runs out
      (from the moving average of gaps between arrivals), or requests stopped coming (none for `PAUSE_GAPS` mean
      gaps), or the session would finish what waits before the next arrival anyway, or a queued request's deadline
      leaves no slack.
    - Requests stay whole. One larger than `max_batch_rows` forms a batch of its own.
    - A batch holds no more rows than the run-time estimate lets its earliest deadline allow.
    - `push` refuses at once a request that would overflow `max_queue_rows` rows, or whose deadline cannot be met
      given the backlog; `take` drops (and reports) queued requests whose deadline passed or cannot be met any more.
    """

    def __cinit__(self, Py_ssize_t max_batch_rows, Py_ssize_t max_queue_rows, int64_t max_delay_ns,
                  int instances=1, RunTimeModel run_time=None):
        if max_batch_rows < 1 or max_queue_rows < 1 or max_delay_ns < 0 or instances < 1:
            raise ValueError("max_batch_rows, max_queue_rows and instances must be >= 1, max_delay_ns >= 0")
        self.max_batch_rows = max_batch_rows
        self.max_queue_rows = max_queue_rows
        self.max_delay_ns = max_delay_ns
        self.instances = instances
        self.run_time = run_time if run_time is not None else RunTimeModel()
        self._cap = max_queue_rows  # every request has at least one row
        self._ticket = <int64_t*>PyMem_Malloc(self._cap * sizeof(int64_t))
        self._rows = <Py_ssize_t*>PyMem_Malloc(self._cap * sizeof(Py_ssize_t))
        self._enqueued = <int64_t*>PyMem_Malloc(self._cap * sizeof(int64_t))
        self._deadline = <int64_t*>PyMem_Malloc(self._cap * sizeof(int64_t))
        self._alive = <char*>PyMem_Malloc(self._cap * sizeof(char))
        if not (self._ticket and self._rows and self._enqueued and self._deadline and self._alive):
            raise MemoryError()
        memset(self._batch_sizes, 0, sizeof(self._batch_sizes))
        memset(self._queue_wait, 0, sizeof(self._queue_wait))
        memset(self._run_time, 0, sizeof(self._run_time))

    def __dealloc__(self):
        PyMem_Free(self._ticket)
        PyMem_Free(self._rows)
        PyMem_Free(self._enqueued)
        PyMem_Free(self._deadline)
        PyMem_Free(self._alive)

    cdef inline void _pop_head(self) noexcept:
        cdef Py_ssize_t i = self._head
        if self._alive[i]:
            self.queued_rows -= self._rows[i]
            self.queued_requests -= 1
        self._head = (i + 1) % self._cap
        self._count -= 1

    cdef inline void _skip_dead(self) noexcept:
        while self._count > 0 and not self._alive[self._head]:
            self._pop_head()

    cdef void _compact(self) noexcept:
        # A cancelled request keeps its slot until it reaches the head, so the ring may be full of slots while rows
        # are free: drop every dead slot, keeping the live ones in order from the head.
        cdef Py_ssize_t k, src, dst, kept = 0
        for k in range(self._count):
            src = (self._head + k) % self._cap
            if not self._alive[src]:
                continue
            dst = (self._head + kept) % self._cap
            if dst != src:
                self._ticket[dst] = self._ticket[src]
                self._rows[dst] = self._rows[src]
                self._enqueued[dst] = self._enqueued[src]
                self._deadline[dst] = self._deadline[src]
                self._alive[dst] = 1
            kept += 1
        self._count = kept

    cpdef int64_t backlog_ns(self, int64_t now_ns) noexcept:
        """Expected time before a request pushed now could start running."""
        cdef int64_t busy = 0
        cdef double batches
        if self.in_flight >= self.instances and self._busy_until_ns > now_ns:
            busy = self._busy_until_ns - now_ns
        if self.queued_rows == 0:
            return busy
        batches = ceil(<double>self.queued_rows / self.max_batch_rows)
        return busy + <int64_t>(batches * self.run_time.estimate(min(self.queued_rows, self.max_batch_rows))
                                / self.instances)

    cdef inline void _note_arrival(self, int64_t now_ns) noexcept:
        cdef int64_t gap
        if self._last_arrival_ns > 0:
            gap = now_ns - self._last_arrival_ns
            if gap < 0:
                gap = 0
            self._gap_ns = gap if self._gap_ns == 0 else self._gap_ns + 0.2 * (gap - self._gap_ns)
        self._last_arrival_ns = now_ns

    cdef inline bint _probe(self, int64_t now_ns, int64_t deadline_ns, Py_ssize_t queued) noexcept:
        """Whether a request the estimate calls late runs anyway, with `queued` requests (itself included) in the
        queue (see PROBE_AFTER_NS)."""
        return (self.in_flight == 0 and self.queued_requests <= queued and deadline_ns > now_ns
                and self._late_since_start >= PROBE_AFTER_REFUSALS and now_ns - self._last_start_ns > PROBE_AFTER_NS)

    cpdef void ran_alone(self, Py_ssize_t rows, int64_t now_ns, int64_t run_ns) noexcept:
        """Account for a request that arrived at `now_ns` on an idle, empty queue and was run at once without
        queueing: an arrival, and a batch of one request with no wait."""
        self._note_arrival(now_ns)
        self._last_start_ns = now_ns
        self._late_since_start = 0
        self._batches += 1
        self._batched_rows += rows
        self._batch_sizes[_size_bucket(rows)] += 1
        self._queue_wait[0] += 1
        self.run_time.observe(rows, run_ns)
        self._run_time[_time_bucket(run_ns)] += 1
        self._run_time_sum += run_ns * 1e-9

    cpdef int push(self, int64_t ticket, Py_ssize_t rows, int64_t now_ns, int64_t deadline_ns):
        """Queue a request. Returns PUSHED, QUEUE_FULL or CANNOT_MEET_DEADLINE (then nothing is queued)."""
        cdef Py_ssize_t i
        if rows < 1:
            raise ValueError(f"a request has at least one row, got {rows}")
        if rows > self.max_queue_rows - self.queued_rows:  # not `queued + rows > max`: that sum may overflow
            self._shed_full += 1
            return QUEUE_FULL
        if deadline_ns != INT64_MAX and (
                now_ns + self.backlog_ns(now_ns) + <int64_t>self.run_time.estimate(rows) > deadline_ns) \
                and not self._probe(now_ns, deadline_ns, 0):
            self._shed_late += 1
            self._late_since_start += 1
            return CANNOT_MEET_DEADLINE
        self._note_arrival(now_ns)
        if self._count == self._cap:
            self._compact()  # live requests hold at most max_queue_rows - rows slots: room is made
        i = (self._head + self._count) % self._cap
        self._ticket[i] = ticket
        self._rows[i] = rows
        self._enqueued[i] = now_ns
        self._deadline[i] = deadline_ns
        self._alive[i] = 1
        self._count += 1
        self.queued_rows += rows
        self.queued_requests += 1
        return PUSHED

    cpdef int64_t wait_ns(self, int64_t now_ns):
        """-1: nothing queued; 0: a batch should go now (if an instance is free); else nanoseconds to wait."""
        cdef int64_t budget, slack, pause, min_deadline = INT64_MAX
        cdef Py_ssize_t k, i, expected_rows
        self._skip_dead()
        if self.queued_requests == 0:
            return -1
        if self.queued_rows >= self.max_batch_rows:
            return 0
        budget = self._enqueued[self._head] + self.max_delay_ns - now_ns
        if budget <= 0:
            return 0
        # Waiting helps only if another request is expected before the delay runs out, and only if the session
        # is the bottleneck: when running what waits now ends before the next arrival, waiting just adds latency.
        if self._gap_ns <= 0 or self._gap_ns > budget or self.run_time.estimate(self.queued_rows) < self._gap_ns:
            return 0
        for k in range(self._count):
            i = (self._head + k) % self._cap
            if self._alive[i] and self._deadline[i] < min_deadline:
                min_deadline = self._deadline[i]
        if min_deadline != INT64_MAX:
            expected_rows = self.queued_rows + <Py_ssize_t>(budget / self._gap_ns)
            slack = min_deadline - now_ns - <int64_t>self.run_time.estimate(
                min(expected_rows, self.max_batch_rows))
            if slack <= 0:
                return 0
            if slack < budget:
                budget = slack
        pause = <int64_t>(PAUSE_GAPS * self._gap_ns) - (now_ns - self._last_arrival_ns)
        if pause <= 0:
            return 0
        return pause if pause < budget else budget

    cpdef tuple take(self, int64_t now_ns, int64_t[::1] batch, int64_t[::1] expired):
        """Form the next batch from the head of the queue.

        Writes the batch's tickets into `batch` and those of requests refused for their deadline into `expired`;
        returns (requests in the batch, requests expired, rows in the batch). Counts the batch as in flight until
        `finished` is called.
        """
        cdef Py_ssize_t nb = 0, ne = 0, total = 0, i, r
        cdef int64_t dl, min_dl = INT64_MAX, bound
        while self._count > 0 and nb < batch.shape[0] and ne < expired.shape[0]:
            i = self._head
            if not self._alive[i]:
                self._pop_head()
                continue
            r = self._rows[i]
            dl = self._deadline[i]
            if dl != INT64_MAX and now_ns + <int64_t>self.run_time.estimate(r) > dl and not (
                    nb == 0 and self._probe(now_ns, dl, 1)):
                expired[ne] = self._ticket[i]
                ne += 1
                self._expired += 1
                self._late_since_start += 1
                self._pop_head()
                continue
            if nb > 0:
                if total + r > self.max_batch_rows:
                    break
                bound = dl if dl < min_dl else min_dl
                if bound != INT64_MAX and now_ns + <int64_t>self.run_time.estimate(total + r) > bound:
                    break
            batch[nb] = self._ticket[i]
            nb += 1
            total += r
            if dl < min_dl:
                min_dl = dl
            self._queue_wait[_time_bucket(now_ns - self._enqueued[i])] += 1
            self._queue_wait_sum += (now_ns - self._enqueued[i]) * 1e-9
            self._pop_head()
            if total >= self.max_batch_rows:
                break
        if nb > 0:
            self.in_flight += 1
            self._last_start_ns = now_ns
            self._late_since_start = 0
            bound = now_ns + <int64_t>self.run_time.estimate(total)
            if bound > self._busy_until_ns:
                self._busy_until_ns = bound
            self._batches += 1
            self._batched_rows += total
            self._batch_sizes[_size_bucket(total)] += 1
        return nb, ne, total

    cpdef bint cancel(self, int64_t ticket):
        """Drop a queued request (its client went away). False when it is not queued (already taken)."""
        cdef Py_ssize_t k, i
        for k in range(self._count):
            i = (self._head + k) % self._cap
            if self._alive[i] and self._ticket[i] == ticket:
                self._alive[i] = 0
                self.queued_rows -= self._rows[i]
                self.queued_requests -= 1
                self._cancelled += 1
                return True
        return False

    cpdef void finished(self, Py_ssize_t rows, int64_t run_ns) noexcept:
        """A batch taken by `take` has run; `run_ns` < 0 when it failed (not used for the estimate)."""
        if self.in_flight > 0:
            self.in_flight -= 1
        if self.in_flight == 0:
            self._busy_until_ns = 0  # an estimate that ran long must not hold back the next batch's admissions
        if run_ns >= 0:
            self.run_time.observe(rows, run_ns)
            self._run_time[_time_bucket(run_ns)] += 1
            self._run_time_sum += run_ns * 1e-9

    def stats(self):
        """Counters for the metrics collector: histograms as per-bucket counts (not cumulative)."""
        return {
            "batches": self._batches,
            "batched_rows": self._batched_rows,
            "batch_sizes": [self._batch_sizes[i] for i in range(N_SIZE_BUCKETS)],
            "queue_wait": [self._queue_wait[i] for i in range(N_TIME_BUCKETS)],
            "queue_wait_sum": self._queue_wait_sum,
            "run_time": [self._run_time[i] for i in range(N_TIME_BUCKETS)],
            "run_time_sum": self._run_time_sum,
            "shed_queue_full": self._shed_full,
            "shed_deadline_at_arrival": self._shed_late,
            "shed_deadline_in_queue": self._expired,
            "cancelled": self._cancelled,
            "queued_rows": self.queued_rows,
            "queued_requests": self.queued_requests,
            "in_flight": self.in_flight,
            "arrival_gap_ns": self._gap_ns,
        }
