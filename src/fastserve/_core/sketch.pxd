cdef class BinnedSketch:
    cdef readonly Py_ssize_t n_columns
    cdef readonly Py_ssize_t rows
    cdef double[:, ::1] edges      # [columns, 63], padded with +inf
    cdef int[::1] n_edges
    cdef double[::1] low           # the reference's range, per column
    cdef double[::1] high
    cdef long long[:, ::1] counts  # [columns, 64]
    cdef readonly long long[::1] nan
    cdef readonly long long[::1] inf
    cdef readonly long long[::1] below
    cdef readonly long long[::1] above
    cdef readonly double[::1] sum
    cdef readonly double[::1] sum_sq

    cdef void _update(self, const float[:, ::1] x) noexcept nogil
