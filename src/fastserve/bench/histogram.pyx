"""Latencies in nanoseconds, in log-linear buckets (HdrHistogram's layout): values under 256 ns exactly, then each
power of two split into 128 equal buckets, so a bucket is at most 1/128 of its values wide (a value is read back as
its bucket's middle: within 0.4%) from 256 ns up to 2^44 ns (4.9 hours; larger values land in the last bucket, and
`max` keeps them exactly). Fixed memory (4,864 counters, 38 KiB), O(1) to record, mergeable by adding counters:
a histogram of several processes' runs is the sum of theirs.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.math cimport ceil
from libc.stdint cimport INT64_MAX, int64_t
from libc.string cimport memcpy

cdef enum:
    SUB_BITS = 7                        # 128 buckets per power of two
    SUB = 1 << SUB_BITS
    TOP_BIT = 43                        # values < 2^44 have a bucket of their own
    N_BUCKETS = (TOP_BIT - SUB_BITS) * SUB + 2 * SUB

FORMAT = "fastserve.histogram/1"


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int fs_top_bit(unsigned long long v) { unsigned long i; _BitScanReverse64(&i, v); return (int)i; }
    #else
    static inline int fs_top_bit(unsigned long long v) { return 63 - __builtin_clzll(v); }
    #endif
    """
    int fs_top_bit(unsigned long long v) noexcept nogil


cdef inline Py_ssize_t _index(int64_t v) noexcept nogil:
    cdef int k, shift
    if v < 2 * SUB:
        return v if v > 0 else 0
    k = fs_top_bit(<unsigned long long>v)
    if k > TOP_BIT:
        return N_BUCKETS - 1
    shift = k - SUB_BITS
    return shift * SUB + (v >> shift)


cdef inline int64_t _low(Py_ssize_t i) noexcept nogil:
    cdef int shift
    if i < 2 * SUB:
        return i
    shift = i // SUB - 1
    return (i - shift * SUB) << shift


cdef inline int64_t _width(Py_ssize_t i) noexcept nogil:
    return 1 if i < 2 * SUB else (<int64_t>1) << (i // SUB - 1)


cdef class Histogram:
    """Latencies in ns, log-linear buckets with bounded relative error (<= 1% from 1 µs to 100 s: 0.4%), fixed
    memory."""

    def __cinit__(self):
        self.counts = <int64_t*>PyMem_Calloc(N_BUCKETS, sizeof(int64_t))
        if self.counts == NULL:
            raise MemoryError()
        self.count = 0
        self._min = INT64_MAX
        self._max = 0
        self._sum = 0.0

    def __dealloc__(self):
        PyMem_Free(self.counts)

    def __init__(self):
        pass

    cdef void add(self, int64_t ns) noexcept nogil:
        if ns < 0:
            ns = 0
        self.counts[_index(ns)] += 1
        self.count += 1
        self._sum += ns
        if ns < self._min:
            self._min = ns
        if ns > self._max:
            self._max = ns

    def record(self, ns: int) -> None:
        """Count one value (ns; negative values count as 0)."""
        self.add(ns)

    def merge(self, Histogram other not None) -> None:
        """Add `other`'s values to this histogram."""
        cdef Py_ssize_t i
        for i in range(N_BUCKETS):
            self.counts[i] += other.counts[i]
        self.count += other.count
        self._sum += other._sum
        if other._min < self._min:
            self._min = other._min
        if other._max > self._max:
            self._max = other._max

    def reset(self) -> None:
        cdef Py_ssize_t i
        for i in range(N_BUCKETS):
            self.counts[i] = 0
        self.count = 0
        self._min = INT64_MAX
        self._max = 0
        self._sum = 0.0

    def percentile(self, double q) -> int:
        """The value (ns) at or below which `q` percent of the values lie (q in [0, 100]): the middle of the bucket
        holding the value of rank ceil(q% of count), the exact min or max at the ends; 0 when empty."""
        cdef int64_t rank, seen = 0, v
        cdef Py_ssize_t i
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        if self.count == 0:
            return 0
        rank = <int64_t>ceil(q / 100.0 * self.count)
        if rank <= 1:
            return self._min
        if rank >= self.count:
            return self._max
        for i in range(N_BUCKETS - 1):
            seen += self.counts[i]
            if seen >= rank:
                v = _low(i) + (_width(i) - 1) // 2
                return min(max(v, self._min), self._max)
        return self._max

    @property
    def max(self) -> int:
        return self._max

    @property
    def min(self) -> int:
        return self._min if self.count else 0

    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def to_dict(self) -> dict:
        """JSON-able: the non-empty buckets by index, and the exact count, min, max and sum."""
        cdef Py_ssize_t i
        index = []
        counts = []
        for i in range(N_BUCKETS):
            if self.counts[i]:
                index.append(i)
                counts.append(self.counts[i])
        return {"format": FORMAT, "count": self.count, "min": self.min, "max": self._max, "sum": self._sum,
                "index": index, "counts": counts}

    @staticmethod
    def from_dict(dict d not None) -> Histogram:
        """The histogram `to_dict` described (in this process or another)."""
        cdef Histogram h = Histogram()
        cdef Py_ssize_t i
        if d.get("format") != FORMAT:
            raise ValueError(f"expected a histogram of format {FORMAT!r}, got {d.get('format')!r}")
        index, counts = d["index"], d["counts"]
        if len(index) != len(counts):
            raise ValueError(f"histogram has {len(index)} bucket indexes but {len(counts)} counts")
        for i, c in zip(index, counts, strict=True):
            if not 0 <= i < N_BUCKETS or c < 0:
                raise ValueError(f"histogram bucket {i} (count {c}) out of range: {N_BUCKETS} buckets")
            h.counts[i] += c
        h.count = d["count"]
        if h.count != sum(counts):
            raise ValueError(f"histogram count {h.count} differs from its buckets' sum {sum(counts)}")
        if h.count:
            h._min = d["min"]
        h._max = d["max"]
        h._sum = d["sum"]
        return h

    def copy(self) -> Histogram:
        cdef Histogram h = Histogram()
        memcpy(h.counts, self.counts, N_BUCKETS * sizeof(int64_t))
        h.count, h._min, h._max, h._sum = self.count, self._min, self._max, self._sum
        return h

    def __eq__(self, other):
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None

    def __reduce__(self):
        return Histogram.from_dict, (self.to_dict(),)

    def __repr__(self):
        if not self.count:
            return "Histogram(count=0)"
        return (f"Histogram(count={self.count}, p50={self.percentile(50) / 1e3:.1f} µs, "
                f"p99={self.percentile(99) / 1e3:.1f} µs, max={self._max / 1e3:.1f} µs)")
