from cpython.object cimport PyObject

cdef enum Op:
    OP_LOG1P = 1
    OP_CLIP = 2
    OP_STANDARDIZE = 3
    OP_AFFINE = 4

cdef enum Kind:
    NUMBER = 0
    BUCKET_ORDINAL = 1
    BUCKET_ONEHOT = 2
    CATEGORY_ORDINAL = 3
    CATEGORY_ONEHOT = 4
    HASH_ORDINAL = 5
    HASH_ONEHOT = 6

cdef enum Unknown:
    UNKNOWN_ERROR = 0
    UNKNOWN_IGNORE = 1   # one-hot: all zeros; ordinal: unknown_value
    UNKNOWN_SLOT = 2     # one-hot: a reserved column


cdef class Feature:
    cdef readonly str name
    cdef readonly str field
    cdef readonly Py_ssize_t width
    cdef readonly str kind_name
    cdef Kind kind
    cdef bint has_impute
    cdef double impute_number
    cdef object impute_category
    cdef int[::1] ops
    cdef double[::1] op_a
    cdef double[::1] op_b
    cdef double[::1] edges
    cdef readonly dict lookup   # category -> slot (int)
    cdef double[::1] values     # ordinal: slot -> value
    cdef Py_ssize_t[::1] columns  # one-hot: slot -> column in the block, -1 = no column
    cdef bint strings           # categories are strings (else integers)
    cdef Unknown unknown
    cdef Py_ssize_t unknown_column
    cdef double unknown_value
    cdef Py_ssize_t buckets
    cdef double negative_sign   # hash one-hot: the value a negative hash writes (-1 with alternate_sign)

    cdef _check(self)


cdef class FeatureTransform:
    cdef readonly tuple features
    cdef readonly tuple fields
    cdef readonly Py_ssize_t width
    cdef readonly bint strict
    cdef readonly tuple raw_features  # per field: the Feature whose raw code drift sketches, or None (hashed)
    cdef frozenset _field_set
    cdef PyObject** _values      # the current row's value of each field, borrowed (NULL = absent)
    cdef double* _row_buffer     # the current row, before the cast to the output dtype
    cdef Py_ssize_t* _offsets    # per feature: its first column in the row
    cdef Py_ssize_t* _slots      # per feature: the index of its field in `_values`
    cdef Py_ssize_t* _raw_slots  # per feature: its field's index when it writes the field's raw code, else -1
    cdef Py_ssize_t _n_fields

    cdef int _fail(self, Py_ssize_t i, str field, bint columnar, str why) except -1
    cdef int _fail_value(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, str expected) except -1
    cdef int _number(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, double* x) except -1
    cdef int _category(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, PyObject** out) except -1
    cdef int _row(self, Py_ssize_t i, double* out, double* raw, bint columnar) except -1
    cdef int _check_raw(self, double[:, ::1] raw, Py_ssize_t n) except -1
    cdef int _unknown_field(self, Py_ssize_t i, object keys, bint columnar) except -1
    cdef void _free(self) noexcept
