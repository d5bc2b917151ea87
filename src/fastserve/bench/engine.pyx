"""The open-loop load generator behind `fastserve bench`: one epoll loop over non-blocking keep-alive connections,
in C with the GIL released, no Python object per request.

Each request has an intended send time (Poisson or evenly spaced arrivals at the offered rate) and its latency runs
from that time to the last byte of its answer, whatever happened in between (no coordinated omission): a request that
arrives while every connection is busy waits in a queue here, and the wait counts. One request in flight per
connection (no pipelining); the generator reads of each answer only what it needs (status line, Content-Length or
chunked framing, Connection: close), and reconnects where the server closed. A connection that is refused counts one
"refused" error for the request that needed it, and the next request tries again.

Two lags are kept apart. `send_lag` is the generator's own, which says whether it kept up: from the moment a request
could go to its write, that moment being its intended time or, if later, when the answer that freed a connection for
it arrived (bounded from below by when the epoll call before the one that returned it returned, or by the start of
the wait it ended): a generator preempted, or too slow to read answers, shows it even while every connection is
busy. `conn_wait` is how long requests waited for a connection, which is the server's doing and counts in their
latency.
Between sends the loop sleeps in epoll (epoll_pwait2: nanosecond timeouts) and busy-polls the last stretch before
the next intended send: 30 µs, or twice as long as sleeps have lately ended late (up to 1 ms).

Linux only (epoll, epoll_pwait2): setup.py builds this module and the sink there alone.
"""

import socket as pysocket

import numpy as np

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.math cimport log
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

from fastserve.bench._net cimport *
from fastserve.bench.histogram cimport Histogram

from fastserve.bench.sink import sink

__all__ = ["ERROR_KINDS", "Trial", "run_trial", "sink"]

ERROR_KINDS = ("refused", "timeout", "reset", "closed", "other", "dropped")

cdef enum:
    DEAD = 0
    CONNECTING = 1
    IDLE = 2
    BUSY = 3

cdef enum:
    P_HEAD = 0
    P_LENGTH = 1
    P_CHUNK_SIZE = 2
    P_CHUNK_EXT = 3
    P_CHUNK_DATA = 4
    P_CHUNK_END = 5
    P_TRAILER = 6
    P_TO_CLOSE = 7
    P_DONE = 8

cdef enum:
    E_REFUSED = 0
    E_TIMEOUT = 1
    E_RESET = 2
    E_CLOSED = 3
    E_OTHER = 4
    E_DROPPED = 5
    N_ERRORS = 6

cdef enum:
    MAX_EVENTS = 256
    READ_BUFFER = 256 * 1024
    MAX_HEAD = 64 * 1024
    N_STATUS = 1000

cdef int64_t MIN_SPIN_NS = 30_000         # busy-poll at least this long before an intended send
cdef int64_t MAX_SPIN_NS = 1_000_000      # at most this long, however late sleeps end
cdef int64_t SWEEP_NS = 1_000_000         # timeouts are looked for once a millisecond
cdef int64_t SIGNALS_NS = 100_000_000     # Ctrl-C is looked for ten times a second
cdef int64_t MAX_WAIT_NS = 10_000_000


cdef struct Conn:
    int fd
    int state
    bint has_request
    bint in_free                # has an entry in the free ring (possibly stale: then state says so)
    bint writing                # registered for EPOLLOUT: a request only partly written
    bint no_body                # the request is a HEAD: its answer has no body
    int64_t intended            # the request's intended send time
    int64_t seq                 # and its number
    bint warming                # the request is a warm-up one, sent before the trial and counted nowhere
    int64_t free_since          # when the connection came free (or connected) for it
    int64_t since               # when the connect began (a connect without a request times out too)
    const char* out
    Py_ssize_t out_left
    # the answer, as read so far
    int parse
    int status
    bint close_after
    int64_t remaining
    Py_ssize_t line_len
    char* head                  # a head split across reads, gathered (allocated on first need)
    Py_ssize_t head_len
    Py_ssize_t head_cap


cdef inline uint64_t _splitmix(uint64_t* state) noexcept nogil:
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline bint _lower_eq(const char* p, Py_ssize_t n, const char* name, Py_ssize_t name_len) noexcept nogil:
    # `name` is lower case
    cdef Py_ssize_t i
    if n != name_len:
        return False
    for i in range(n):
        if (p[i] | 0x20) != name[i]:
            return False
    return True


cdef inline bint _has_token(const char* p, Py_ssize_t n, const char* token, Py_ssize_t token_len) noexcept nogil:
    # case-insensitive substring; `token` is lower case
    cdef Py_ssize_t i, j
    for i in range(n - token_len + 1):
        for j in range(token_len):
            if (p[i + j] | 0x20) != token[j]:
                break
        else:
            return True
    return False


cdef int _parse_head(Conn* c, const char* h, Py_ssize_t n) noexcept nogil:
    """The head of an answer (`n` bytes, ending with the blank line): sets how its body is framed. -1 if it is not
    HTTP/1.x."""
    cdef Py_ssize_t pos, end, colon, v0, v1
    cdef const char* line
    cdef const char* nl
    cdef int64_t length = -1
    cdef bint chunked = False
    cdef int status
    if n < 16 or memcmp(h, b"HTTP/1.", 7) != 0 or h[8] != b' ':
        return -1
    if not (b'0' <= h[9] <= b'9' and b'0' <= h[10] <= b'9' and b'0' <= h[11] <= b'9'):
        return -1
    status = (h[9] - 48) * 100 + (h[10] - 48) * 10 + (h[11] - 48)
    c.close_after = c.close_after or h[7] == b'0'
    nl = <const char*>memchr(h, b'\n', n)
    pos = nl - h + 1
    while pos < n:
        line = h + pos
        nl = <const char*>memchr(line, b'\n', n - pos)
        end = nl - h
        pos = end + 1
        if end > 0 and h[end - 1] == b'\r':
            end -= 1
        if line == h + end:
            break
        colon = 0
        while line + colon < h + end and line[colon] != b':':
            colon += 1
        if line + colon == h + end:
            return -1
        v0 = colon + 1
        v1 = (h + end) - line
        while v0 < v1 and (line[v0] == b' ' or line[v0] == b'\t'):
            v0 += 1
        while v1 > v0 and (line[v1 - 1] == b' ' or line[v1 - 1] == b'\t'):
            v1 -= 1
        if _lower_eq(line, colon, b"content-length", 14):
            length = 0
            if v0 == v1:
                return -1
            while v0 < v1:
                if not (b'0' <= line[v0] <= b'9') or length > (<int64_t>1 << 50):
                    return -1
                length = length * 10 + (line[v0] - 48)
                v0 += 1
        elif _lower_eq(line, colon, b"transfer-encoding", 17):
            chunked = _has_token(line + v0, v1 - v0, b"chunked", 7)
        elif _lower_eq(line, colon, b"connection", 10):
            if _has_token(line + v0, v1 - v0, b"close", 5):
                c.close_after = True
            elif _has_token(line + v0, v1 - v0, b"keep-alive", 10):
                c.close_after = False
    if 100 <= status < 200 and status != 101:
        c.parse = P_HEAD        # an interim answer (100 Continue): the real one follows
        return 0
    c.status = status
    if c.no_body or status == 204 or status == 304 or status == 101:
        c.parse = P_DONE
    elif chunked:
        c.parse = P_CHUNK_SIZE
        c.remaining = 0
    elif length >= 0:
        c.parse = P_LENGTH if length > 0 else P_DONE
        c.remaining = length
    else:
        c.parse = P_TO_CLOSE
        c.close_after = True
    return 0


cdef inline Py_ssize_t _end_of_head(const char* p, Py_ssize_t n) noexcept nogil:
    cdef const char* e = <const char*>memmem(p, n, b"\r\n\r\n", 4)
    return -1 if e == NULL else e - p + 4


cdef int _feed(Conn* c, const char* p, Py_ssize_t n) noexcept nogil:
    """Reads `n` bytes of the answer: 1 when it is complete, 0 when more is needed, -1 if it is malformed. Bytes
    past a complete answer (none should come: one request in flight) make the connection close after it."""
    cdef Py_ssize_t i = 0, k, old, end
    cdef int64_t digit
    cdef char ch
    cdef const char* nl
    cdef char* grown
    while True:
        if c.parse == P_DONE:
            if i < n:
                c.close_after = True
            return 1
        if i >= n:
            return 0
        if c.parse == P_HEAD:
            if c.head_len == 0:
                end = _end_of_head(p + i, n - i)
                if end >= 0:
                    if _parse_head(c, p + i, end) < 0:
                        return -1
                    i += end
                    continue
            # the head is split across reads: gather it
            old = c.head_len
            if old + (n - i) > MAX_HEAD:
                return -1
            if old + (n - i) > c.head_cap:
                k = max(4096, 2 * (old + (n - i)))
                grown = <char*>PyMem_RawRealloc(c.head, k)
                if grown == NULL:
                    return -1
                c.head, c.head_cap = grown, k
            memcpy(c.head + old, p + i, n - i)
            c.head_len = old + (n - i)
            k = old - 3 if old >= 3 else 0
            end = _end_of_head(c.head + k, c.head_len - k)
            if end < 0:
                return 0
            end += k
            c.head_len = 0
            if _parse_head(c, c.head, end) < 0:
                return -1
            i += end - old
        elif c.parse == P_LENGTH or c.parse == P_CHUNK_DATA:
            k = min(c.remaining, n - i)
            i += k
            c.remaining -= k
            if c.remaining == 0:
                c.parse = P_DONE if c.parse == P_LENGTH else P_CHUNK_END
        elif c.parse == P_CHUNK_SIZE:
            ch = p[i]
            i += 1
            if b'0' <= ch <= b'9':
                digit = ch - 48
            elif b'a' <= (ch | 0x20) <= b'f':
                digit = (ch | 0x20) - 87
            elif ch == b';' or ch == b' ' or ch == b'\t':
                c.parse = P_CHUNK_EXT
                continue
            elif ch == b'\r':
                continue
            elif ch == b'\n':
                c.parse = P_CHUNK_DATA if c.remaining > 0 else P_TRAILER
                c.line_len = 0
                continue
            else:
                return -1
            if c.remaining > (<int64_t>1 << 50):
                return -1
            c.remaining = c.remaining * 16 + digit
        elif c.parse == P_CHUNK_EXT or c.parse == P_CHUNK_END:
            nl = <const char*>memchr(p + i, b'\n', n - i)
            if nl == NULL:
                i = n
            else:
                i = nl - p + 1
                if c.parse == P_CHUNK_END:
                    c.parse = P_CHUNK_SIZE
                    c.remaining = 0
                else:
                    c.parse = P_CHUNK_DATA if c.remaining > 0 else P_TRAILER
                    c.line_len = 0
        elif c.parse == P_TRAILER:
            ch = p[i]
            i += 1
            if ch == b'\n':
                if c.line_len == 0:
                    c.parse = P_DONE
                c.line_len = 0
            elif ch != b'\r':
                c.line_len += 1
        else:  # P_TO_CLOSE: the body runs to the end of the connection
            return 0


@cython.final
cdef class _Generator:
    cdef int epfd
    cdef Conn* conns
    cdef int n_conns
    cdef int* free_ring
    cdef int free_head
    cdef int free_len
    cdef int* dead
    cdef int n_dead
    cdef sockaddr_storage address
    cdef socklen_t address_len
    cdef int family
    # the requests, end to end in one block
    cdef char* data
    cdef Py_ssize_t* offsets
    cdef Py_ssize_t* lengths
    cdef bint* heads
    cdef Py_ssize_t n_requests
    # requests due and waiting for a connection: intended times and sequence numbers, a ring
    cdef int64_t* queue_t
    cdef int64_t* queue_seq
    cdef Py_ssize_t queue_head
    cdef Py_ssize_t queue_len
    cdef Py_ssize_t queue_cap
    # the schedule
    cdef double rate
    cdef bint poisson
    cdef uint64_t rng
    cdef int64_t t0
    cdef int64_t end
    cdef double next_offset        # ns after t0
    cdef int64_t next_t
    cdef int64_t seq
    cdef int64_t timeout_ns
    cdef int64_t max_in_flight
    # what happened
    cdef int64_t scheduled
    cdef int64_t written
    cdef int64_t answered
    cdef int64_t on_wire
    cdef int64_t last_done
    cdef int64_t cpu0
    cdef int64_t cpu1
    cdef int64_t spin_ns
    cdef int64_t spin_window       # how long before an intended send the loop stops sleeping and busy-polls
    cdef int64_t last_return       # when the last epoll call returned
    cdef int64_t ready_floor       # the earliest the events of the last epoll call can have come
    cdef int64_t errors[N_ERRORS]
    cdef int64_t statuses[N_STATUS]
    cdef Histogram latency
    cdef Histogram send_lag
    cdef Histogram conn_wait
    # with `record`: each request's outcome by number (intended send, latency from it, status, send lag), in numpy
    # arrays kept alive by `records`
    cdef Py_ssize_t n_record
    cdef int64_t* rec_intended
    cdef int64_t* rec_latency
    cdef int32_t* rec_status
    cdef int64_t* rec_lag
    cdef object records
    cdef bint warm                 # one request on each connection, answered before the trial begins
    cdef int warm_left
    cdef char* buffer
    cdef epoll_event events[MAX_EVENTS]
    cdef object pending_exception

    def __cinit__(self):
        self.epfd = -1
        self.conns = NULL
        self.n_conns = 0
        self.free_ring = self.dead = NULL
        self.data = NULL
        self.offsets = self.lengths = NULL
        self.heads = NULL
        self.queue_t = self.queue_seq = NULL
        self.buffer = NULL
        memset(self.errors, 0, sizeof(self.errors))
        memset(self.statuses, 0, sizeof(self.statuses))

    def __dealloc__(self):
        self.close_all()
        PyMem_RawFree(self.conns)
        PyMem_RawFree(self.free_ring)
        PyMem_RawFree(self.dead)
        PyMem_RawFree(self.data)
        PyMem_RawFree(self.offsets)
        PyMem_RawFree(self.lengths)
        PyMem_RawFree(self.heads)
        PyMem_RawFree(self.queue_t)
        PyMem_RawFree(self.queue_seq)
        PyMem_RawFree(self.buffer)
        if self.epfd >= 0:
            close(self.epfd)

    cdef void close_all(self) noexcept nogil:
        cdef int i
        if self.conns == NULL:
            return
        for i in range(self.n_conns):
            if self.conns[i].fd >= 0:
                close(self.conns[i].fd)
                self.conns[i].fd = -1
            PyMem_RawFree(self.conns[i].head)
            self.conns[i].head = NULL
            self.conns[i].head_cap = 0

    def setup(self, str host, int port, list requests, double rate, double duration_s, int connections,
              bint poisson, double timeout_ms, uint64_t seed, max_in_flight, Py_ssize_t record, bint warm):
        cdef Py_ssize_t i, total = 0, n = len(requests)
        cdef bytes raw
        cdef int64_t[::1] intended, latency, lag
        cdef int32_t[::1] status
        if record > 0:
            self.records = {"intended_ns": np.full(record, -1, np.int64), "latency_ns": np.full(record, -1, np.int64),
                            "status": np.zeros(record, np.int32), "send_lag_ns": np.full(record, -1, np.int64)}
            intended, latency = self.records["intended_ns"], self.records["latency_ns"]
            status, lag = self.records["status"], self.records["send_lag_ns"]
            self.rec_intended, self.rec_latency, self.rec_status, self.rec_lag = (
                &intended[0], &latency[0], &status[0], &lag[0])
            self.n_record = record
        family, _, _, _, resolved = pysocket.getaddrinfo(host, port, type=pysocket.SOCK_STREAM)[0]
        scope = resolved[3] if family == pysocket.AF_INET6 else 0
        self.address_len = fs_address(resolved[0].encode(), port, scope, &self.address)
        if self.address_len == 0:
            raise ValueError(f"expected an IPv4 or IPv6 host, got {host!r} ({resolved[0]!r})")
        self.family = family
        self.n_conns = connections
        self.conns = <Conn*>PyMem_RawMalloc(connections * sizeof(Conn))
        self.free_ring = <int*>PyMem_RawMalloc(connections * sizeof(int))
        self.dead = <int*>PyMem_RawMalloc(connections * sizeof(int))
        self.buffer = <char*>PyMem_RawMalloc(READ_BUFFER)
        self.queue_cap = 4096
        self.queue_t = <int64_t*>PyMem_RawMalloc(self.queue_cap * sizeof(int64_t))
        self.queue_seq = <int64_t*>PyMem_RawMalloc(self.queue_cap * sizeof(int64_t))
        for raw in requests:
            total += PyBytes_GET_SIZE(raw)
        self.data = <char*>PyMem_RawMalloc(total)
        self.offsets = <Py_ssize_t*>PyMem_RawMalloc(n * sizeof(Py_ssize_t))
        self.lengths = <Py_ssize_t*>PyMem_RawMalloc(n * sizeof(Py_ssize_t))
        self.heads = <bint*>PyMem_RawMalloc(n * sizeof(bint))
        if (self.conns == NULL or self.free_ring == NULL or self.dead == NULL or self.buffer == NULL
                or self.queue_t == NULL or self.queue_seq == NULL or self.data == NULL or self.offsets == NULL
                or self.lengths == NULL or self.heads == NULL):
            raise MemoryError()
        memset(self.conns, 0, connections * sizeof(Conn))
        for i in range(connections):
            self.conns[i].fd = -1
            self.conns[i].state = DEAD
        total = 0
        for i in range(n):
            raw = requests[i]
            self.offsets[i] = total
            self.lengths[i] = PyBytes_GET_SIZE(raw)
            memcpy(self.data + total, PyBytes_AS_STRING(raw), self.lengths[i])
            self.heads[i] = raw.startswith(b"HEAD ")
            total += self.lengths[i]
        self.n_requests = n
        self.rate = rate
        self.poisson = poisson
        self.rng = seed
        self.end = <int64_t>(duration_s * 1e9)          # relative to t0 until run() starts
        self.next_t = INT64_MAX                         # no arrival while the connections are opened
        self.timeout_ns = <int64_t>(timeout_ms * 1e6)
        self.max_in_flight = 0 if max_in_flight is None else max_in_flight
        self.warm = warm
        self.latency = Histogram()
        self.send_lag = Histogram()
        self.conn_wait = Histogram()
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")

    # --- connections -------------------------------------------------------------------------------------------

    cdef inline void push_free(self, int i) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        if c.in_free:
            return
        c.in_free = True
        self.free_ring[(self.free_head + self.free_len) % self.n_conns] = i
        self.free_len += 1

    cdef inline int pop_free(self) noexcept nogil:
        # The oldest free connection (round robin: every connection stays warm, and a server's workers all get
        # some); entries of connections closed since they were pushed are skipped.
        cdef int i
        cdef Conn* c
        while self.free_len > 0:
            i = self.free_ring[self.free_head]
            self.free_head = (self.free_head + 1) % self.n_conns
            self.free_len -= 1
            c = &self.conns[i]
            c.in_free = False
            if c.state == IDLE and not c.has_request:
                return i
        return -1

    cdef void kill(self, int i) noexcept nogil:
        """Closes connection `i` (its request, if any, already counted); it is connected again when needed."""
        cdef Conn* c = &self.conns[i]
        if c.fd >= 0:
            close(c.fd)  # leaves the epoll set with it
            c.fd = -1
        if c.state != DEAD:
            c.state = DEAD
            self.dead[self.n_dead] = i
            self.n_dead += 1
        c.has_request = False
        c.writing = False
        c.head_len = 0
        c.parse = P_HEAD
        c.close_after = False

    cdef int start_connect(self, int i, int64_t now) noexcept nogil:
        """Begins connecting `i` (taken off the dead stack by the caller): 0, or the errno it failed with at once
        (the connection is then dead again)."""
        cdef Conn* c = &self.conns[i]
        cdef epoll_event ev
        cdef int err
        c.fd = socket(self.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if c.fd < 0:
            err = errno
            c.state = CONNECTING   # so that kill() puts it back on the dead stack
            self.kill(i)
            return err
        fs_set_nodelay(c.fd)
        c.state = CONNECTING
        c.since = now
        c.head_len = 0
        c.parse = P_HEAD
        c.close_after = False
        c.writing = False
        if connect(c.fd, <sockaddr*>&self.address, self.address_len) != 0 and errno != EINPROGRESS:
            err = errno
            self.kill(i)
            return err
        ev.events = EPOLLOUT
        ev.data.u64 = i
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, c.fd, &ev) != 0:
            err = errno
            self.kill(i)
            return err
        return 0

    cdef void connected(self, int i, int64_t now) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef epoll_event ev
        ev.events = EPOLLIN
        ev.data.u64 = i
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)
        c.state = IDLE
        c.free_since = self.ready_floor
        if c.has_request:
            self.write(i)
        else:
            self.serve(i, now)

    # --- requests ----------------------------------------------------------------------------------------------

    cdef void finish(self, int i, int error, int64_t now) noexcept nogil:
        """Request on `i` ends: answered (error < 0, with c.status) or failed."""
        cdef Conn* c = &self.conns[i]
        if c.warming:
            c.warming = False
            c.has_request = False
            self.on_wire -= 1
            self.warm_left -= 1
            return
        if error < 0:
            self.answered += 1
            self.statuses[c.status if 0 <= c.status < N_STATUS else 0] += 1
            self.latency.add(now - c.intended)
        else:
            self.errors[error] += 1
        if c.seq < self.n_record:
            self.rec_latency[c.seq] = now - c.intended
            self.rec_status[c.seq] = c.status if error < 0 else 0
        c.has_request = False
        self.on_wire -= 1
        self.last_done = now

    cdef inline void fail_queued(self, int error, int64_t intended, int64_t seq, int64_t now) noexcept nogil:
        self.errors[error] += 1
        if seq < self.n_record:
            self.rec_latency[seq] = now - intended
        self.last_done = now

    cdef void assign(self, int i, int64_t intended, int64_t seq) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef Py_ssize_t r = seq % self.n_requests
        c.has_request = True
        c.intended = intended
        c.seq = seq
        c.out = self.data + self.offsets[r]
        c.out_left = self.lengths[r]
        c.no_body = self.heads[r]
        c.parse = P_HEAD
        c.head_len = 0
        c.close_after = False
        self.on_wire += 1

    cdef void write(self, int i) noexcept nogil:
        """Writes the request assigned to `i` (connected), or its rest after a partial write."""
        cdef Conn* c = &self.conns[i]
        cdef Py_ssize_t sent
        cdef int64_t now, ready
        cdef epoll_event ev
        cdef bint first = c.state == IDLE
        if first:
            c.state = BUSY
        if first and not c.warming:
            now = fs_now_ns()
            ready = c.intended if c.intended > c.free_since else c.free_since
            self.send_lag.add(now - ready)
            if c.seq < self.n_record:
                self.rec_lag[c.seq] = now - c.intended
            self.conn_wait.add(ready - c.intended)
            self.written += 1
        sent = send(c.fd, c.out, c.out_left, MSG_NOSIGNAL)
        if sent < 0:
            if not fs_would_block(errno):
                self.finish(i, E_RESET if errno == ECONNRESET else E_CLOSED if errno == EPIPE else E_OTHER,
                            fs_now_ns())
                self.kill(i)
                return
            sent = 0
        c.out += sent
        c.out_left -= sent
        if c.out_left > 0 and not c.writing:
            c.writing = True
            ev.events = EPOLLIN | EPOLLOUT
            ev.data.u64 = i
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)
        elif c.out_left == 0 and c.writing:
            c.writing = False
            ev.events = EPOLLIN
            ev.data.u64 = i
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)

    cdef bint take(self, int64_t now, int64_t* intended, int64_t* seq) noexcept nogil:
        """The oldest request waiting for a connection, those past their timeout counted and dropped on the way."""
        while self.queue_len > 0:
            intended[0] = self.queue_t[self.queue_head]
            seq[0] = self.queue_seq[self.queue_head]
            self.queue_head = (self.queue_head + 1) % self.queue_cap
            self.queue_len -= 1
            if now - intended[0] >= self.timeout_ns:
                self.fail_queued(E_TIMEOUT, intended[0], seq[0], now)
                continue
            return True
        return False

    cdef void serve(self, int i, int64_t now) noexcept nogil:
        """Connection `i` is free: the oldest waiting request goes on it, else it joins the free ones."""
        cdef int64_t intended, seq
        if self.take(now, &intended, &seq):
            self.assign(i, intended, seq)
            self.write(i)
        else:
            self.push_free(i)

    cdef int enqueue(self, int64_t intended, int64_t seq) noexcept nogil:
        cdef Py_ssize_t cap, k, j
        cdef int64_t* t
        cdef int64_t* s
        if self.queue_len == self.queue_cap:
            cap = 2 * self.queue_cap
            t = <int64_t*>PyMem_RawMalloc(cap * sizeof(int64_t))
            s = <int64_t*>PyMem_RawMalloc(cap * sizeof(int64_t))
            if t == NULL or s == NULL:
                PyMem_RawFree(t)
                PyMem_RawFree(s)
                return -1
            for k in range(self.queue_len):
                j = (self.queue_head + k) % self.queue_cap
                t[k] = self.queue_t[j]
                s[k] = self.queue_seq[j]
            PyMem_RawFree(self.queue_t)
            PyMem_RawFree(self.queue_seq)
            self.queue_t, self.queue_seq, self.queue_head, self.queue_cap = t, s, 0, cap
        j = (self.queue_head + self.queue_len) % self.queue_cap
        self.queue_t[j] = intended
        self.queue_seq[j] = seq
        self.queue_len += 1
        return 0

    cdef inline void advance(self) noexcept nogil:
        cdef double u
        self.seq += 1
        if self.poisson:
            u = ((_splitmix(&self.rng) >> 11) + 1) * (1.0 / 9007199254740992.0)   # (0, 1]
            self.next_offset += -log(u) * 1e9 / self.rate
        else:
            self.next_offset = self.seq * 1e9 / self.rate
        self.next_t = self.t0 + <int64_t>self.next_offset

    cdef void arrive(self, int64_t now) noexcept nogil:
        """Requests whose intended time has come join the queue (or are dropped past max_in_flight)."""
        while self.next_t <= now and self.next_t < self.end:
            self.scheduled += 1
            if self.seq < self.n_record:
                self.rec_intended[self.seq] = self.next_t - self.t0
            if self.max_in_flight and self.on_wire + self.queue_len >= self.max_in_flight:
                self.fail_queued(E_DROPPED, self.next_t, self.seq, now)
            elif self.enqueue(self.next_t, self.seq) != 0:
                self.fail_queued(E_OTHER, self.next_t, self.seq, now)
            self.advance()

    cdef void dispatch(self, int64_t now) noexcept nogil:
        """Waiting requests onto free connections, then onto dead ones connected again."""
        cdef int i, err
        cdef int64_t intended, seq
        while self.queue_len > 0:
            i = self.pop_free()
            if i < 0:
                if self.n_dead == 0:
                    return
                if not self.take(now, &intended, &seq):
                    return
                self.n_dead -= 1
                i = self.dead[self.n_dead]
                self.assign(i, intended, seq)
                err = self.start_connect(i, now)
                if err != 0:
                    self.finish(i, E_REFUSED if err == ECONNREFUSED else E_OTHER, now)
                continue
            if not self.take(now, &intended, &seq):
                self.push_free(i)
                return
            self.assign(i, intended, seq)
            self.write(i)

    # --- events ------------------------------------------------------------------------------------------------

    cdef void on_event(self, int i, uint32_t events) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef Py_ssize_t got
        cdef int err, done
        cdef int64_t now
        if c.state == DEAD:
            return
        if c.state == CONNECTING:
            err = fs_socket_error(c.fd)
            now = fs_now_ns()
            if err == 0 and events & EPOLLOUT:
                self.connected(i, now)
            elif err != 0 or events & (EPOLLERR | EPOLLHUP):
                if c.has_request:
                    self.finish(i, E_REFUSED if err == ECONNREFUSED else E_TIMEOUT if err == ETIMEDOUT
                                else E_RESET if err == ECONNRESET else E_OTHER, now)
                self.kill(i)
            return
        if c.writing and events & EPOLLOUT:
            self.write(i)
            if c.state == DEAD:
                return
        if not events & (EPOLLIN | EPOLLERR | EPOLLHUP):
            return
        got = recv(c.fd, self.buffer, READ_BUFFER, 0)
        now = fs_now_ns()
        if c.state == IDLE:
            # closed while idle (keep-alive timeout), or sent something unasked for: no request's error
            if got >= 0 or (not fs_would_block(errno)):
                self.kill(i)
            return
        if got > 0:
            done = _feed(c, self.buffer, got)
            if done == 0:
                return
            if done < 0:
                self.finish(i, E_OTHER, now)
                self.kill(i)
                return
            self.finish(i, -1, now)
            if c.close_after or c.out_left > 0:
                self.kill(i)
            else:
                c.state = IDLE
                c.free_since = self.ready_floor
                self.serve(i, now)
        elif got == 0:
            if c.parse == P_TO_CLOSE:
                self.finish(i, -1, now)
            else:
                self.finish(i, E_CLOSED, now)
            self.kill(i)
        elif not fs_would_block(errno):
            self.finish(i, E_RESET if errno == ECONNRESET else E_OTHER, now)
            self.kill(i)

    cdef void sweep(self, int64_t now) noexcept nogil:
        """Requests on the wire past their timeout, and connects that never finished."""
        cdef int i
        cdef Conn* c
        for i in range(self.n_conns):
            c = &self.conns[i]
            if c.has_request:
                if now - c.intended >= self.timeout_ns:
                    self.finish(i, E_TIMEOUT, now)
                    self.kill(i)
            elif c.state == CONNECTING and now - c.since >= self.timeout_ns:
                self.kill(i)

    # --- the loop ----------------------------------------------------------------------------------------------

    cdef int poll(self, int64_t timeout_ns) noexcept nogil:
        cdef int n, k
        cdef int64_t t = fs_now_ns(), r, late
        n = fs_epoll_wait_ns(self.epfd, self.events, MAX_EVENTS, timeout_ns)
        r = fs_now_ns()
        if n > 0:
            # What this call returns came after the previous call returned (that call would have returned it),
            # or, if this call slept, while it slept: the generator's own lag on it runs from then.
            self.ready_floor = t if timeout_ns != 0 and r - t > 2_000 else self.last_return
        self.last_return = r
        if n <= 0:
            if timeout_ns == 0:
                late = r - t
                if late < 50_000:   # longer, the task was preempted: that time is not its CPU
                    self.spin_ns += late
            else:
                # Sleeps end late on a busy machine (the scheduler lets the task on the core finish its slice):
                # busy-poll for twice the latest lateness seen, decaying again over some hundreds of sleeps.
                late = r - t - timeout_ns
                self.spin_window -= self.spin_window >> 9
                if 2 * late > self.spin_window:
                    self.spin_window = min(2 * late, MAX_SPIN_NS)
                if self.spin_window < MIN_SPIN_NS:
                    self.spin_window = MIN_SPIN_NS
            return 0
        for k in range(n):
            self.on_event(<int>self.events[k].data.u64, self.events[k].events)
            if k + 1 < n:
                # requests falling due while a batch of answers is read go out between them, not after them all
                t = fs_now_ns()
                if self.next_t <= t:
                    self.arrive(t)
                    self.dispatch(t)
        return n

    cdef void open_all(self) noexcept nogil:
        """Connects every connection before the trial begins (within the timeout); refused ones stay dead."""
        cdef int i
        cdef int64_t now = fs_now_ns(), deadline = now + min(self.timeout_ns, <int64_t>5_000_000_000)
        cdef bint waiting = True
        for i in range(self.n_conns):
            self.conns[i].state = CONNECTING   # so that a failure puts it on the dead stack once
            self.start_connect(i, now)
        while waiting and fs_now_ns() < deadline:
            self.poll(1_000_000)
            waiting = False
            for i in range(self.n_conns):
                if self.conns[i].state == CONNECTING:
                    waiting = True
                    break
        if not self.warm:
            return
        # A server may do a connection's own work at its first request (an accept deferred to the first bytes, a
        # hand-over between processes, a protocol built): done here, it is not counted in the first requests'
        # latencies, which would weigh on the percentiles of a short trial over many connections.
        now = fs_now_ns()
        i = self.pop_free()
        while i >= 0:
            self.assign(i, now, i)   # requests[i % len(requests)]
            self.conns[i].seq = INT64_MAX   # recorded nowhere
            self.conns[i].warming = True
            self.warm_left += 1
            self.write(i)
            i = self.pop_free()
        while self.warm_left > 0 and fs_now_ns() < deadline:
            self.poll(1_000_000)
            self.sweep(fs_now_ns())

    cdef bint check_signals(self) noexcept with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            self.pending_exception = exc
            return True
        return False

    cdef void run(self) noexcept nogil:
        cdef int64_t now, wait, last_sweep, last_signals
        cdef long slack = fs_get_timerslack()
        fs_set_timerslack(1)   # sleeps end when asked, not up to 50 µs later
        self.spin_window = 2 * MIN_SPIN_NS
        self.last_return = self.ready_floor = fs_now_ns()
        self.open_all()
        self.cpu0 = fs_cpu_ns()
        now = fs_now_ns()
        self.t0 = now
        self.end += now
        self.next_t = now
        self.next_offset = 0.0
        self.last_done = now
        last_sweep = last_signals = now
        while True:
            self.arrive(now)
            self.dispatch(now)
            if self.next_t >= self.end and self.queue_len == 0 and self.on_wire == 0:
                break
            now = fs_now_ns()
            if now - last_sweep >= SWEEP_NS:
                self.sweep(now)
                last_sweep = now
                if now - last_signals >= SIGNALS_NS:
                    last_signals = now
                    if self.check_signals():
                        break
            if self.queue_len > 0:
                # every connection is busy: arrivals can only queue, which needs no hurry (their intended times
                # are known), so sleep until a connection frees
                wait = SWEEP_NS
            elif self.next_t < self.end:
                wait = self.next_t - now - self.spin_window
                if wait < 0:
                    wait = 0
                elif wait > MAX_WAIT_NS:
                    wait = MAX_WAIT_NS
            else:
                wait = MAX_WAIT_NS
            if (self.queue_len > 0 or self.on_wire > 0) and wait > SWEEP_NS:
                wait = SWEEP_NS
            self.poll(wait)
            now = fs_now_ns()
        self.cpu1 = fs_cpu_ns()
        fs_set_timerslack(slack)

    def trial(self, double offered_rate, double duration_s):
        waited = _cpu_wait_s()
        with nogil:
            self.run()
        waited = _cpu_wait_s() - waited
        self.close_all()
        if self.pending_exception is not None:
            raise self.pending_exception
        statuses = {code: self.statuses[code] for code in range(N_STATUS) if self.statuses[code]}
        errors = {kind: self.errors[k] for k, kind in enumerate(ERROR_KINDS)}
        return Trial(offered_rate=offered_rate, duration_s=duration_s, sent=self.scheduled, written=self.written,
                     answered=self.answered, statuses=statuses, errors=errors, latency=self.latency,
                     send_lag=self.send_lag, conn_wait=self.conn_wait,
                     elapsed_s=max(0, self.last_done - self.t0) / 1e9, cpu_s=(self.cpu1 - self.cpu0) / 1e9,
                     spin_s=self.spin_ns / 1e9, cpu_wait_s=waited, records=self._records())

    def _records(self):
        if self.records is None:
            return None
        n = min(self.scheduled, self.n_record)
        return {name: array[:n] for name, array in self.records.items()}


def _cpu_wait_s():
    """How long this thread has been ready to run but waiting for a CPU (Linux's schedstat; NaN where absent)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


class Trial:
    """One open-loop run at one offered rate. `sent` counts every request due in the trial: each one was answered
    or counted in `errors` (sent == answered + sum(errors.values()))."""

    def __init__(self, *, offered_rate, duration_s, sent, written, answered, statuses, errors, latency, send_lag,
                 conn_wait, elapsed_s, cpu_s, spin_s, cpu_wait_s=float("nan"), records=None):
        self.offered_rate = offered_rate
        self.duration_s = duration_s
        self.sent = sent
        self.written = written
        self.answered = answered
        self.statuses = statuses
        self.errors = errors
        self.latency = latency
        self.send_lag = send_lag
        self.conn_wait = conn_wait
        self.elapsed_s = elapsed_s
        self.cpu_s = cpu_s
        self.spin_s = spin_s
        self.cpu_wait_s = cpu_wait_s
        # with run_trial(record=N): the first N requests one by one, numpy arrays by request number:
        # intended_ns (from the trial's start), latency_ns (from the intended time to the answer or the failure;
        # -1 if neither came), status (0: no answer), send_lag_ns (write minus intended time; -1: never written)
        self.records = records

    def achieved_rate(self) -> float:
        """Answers per second, from the first intended send to the last answer (or timeout)."""
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def reliable(self, bound_us: float = 100.0) -> bool:
        """Whether the generator kept up: its own send lag p99 within `bound_us`."""
        return self.send_lag.count == 0 or self.send_lag.percentile(99) <= bound_us * 1e3

    def busy_cpu_s(self) -> float:
        """CPU the generator spent on requests: its CPU less its busy-polling for the next intended send."""
        return max(0.0, self.cpu_s - self.spin_s)

    def __repr__(self):
        return (f"Trial(offered_rate={self.offered_rate:g}, sent={self.sent}, answered={self.answered}, "
                f"achieved={self.achieved_rate():.0f}/s, statuses={self.statuses}, "
                f"errors={ {k: v for k, v in self.errors.items() if v} }, latency={self.latency!r}, "
                f"send_lag_p99={self.send_lag.percentile(99) / 1e3:.1f} µs, cpu_s={self.cpu_s:.3f})")


def run_trial(str host, int port, list requests, double rate, double duration_s, *, int connections=64,
              bint poisson=True, double timeout_ms=10_000.0, seed=0, max_in_flight=None, record=0,
              bint warm=False) -> Trial:
    """Sends requests[i % len(requests)] (whole raw HTTP/1.1 requests, keep-alive) at `rate` per second for
    `duration_s`, open loop: request i is due at its intended time (Poisson arrivals, or evenly spaced with
    poisson=False) whether earlier ones were answered or not, and its latency runs from that time. Over at most
    `connections` connections, one request in flight on each; a due request with none free waits, and the wait
    counts. A request unanswered `timeout_ms` after its intended time counts as a "timeout" (its connection is
    closed); with `max_in_flight`, a request due while that many are waiting or on the wire is not sent and counts
    as "dropped". With `record`, the first `record` requests' outcomes are also kept one by one (Trial.records).
    With `warm`, every connection first carries one request (the i-th carries requests[i % len(requests)]) answered before the trial begins and
    counted nowhere: what a server does once per connection stays out of the trial.
    Blocks until the last request is answered or timed out; the GIL is released meanwhile."""
    if not requests or not all(isinstance(r, bytes) and r for r in requests):
        raise ValueError("expected a non-empty list of non-empty raw requests (bytes)")
    if not rate > 0 or not duration_s >= 0:
        raise ValueError(f"expected rate > 0 and duration_s >= 0, got rate={rate}, duration_s={duration_s}")
    if connections < 1 or not timeout_ms > 0:
        raise ValueError(f"expected connections >= 1 and timeout_ms > 0, got {connections} and {timeout_ms}")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError(f"expected max_in_flight >= 1 or None, got {max_in_flight}")
    if record < 0:
        raise ValueError(f"expected record >= 0, got {record}")
    cdef _Generator g = _Generator()
    g.setup(host, port, requests, rate, duration_s, connections, poisson, timeout_ms, <uint64_t>seed,
            max_in_flight, record, warm)
    return g.trial(rate, duration_s)


def machine_gaps(double seconds=1.0, double threshold_us=10.0):
    """How often this thread, spinning on the clock with nothing else to do, loses its core for longer than
    `threshold_us` (interrupts, the hypervisor, other tasks): {share: of the time lost in such gaps, per_s: gaps per
    second, p50_us, p99_us, max_us: of the gaps}. A floor under any generator's send lag on this core: the requests
    due in a gap, and those due while it catches up, wait."""
    cdef int64_t t0, last, t, gap, lost = 0, n = 0
    cdef int64_t limit = <int64_t>(threshold_us * 1e3)
    cdef int64_t end
    cdef Histogram gaps = Histogram()
    with nogil:
        t0 = last = fs_now_ns()
        end = t0 + <int64_t>(seconds * 1e9)
        while last < end:
            t = fs_now_ns()
            gap = t - last
            last = t
            if gap > limit:
                lost += gap
                n += 1
                gaps.add(gap)
    elapsed = (last - t0) / 1e9
    return {"share": lost / 1e9 / elapsed, "per_s": n / elapsed,
            "p50_us": gaps.percentile(50) / 1e3 if n else 0.0, "p99_us": gaps.percentile(99) / 1e3 if n else 0.0,
            "max_us": gaps.max / 1e3 if n else 0.0}
