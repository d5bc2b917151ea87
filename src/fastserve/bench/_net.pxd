# Declarations of the Linux calls the load generator and its sink make: epoll, non-blocking TCP sockets, clocks.
# Declarations only; nothing to build.

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


cdef extern from *:
    """
    #include <errno.h>
    #include <sys/epoll.h>
    #include <sys/socket.h>
    #include <sys/syscall.h>
    #include <sys/prctl.h>
    #include <sys/resource.h>
    #include <netinet/in.h>
    #include <netinet/tcp.h>
    #include <arpa/inet.h>
    #include <time.h>
    #include <unistd.h>

    #if !defined(SYS_epoll_pwait2) && (defined(__x86_64__) || defined(__aarch64__))
    #define SYS_epoll_pwait2 441
    #endif

    static inline int64_t fs_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }

    /* epoll_wait with a timeout in ns (< 0: none): epoll_pwait2 where the kernel has it (5.11+), else epoll_wait's
       whole milliseconds, rounded down (the caller busy-polls the rest). */
    static int fs_pwait2_ok = 1;
    static inline int fs_epoll_wait_ns(int epfd, struct epoll_event* events, int n, int64_t timeout_ns) {
    #ifdef SYS_epoll_pwait2
        if (fs_pwait2_ok) {
            struct timespec ts;
            ts.tv_sec = timeout_ns / 1000000000LL;
            ts.tv_nsec = timeout_ns % 1000000000LL;
            int r = (int)syscall(SYS_epoll_pwait2, epfd, events, n, timeout_ns < 0 ? NULL : &ts, NULL, 0);
            if (r >= 0 || errno != ENOSYS) return r;
            fs_pwait2_ok = 0;
        }
    #endif
        return epoll_wait(epfd, events, n, timeout_ns < 0 ? -1 : (int)(timeout_ns / 1000000LL));
    }

    static inline int64_t fs_cpu_ns(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL
               + ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    }

    static inline void fs_sleep_ns(int64_t ns) {
        struct timespec ts;
        ts.tv_sec = ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }

    static inline int fs_set_nodelay(int fd) {
        int one = 1;
        return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }

    static inline int fs_socket_error(int fd) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
        return err;
    }

    /* Fills `out` with the address of a numeric IPv4 or IPv6 host; its length, or 0 if `host` is neither. */
    static socklen_t fs_address(const char* host, int port, uint32_t scope_id, struct sockaddr_storage* out) {
        struct sockaddr_in* a4 = (struct sockaddr_in*)out;
        struct sockaddr_in6* a6 = (struct sockaddr_in6*)out;
        memset(out, 0, sizeof(*out));
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            return sizeof(*a4);
        }
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            a6->sin6_scope_id = scope_id;
            return sizeof(*a6);
        }
        return 0;
    }

    static inline int fs_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

    static inline long fs_get_timerslack(void) { return (long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0); }
    static inline void fs_set_timerslack(long ns) { prctl(PR_SET_TIMERSLACK, (unsigned long)ns, 0, 0, 0); }
    """
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    ctypedef unsigned int socklen_t

    struct sockaddr:
        pass

    struct sockaddr_storage:
        unsigned short ss_family

    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
        AF_INET
        AF_INET6
        SOCK_STREAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_REUSEADDR
        MSG_NOSIGNAL
        SHUT_WR
        EINPROGRESS
        EINTR
        ECONNREFUSED
        ECONNRESET
        EPIPE
        ETIMEDOUT
        ENOSYS

    int errno

    int epoll_create1(int flags) nogil
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event) nogil
    int socket(int domain, int type, int protocol) nogil
    int connect(int fd, const sockaddr* addr, socklen_t len) nogil
    int bind(int fd, const sockaddr* addr, socklen_t len) nogil
    int listen(int fd, int backlog) nogil
    int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) nogil
    int setsockopt(int fd, int level, int name, const void* value, socklen_t len) nogil
    int shutdown(int fd, int how) nogil
    Py_ssize_t send(int fd, const void* buf, size_t n, int flags) nogil
    Py_ssize_t recv(int fd, void* buf, size_t n, int flags) nogil
    int close(int fd) nogil
    void* memmem(const void* hay, size_t hay_len, const void* needle, size_t needle_len) nogil

    int64_t fs_now_ns() nogil
    int fs_epoll_wait_ns(int epfd, epoll_event* events, int n, int64_t timeout_ns) nogil
    int64_t fs_cpu_ns() nogil
    void fs_sleep_ns(int64_t ns) nogil
    int fs_set_nodelay(int fd) nogil
    int fs_socket_error(int fd) nogil
    socklen_t fs_address(const char* host, int port, uint32_t scope_id, sockaddr_storage* out) nogil
    bint fs_would_block(int e) nogil
    long fs_get_timerslack() nogil
    void fs_set_timerslack(long ns) nogil
