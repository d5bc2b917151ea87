"""Rows of numbers, as JSON or msgpack decode them (a list of lists), into a contiguous float matrix.

One pass in C over the Python objects; the error path alone builds messages, and every message says where.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsDouble, PyLong_Check
from cpython.object cimport PyObject
from libc.math cimport fabs, isfinite

from fastserve.exceptions import InvalidInput

cdef double _FLOAT32_MAX = 3.4028234663852886e38


cdef str type_name(object value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


cpdef str shown(object value):
    """A value as error messages quote it: short, and never failing."""
    # repr() of an int over 4300 digits raises ValueError, and a client's value may be long: quote a bounded prefix.
    try:
        text = repr(value)
    except ValueError:
        return f"<{type_name(value)} too long to show>"
    return text if len(text) <= 80 else text[:77] + "..."


cdef int _raise_value(object value, str path, Py_ssize_t i, Py_ssize_t j, str why) except -1:
    raise InvalidInput(
        f"{why} - at `{path}[{i}][{j}]`",
        detail={"path": f"{path}[{i}][{j}]", "row": i, "column": j},
        reason=why,
    )


cdef inline double _as_double(object value, str path, Py_ssize_t i, Py_ssize_t j) except? -1.0:
    # Exact type checks first: the common case costs two pointer compares.
    if type(value) is float:
        return PyFloat_AS_DOUBLE(value)
    if type(value) is int:
        try:
            return PyLong_AsDouble(value)
        except OverflowError:
            _raise_value(value, path, i, j, "integer too large for a float")
    if PyFloat_Check(value):
        return PyFloat_AS_DOUBLE(value)
    if PyLong_Check(value) and not isinstance(value, bool):
        return PyLong_AsDouble(value)
    _raise_value(value, path, i, j, f"expected a number, got {type_name(value)}")
    return -1.0


cpdef Py_ssize_t fill_rows(list rows, real[:, ::1] out, bint allow_non_finite, str path) except -1:
    """Write `rows` (a list of equal-length lists of numbers) into `out`, which has their exact shape.

    Refuses, naming the row and column: a row that is not a list or has the wrong length, a value that is not an
    int or float (bools and strings included), a value that overflows the output dtype, and NaN/Inf unless
    `allow_non_finite`. Returns the number of rows written.
    """
    if rows is None or out is None:
        raise TypeError("fill_rows takes a list of rows and a matrix, not None")
    cdef Py_ssize_t n = PyList_GET_SIZE(rows)
    cdef Py_ssize_t d = out.shape[1]
    cdef Py_ssize_t i, j, width
    cdef object row, value
    cdef double x
    if n != out.shape[0]:
        raise ValueError(f"out has {out.shape[0]} rows for {n} input rows")
    for i in range(n):
        row = <object>PyList_GET_ITEM(rows, i)
        if type(row) is not list:
            raise InvalidInput(
                f"expected a row (an array of {d} numbers), got {type_name(row)} - at `{path}[{i}]`",
                detail={"path": f"{path}[{i}]", "row": i},
            )
        width = PyList_GET_SIZE(row)
        if width != d:
            raise InvalidInput(
                f"expected {d} features per row, got {width} - at `{path}[{i}]`",
                detail={"path": f"{path}[{i}]", "row": i, "expected": d, "got": width},
            )
        for j in range(d):
            value = <object>PyList_GET_ITEM(row, j)
            x = _as_double(value, path, i, j)
            if not isfinite(x):
                if not allow_non_finite:
                    _raise_value(value, path, i, j, f"non-finite value {x!r} refused (the model's inputs must be finite)")
            elif real is float and fabs(x) > _FLOAT32_MAX:
                _raise_value(value, path, i, j, f"value {x!r} is out of the float32 range")
            out[i, j] = <real>x
    return n


cpdef Py_ssize_t first_non_finite(const real[:, ::1] x) noexcept:
    """Flat index of the first NaN or Inf in `x`, or -1 when every value is finite (and for None)."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    with nogil:
        for i in range(n):
            for j in range(d):
                if not isfinite(x[i, j]):
                    return i * d + j
    return -1
