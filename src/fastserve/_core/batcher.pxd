from libc.stdint cimport int64_t

cdef enum:
    N_SIZE_BUCKETS = 24   # batch sizes 1, 2, 4, ... 2**23
    N_TIME_BUCKETS = 17   # LATENCY_BUCKETS_NS below, then +Inf


cdef class RunTimeModel:
    cdef double _ns[N_SIZE_BUCKETS]     # moving average of run time per power-of-two batch size bucket
    cdef double _rows[N_SIZE_BUCKETS]   # moving average of the batch sizes seen in that bucket; 0 = not seen
    cdef readonly double weight
    cpdef void observe(self, Py_ssize_t rows, int64_t ns) noexcept
    cpdef double estimate(self, Py_ssize_t rows) noexcept


cdef class BatchQueue:
    cdef readonly Py_ssize_t max_batch_rows
    cdef readonly Py_ssize_t max_queue_rows
    cdef readonly int64_t max_delay_ns
    cdef readonly int instances
    cdef readonly RunTimeModel run_time
    cdef readonly Py_ssize_t queued_rows
    cdef readonly Py_ssize_t queued_requests
    cdef readonly int in_flight

    cdef int64_t* _ticket
    cdef Py_ssize_t* _rows
    cdef int64_t* _enqueued
    cdef int64_t* _deadline
    cdef char* _alive
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _count
    cdef double _gap_ns
    cdef int64_t _last_arrival_ns
    cdef int64_t _busy_until_ns
    cdef int64_t _last_start_ns         # when the last batch started (0: never)
    cdef int64_t _late_since_start      # requests refused for their deadline since then

    # counters read at scrape time
    cdef int64_t _batch_sizes[N_SIZE_BUCKETS]
    cdef int64_t _queue_wait[N_TIME_BUCKETS]
    cdef int64_t _run_time[N_TIME_BUCKETS]
    cdef double _queue_wait_sum
    cdef double _run_time_sum
    cdef int64_t _batches
    cdef int64_t _batched_rows
    cdef int64_t _shed_full
    cdef int64_t _shed_late
    cdef int64_t _expired
    cdef int64_t _cancelled

    cdef inline void _pop_head(self) noexcept
    cdef inline void _skip_dead(self) noexcept
    cdef void _compact(self) noexcept
    cdef inline void _note_arrival(self, int64_t now_ns) noexcept
    cdef inline bint _probe(self, int64_t now_ns, int64_t deadline_ns, Py_ssize_t queued) noexcept
    cpdef void ran_alone(self, Py_ssize_t rows, int64_t now_ns, int64_t run_ns) noexcept
    cpdef int push(self, int64_t ticket, Py_ssize_t rows, int64_t now_ns, int64_t deadline_ns)
    cpdef int64_t wait_ns(self, int64_t now_ns)
    cpdef tuple take(self, int64_t now_ns, int64_t[::1] batch, int64_t[::1] expired)
    cpdef bint cancel(self, int64_t ticket)
    cpdef void finished(self, Py_ssize_t rows, int64_t run_ns) noexcept
    cpdef int64_t backlog_ns(self, int64_t now_ns) noexcept
