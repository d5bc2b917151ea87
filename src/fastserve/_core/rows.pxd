ctypedef fused real:
    float
    double

cpdef Py_ssize_t fill_rows(list rows, real[:, ::1] out, bint allow_non_finite, str path) except -1
cpdef Py_ssize_t first_non_finite(const real[:, ::1] x) noexcept

cpdef str type_name(object value)  # a value's JSON/msgpack type, as error messages name it
cpdef str shown(object value)      # a value as error messages quote it: short, and never failing
