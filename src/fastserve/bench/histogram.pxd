cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class Histogram:
    cdef int64_t* counts     # fixed at construction: N_BUCKETS counters
    cdef readonly int64_t count
    cdef int64_t _min
    cdef int64_t _max
    cdef double _sum

    cdef void add(self, int64_t ns) noexcept nogil
