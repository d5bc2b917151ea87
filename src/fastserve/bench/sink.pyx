"""A minimal HTTP/1.1 server in C over epoll, for `fastserve bench --self-test`: it answers every request 200 with
a fixed body on a keep-alive connection, doing as little as a server can (one recv, one send per turn of a
connection, no Python), so that a generator measured against it meets its own limits first.

It reads each request's head up to the blank line and skips a body of Content-Length bytes (a chunked body is not
read: the connection is answered and closed). Pipelined requests are answered in order, in one write.
`stall_after`/`stall_ms`: after that many answers it stops everything for that long, once (to test that a
generator's latencies show a server's stall). `busy_poll`: it never sleeps (epoll_wait with a zero timeout, in a loop),
so that a generator's writes never pay for waking it: a server that is never idle, at the cost of a whole core.
"""

import socket as pysocket

from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memchr, memcpy, memmove, memset

from fastserve.bench._net cimport *

cdef enum:
    READ_BUFFER = 256 * 1024
    MAX_HEAD = 64 * 1024
    MAX_EVENTS = 256

cdef uint64_t LISTENER = 0xFFFFFFFFFFFFFFFFULL


cdef struct SinkConn:
    bint open
    bint close_after
    bint writing
    int64_t body_left
    char* buf              # a head split across reads
    Py_ssize_t len
    Py_ssize_t cap
    char* out              # answers not yet written
    Py_ssize_t out_off
    Py_ssize_t out_len
    Py_ssize_t out_cap


cdef inline bint _lower_eq(const char* p, Py_ssize_t n, const char* name, Py_ssize_t name_len) noexcept nogil:
    cdef Py_ssize_t i
    if n != name_len:
        return False
    for i in range(n):
        if (p[i] | 0x20) != name[i]:
            return False
    return True


cdef inline bint _has_token(const char* p, Py_ssize_t n, const char* token, Py_ssize_t token_len) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n - token_len + 1):
        for j in range(token_len):
            if (p[i + j] | 0x20) != token[j]:
                break
        else:
            return True
    return False


cdef int _read_head(const char* h, Py_ssize_t n, int64_t* length, bint* close_after) noexcept nogil:
    """A request head (ending with its blank line): its body length and whether to close after it. -1 if a body
    cannot be skipped (chunked, or a bad length)."""
    cdef const char* p = h
    cdef const char* end = h + n
    cdef const char* nl
    cdef const char* line
    cdef const char* colon
    cdef const char* v0
    cdef const char* v1
    length[0] = 0
    close_after[0] = False
    nl = <const char*>memchr(p, b'\n', n)
    if nl == NULL:
        return -1
    if nl - h >= 10 and (nl - 2)[0] == b'0' and (nl - 3)[0] == b'.' and (nl - 4)[0] == b'1':   # HTTP/1.0: closes unless asked to keep alive
        close_after[0] = True
    p = nl + 1
    while p < end:
        line = p
        nl = <const char*>memchr(p, b'\n', end - p)
        if nl == NULL:
            break
        p = nl + 1
        v1 = nl
        if v1 > line and (v1 - 1)[0] == b'\r':
            v1 -= 1
        if v1 == line:
            break
        colon = <const char*>memchr(line, b':', v1 - line)
        if colon == NULL:
            continue
        v0 = colon + 1
        while v0 < v1 and (v0[0] == b' ' or v0[0] == b'\t'):
            v0 += 1
        if _lower_eq(line, colon - line, b"content-length", 14):
            length[0] = 0
            while v0 < v1 and b'0' <= v0[0] <= b'9':
                length[0] = length[0] * 10 + (v0[0] - 48)
                v0 += 1
                if length[0] > (<int64_t>1 << 40):
                    return -1
        elif _lower_eq(line, colon - line, b"transfer-encoding", 17):
            return -1
        elif _lower_eq(line, colon - line, b"connection", 10):
            if _has_token(v0, v1 - v0, b"close", 5):
                close_after[0] = True
            elif _has_token(v0, v1 - v0, b"keep-alive", 10):
                close_after[0] = False
    return 0


cdef class _Sink:
    cdef int listener
    cdef int epfd
    cdef SinkConn* conns        # by file descriptor
    cdef Py_ssize_t n_slots
    cdef char* answer
    cdef Py_ssize_t answer_len
    cdef char* closing_answer   # the same with Connection: close
    cdef Py_ssize_t closing_len
    cdef char* buffer
    cdef int64_t answered
    cdef int64_t stall_after
    cdef int64_t stall_ns
    cdef bint stalled
    cdef bint busy_poll
    cdef epoll_event events[MAX_EVENTS]
    cdef object pending_exception

    def __cinit__(self):
        self.listener = self.epfd = -1
        self.conns = NULL
        self.n_slots = 0
        self.answer = self.closing_answer = self.buffer = NULL

    def __dealloc__(self):
        cdef Py_ssize_t fd
        for fd in range(self.n_slots):
            if self.conns[fd].open:
                close(<int>fd)
            PyMem_RawFree(self.conns[fd].buf)
            PyMem_RawFree(self.conns[fd].out)
        PyMem_RawFree(self.conns)
        PyMem_RawFree(self.answer)
        PyMem_RawFree(self.closing_answer)
        PyMem_RawFree(self.buffer)
        if self.listener >= 0:
            close(self.listener)
        if self.epfd >= 0:
            close(self.epfd)

    def setup(self, str host, int port, bytes body, int64_t stall_after, double stall_ms, int backlog,
              bint busy_poll):
        cdef sockaddr_storage address
        cdef socklen_t address_len
        cdef int one = 1
        cdef epoll_event ev
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        answer = head + b"\r\n" + body
        closing = head + b"Connection: close\r\n\r\n" + body
        self.answer = <char*>PyMem_RawMalloc(len(answer))
        self.closing_answer = <char*>PyMem_RawMalloc(len(closing))
        self.buffer = <char*>PyMem_RawMalloc(READ_BUFFER)
        if self.answer == NULL or self.closing_answer == NULL or self.buffer == NULL:
            raise MemoryError()
        memcpy(self.answer, <const char*>answer, len(answer))
        memcpy(self.closing_answer, <const char*>closing, len(closing))
        self.answer_len = len(answer)
        self.closing_len = len(closing)
        self.stall_after = stall_after
        self.stall_ns = <int64_t>(stall_ms * 1e6)
        self.busy_poll = busy_poll
        family, _, _, _, resolved = pysocket.getaddrinfo(host, port, type=pysocket.SOCK_STREAM)[0]
        address_len = fs_address(resolved[0].encode(), port, resolved[3] if family == pysocket.AF_INET6 else 0,
                                 &address)
        if address_len == 0:
            raise ValueError(f"expected an IPv4 or IPv6 host, got {host!r}")
        self.listener = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if self.listener < 0:
            raise OSError(errno, "socket failed")
        setsockopt(self.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))
        if bind(self.listener, <sockaddr*>&address, address_len) != 0:
            raise OSError(errno, f"cannot bind {host}:{port}")
        if listen(self.listener, backlog) != 0:
            raise OSError(errno, "listen failed")
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        ev.events = EPOLLIN
        ev.data.u64 = LISTENER
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.listener, &ev) != 0:
            raise OSError(errno, "epoll_ctl failed")

    cdef SinkConn* slot(self, int fd) noexcept nogil:
        cdef Py_ssize_t n
        cdef SinkConn* grown
        if fd >= self.n_slots:
            n = max(1024, 2 * fd)
            grown = <SinkConn*>PyMem_RawRealloc(self.conns, n * sizeof(SinkConn))
            if grown == NULL:
                return NULL
            memset(grown + self.n_slots, 0, (n - self.n_slots) * sizeof(SinkConn))
            self.conns, self.n_slots = grown, n
        return &self.conns[fd]

    cdef void drop(self, int fd) noexcept nogil:
        cdef SinkConn* c = &self.conns[fd]
        close(fd)
        c.open = False
        c.len = c.out_len = c.out_off = 0
        c.body_left = 0
        c.close_after = c.writing = False

    cdef void accept_all(self) noexcept nogil:
        cdef int fd
        cdef SinkConn* c
        cdef epoll_event ev
        while True:
            fd = accept4(self.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                return
            c = self.slot(fd)
            if c == NULL:
                close(fd)
                continue
            fs_set_nodelay(fd)
            c.open = True
            c.len = c.out_len = c.out_off = 0
            c.body_left = 0
            c.close_after = c.writing = False
            ev.events = EPOLLIN
            ev.data.u64 = <uint64_t>fd
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
                self.drop(fd)

    cdef int queue_answer(self, SinkConn* c, bint closing) noexcept nogil:
        cdef const char* a = self.closing_answer if closing else self.answer
        cdef Py_ssize_t n = self.closing_len if closing else self.answer_len, cap
        cdef char* grown
        if self.stall_ns > 0 and not self.stalled and self.answered >= self.stall_after:
            self.stalled = True
            fs_sleep_ns(self.stall_ns)
        if c.out_len + n > c.out_cap:
            cap = max(4096, 2 * (c.out_len + n))
            grown = <char*>PyMem_RawRealloc(c.out, cap)
            if grown == NULL:
                return -1
            c.out, c.out_cap = grown, cap
        memcpy(c.out + c.out_len, a, n)
        c.out_len += n
        self.answered += 1
        return 0

    cdef Py_ssize_t requests(self, SinkConn* c, const char* p, Py_ssize_t n) noexcept nogil:
        """Answers the whole requests in p[:n]: how many bytes they took (the rest is a head not yet whole), or -1
        when the connection should close once its answers are written."""
        cdef Py_ssize_t i = 0, k
        cdef const char* e
        cdef int64_t length
        cdef bint closing
        while i < n:
            if c.body_left > 0:
                k = min(c.body_left, n - i)
                c.body_left -= k
                i += k
                continue
            e = <const char*>memmem(p + i, n - i, b"\r\n\r\n", 4)
            if e == NULL:
                return i
            k = e - p + 4
            if _read_head(p + i, k - i, &length, &closing) < 0:
                self.queue_answer(c, True)
                return -1
            i = k
            c.body_left = length
            if self.queue_answer(c, closing) != 0 or closing:
                return -1
        return i

    cdef void flush(self, int fd) noexcept nogil:
        cdef SinkConn* c = &self.conns[fd]
        cdef Py_ssize_t sent
        cdef epoll_event ev
        if c.out_len > c.out_off:
            sent = send(fd, c.out + c.out_off, c.out_len - c.out_off, MSG_NOSIGNAL)
            if sent < 0:
                if not fs_would_block(errno):
                    self.drop(fd)
                    return
                sent = 0
            c.out_off += sent
        if c.out_off == c.out_len:
            c.out_off = c.out_len = 0
            if c.close_after:
                self.drop(fd)
                return
            if c.writing:
                c.writing = False
                ev.events = EPOLLIN
                ev.data.u64 = <uint64_t>fd
                epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)
        elif not c.writing:
            c.writing = True
            ev.events = EPOLLIN | EPOLLOUT
            ev.data.u64 = <uint64_t>fd
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)

    cdef void readable(self, int fd) noexcept nogil:
        cdef SinkConn* c = &self.conns[fd]
        cdef Py_ssize_t got, used, cap
        cdef char* grown
        if c.close_after:   # answered for the last time: what else comes is ignored
            got = recv(fd, self.buffer, READ_BUFFER, 0)
            if got == 0 or (got < 0 and not fs_would_block(errno)):
                self.drop(fd)
            return
        got = recv(fd, self.buffer, READ_BUFFER, 0)
        if got == 0 or (got < 0 and not fs_would_block(errno)):
            self.drop(fd)
            return
        if got < 0:
            return
        if c.len == 0:
            used = self.requests(c, self.buffer, got)
            if used >= 0 and used < got:
                if got - used > MAX_HEAD:
                    self.drop(fd)
                    return
                if got - used > c.cap:
                    cap = max(4096, 2 * (got - used))
                    grown = <char*>PyMem_RawRealloc(c.buf, cap)
                    if grown == NULL:
                        self.drop(fd)
                        return
                    c.buf, c.cap = grown, cap
                memcpy(c.buf, self.buffer + used, got - used)
                c.len = got - used
        else:
            if c.len + got > MAX_HEAD + READ_BUFFER:
                self.drop(fd)
                return
            if c.len + got > c.cap:
                cap = 2 * (c.len + got)
                grown = <char*>PyMem_RawRealloc(c.buf, cap)
                if grown == NULL:
                    self.drop(fd)
                    return
                c.buf, c.cap = grown, cap
            memcpy(c.buf + c.len, self.buffer, got)
            c.len += got
            used = self.requests(c, c.buf, c.len)
            if used >= 0:
                memmove(c.buf, c.buf + used, c.len - used)
                c.len -= used
                if c.len > MAX_HEAD:
                    self.drop(fd)
                    return
        if used < 0:
            c.close_after = True
            c.len = 0
        self.flush(fd)

    cdef bint check_signals(self) noexcept with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            self.pending_exception = exc
            return True
        return False

    cdef void run(self) noexcept nogil:
        cdef int n, k, fd
        cdef uint64_t key
        cdef int64_t now, last_signals = fs_now_ns()
        while True:
            n = fs_epoll_wait_ns(self.epfd, self.events, MAX_EVENTS, 0 if self.busy_poll else 100_000_000)
            now = fs_now_ns()
            if now - last_signals >= 100_000_000:   # Ctrl-C, ten times a second
                last_signals = now
                if self.check_signals():
                    return
            for k in range(n):
                key = self.events[k].data.u64
                if key == LISTENER:
                    self.accept_all()
                    continue
                fd = <int>key
                if not self.conns[fd].open:
                    continue
                if self.events[k].events & EPOLLOUT and self.conns[fd].writing:
                    self.flush(fd)
                    if not self.conns[fd].open:
                        continue
                if self.events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP):
                    self.readable(fd)

    def serve(self):
        with nogil:
            self.run()
        if self.pending_exception is not None:
            raise self.pending_exception


def sink(str host, int port, bytes body=b'{"ok":true}', *, int stall_after=0, double stall_ms=0.0,
         int backlog=4096, bint busy_poll=False) -> None:
    """A minimal compiled HTTP/1.1 server answering every request 200 with `body` (keep-alive), for --self-test;
    runs until killed (run it in a subprocess; Ctrl-C stops it within 0.1 s). With `stall_ms`, it stops
    for that long once, after `stall_after` answers; with `busy_poll`, it never sleeps."""
    cdef _Sink s = _Sink()
    s.setup(host, port, body, stall_after, stall_ms, backlog, busy_poll)
    s.serve()
