# cython: language_level=3
"""Answers in msgpack: a map of output arrays written in one pass over their values, byte for byte what
`msgpack.packb(outputs, use_bin_type=True, default=encode_numpy)` writes (each array as nested arrays of its values as
Python gives them: float64 for floats, the shortest integer form for integers), without a Python object per value."""

cimport numpy as cnp
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cnp.import_array()

cdef enum:
    MAX_ITEM = 9  # bytes one value or one array head takes at most
    F32 = 1
    F64 = 2
    I32 = 3
    I64 = 4


cdef int _kind(cnp.ndarray array):
    """The array's kind of values, by dtype kind and size (numpy has two type numbers for 64-bit integers); 0 for
    any other."""
    cdef cnp.dtype dtype = array.dtype
    if dtype.kind == b"f":
        return F32 if dtype.itemsize == 4 else F64 if dtype.itemsize == 8 else 0
    if dtype.kind == b"i":
        return I32 if dtype.itemsize == 4 else I64 if dtype.itemsize == 8 else 0
    return 0


cdef inline Py_ssize_t _big(char* p, Py_ssize_t at, uint64_t v, int n) noexcept nogil:
    cdef int k
    for k in range(n - 1, -1, -1):
        p[at] = <char>((v >> (8 * k)) & 0xff)
        at += 1
    return at


cdef inline Py_ssize_t _array_head(char* p, Py_ssize_t at, Py_ssize_t n) noexcept nogil:
    if n <= 15:
        p[at] = <char>(0x90 | n)
        return at + 1
    if n <= 0xffff:
        p[at] = <char>0xdc
        return _big(p, at + 1, n, 2)
    p[at] = <char>0xdd
    return _big(p, at + 1, n, 4)


cdef inline Py_ssize_t _double(char* p, Py_ssize_t at, double v) noexcept nogil:
    cdef uint64_t bits
    memcpy(&bits, &v, 8)
    p[at] = <char>0xcb
    return _big(p, at + 1, bits, 8)


cdef inline Py_ssize_t _integer(char* p, Py_ssize_t at, int64_t v) noexcept nogil:
    if 0 <= v <= 0x7f:
        p[at] = <char>v
        return at + 1
    if v > 0:
        if v <= 0xff:
            p[at] = <char>0xcc
            return _big(p, at + 1, v, 1)
        if v <= 0xffff:
            p[at] = <char>0xcd
            return _big(p, at + 1, v, 2)
        if v <= <int64_t>4294967295:
            p[at] = <char>0xce
            return _big(p, at + 1, v, 4)
        p[at] = <char>0xcf
        return _big(p, at + 1, v, 8)
    if v >= -32:
        p[at] = <char>(v & 0xff)
        return at + 1
    if v >= -128:
        p[at] = <char>0xd0
        return _big(p, at + 1, <uint64_t>v, 1)
    if v >= -32768:
        p[at] = <char>0xd1
        return _big(p, at + 1, <uint64_t>v, 2)
    if v >= -<int64_t>2147483648:
        p[at] = <char>0xd2
        return _big(p, at + 1, <uint64_t>v, 4)
    p[at] = <char>0xd3
    return _big(p, at + 1, <uint64_t>v, 8)


cdef Py_ssize_t _values(char* p, Py_ssize_t at, const char* data, int kind, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        if kind == F32:
            at = _double(p, at, (<const float*>data)[j])
        elif kind == F64:
            at = _double(p, at, (<const double*>data)[j])
        elif kind == I32:
            at = _integer(p, at, (<const int*>data)[j])
        else:
            at = _integer(p, at, (<const int64_t*>data)[j])
    return at


cpdef object msgpack_arrays(dict outputs):
    """`outputs` ({name: C-contiguous 1-D or 2-D array of float32, float64, int32 or int64, native byte order}) as
    a msgpack map, or None when a name is not a short string or an array is of another kind (msgpack then writes
    it)."""
    cdef Py_ssize_t size = 1, at = 0, rows, columns, i
    cdef cnp.ndarray array
    cdef int kind
    cdef char* p
    cdef const char* data
    if len(outputs) > 15:
        return None
    taken = []  # (name's bytes, array, kind of values): each array looked at once
    for name, value in outputs.items():
        if type(name) is not str or type(value) is not cnp.ndarray:
            return None
        array = <cnp.ndarray>value
        kind = _kind(array)
        if kind == 0 or not cnp.PyArray_IS_C_CONTIGUOUS(array) or not cnp.PyArray_ISNOTSWAPPED(array) \
                or not 1 <= array.ndim <= 2 or (sizeof(int) != 4 and kind == I32):
            return None
        key = (<str>name).encode("utf-8")
        if len(key) > 31:
            return None
        taken.append((key, array, kind))
        size += 1 + len(key) + MAX_ITEM * (1 + cnp.PyArray_SIZE(array) + (array.shape[0] if array.ndim == 2 else 0))
    p = <char*>malloc(size)
    if p == NULL:
        raise MemoryError()
    try:
        p[0] = <char>(0x80 | len(outputs))
        at = 1
        for key, value, kind in taken:
            array = <cnp.ndarray>value
            p[at] = <char>(0xa0 | len(key))
            memcpy(p + at + 1, <const char*>(<bytes>key), len(key))
            at += 1 + len(key)
            data = <const char*>cnp.PyArray_DATA(array)
            if array.ndim == 1:
                at = _array_head(p, at, array.shape[0])
                at = _values(p, at, data, kind, array.shape[0])
            else:
                rows, columns = array.shape[0], array.shape[1]
                at = _array_head(p, at, rows)
                for i in range(rows):
                    at = _array_head(p, at, columns)
                    at = _values(p, at, data + i * columns * cnp.PyArray_ITEMSIZE(array), kind, columns)
        return PyBytes_FromStringAndSize(p, at)
    finally:
        free(p)
