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


cpdef str type_name(object value):
    """A value's JSON/msgpack type, as error messages name it (a tuple is an array, as decoders never make one)."""
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


# --- a body of rows, from its bytes ----------------------------------------------------------------------------------

cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc, strtod
from libc.string cimport memcmp, memcpy

import sys

import numpy as np

cnp.import_array()

cdef enum:
    NUMBER_MAX = 40  # bytes a number may take here: more (long digit strings) goes the general way
    INPUTS_KEY_LEN = 8

cdef const char* _INPUTS_KEY = b'"inputs"'


cdef inline Py_ssize_t _ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (p[i] == 32 or p[i] == 10 or p[i] == 13 or p[i] == 9):
        i += 1
    return i


cdef extern from "float.h":
    int LDBL_MANT_DIG

# Up to 19 digits and a power of ten within 1e27, both are exact in a long double of 64 mantissa bits (x86's): their
# product or quotient is within 2^-64 of the value, and when every number within 2^-62 of it rounds to the same
# double, that double is the value correctly rounded. Elsewhere (and where a long double is no wider than a double)
# strtod decides.
cdef bint _WIDE = LDBL_MANT_DIG >= 64
cdef long double[28] _POW10_WIDE
cdef long double _MARGIN = 1.0 / 4611686018427387904.0  # 2^-62
_POW10_WIDE[0] = 1.0
for _k in range(1, 28):
    _POW10_WIDE[_k] = _POW10_WIDE[_k - 1] * 10

cdef double[23] _POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
                          1e17, 1e18, 1e19, 1e20, 1e21, 1e22]


cdef Py_ssize_t _number(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, double* value) noexcept nogil:
    """A JSON number at p[i] (its grammar exactly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?) into `value`,
    correctly rounded, as the JSON decoder and int-to-float are; the index past it, or -1.

    Up to 15 significant digits and a power of ten within 1e22, the digits as an integer and the power are both
    exact doubles, so one multiplication or division rounds correctly (Clinger's fast path); up to 19 digits (a
    double written in full has 17) and a power within 1e27, the same in a long double, kept where its margin shows
    the rounding (`_WIDE`); other numbers go through strtod."""
    cdef Py_ssize_t start = i, j, digits = 0
    cdef unsigned long long mantissa = 0
    cdef long double wide
    cdef double low
    cdef int exponent = 0, exp_value = 0
    cdef bint negative = False, exp_negative = False, integer = True
    cdef char buf[NUMBER_MAX + 1]
    if i < n and p[i] == 45:  # -
        negative = True
        i += 1
    if i >= n:
        return -1
    if p[i] == 48:  # 0
        i += 1
    elif 49 <= p[i] <= 57:
        while i < n and 48 <= p[i] <= 57:
            if digits < 19:
                mantissa = mantissa * 10 + (p[i] - 48)
            digits += 1
            i += 1
    else:
        return -1
    if i < n and p[i] == 46:  # .
        j = i + 1
        while j < n and 48 <= p[j] <= 57:
            if digits == 0 and p[j] == 48:  # leading zeros of a fraction are not significant
                exponent -= 1
            else:
                if digits < 19:
                    mantissa = mantissa * 10 + (p[j] - 48)
                    exponent -= 1
                digits += 1
            j += 1
        if j == i + 1:
            return -1
        i = j
        integer = False
    if i < n and (p[i] == 101 or p[i] == 69):  # e E
        integer = False
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            exp_negative = p[i] == 45
            i += 1
        j = i
        while j < n and 48 <= p[j] <= 57:
            if exp_value < 100000:
                exp_value = exp_value * 10 + (p[j] - 48)
            j += 1
        if j == i:
            return -1
        i = j
        exponent += -exp_value if exp_negative else exp_value
    if i - start > NUMBER_MAX:
        return -1
    if digits <= 15 and -22 <= exponent <= 22:
        value[0] = <double>mantissa * _POW10[exponent] if exponent >= 0 else <double>mantissa / _POW10[-exponent]
        if negative and not (integer and mantissa == 0):  # `-0` is the integer 0 to the decoder: no sign
            value[0] = -value[0]
        return i
    if _WIDE and digits <= 19 and -27 <= exponent <= 27 and mantissa != 0:
        wide = (<long double>mantissa * _POW10_WIDE[exponent] if exponent >= 0
                else <long double>mantissa / _POW10_WIDE[-exponent])
        low = <double>(wide * (1 - _MARGIN))
        if low == <double>(wide * (1 + _MARGIN)):
            value[0] = -low if negative else low
            return i
    memcpy(buf, p + start, i - start)
    buf[i - start] = 0
    value[0] = strtod(buf, NULL)
    return i


cdef void _cast_into(const double* values, real[:, ::1] out) noexcept:
    cdef Py_ssize_t i, j, k = 0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = <real>values[k]
            k += 1


cpdef object json_rows(bytes body, Py_ssize_t width, Py_ssize_t max_rows, bint float32):
    """The matrix of a JSON body that is exactly `{"inputs": [[number, ...], ...]}` with rows of `width` finite
    numbers (in the float32 range when `float32`), from 1 to `max_rows` of them: the common request, read in one pass
    over its bytes with no Python object per value. None for any other body, which then takes the general way (the
    JSON decoder, then `fill_rows`), where whatever is wrong with it is told; so this reads exactly what that way
    would, and the same numbers (correctly rounded to a double, then cast)."""
    cdef Py_ssize_t n, i = 0, rows = 0, j, cap = 0, count = 0
    cdef const unsigned char* p
    cdef double* values = NULL
    cdef double* grown
    cdef double x
    if body is None:
        return None
    n = PyBytes_GET_SIZE(body)
    if n == 0 or width < 1 or max_rows < 1:
        return None
    p = <const unsigned char*>PyBytes_AS_STRING(body)
    try:
        i = _ws(p, 0, n)
        if i >= n or p[i] != 123:  # {
            return None
        i = _ws(p, i + 1, n)
        if n - i < INPUTS_KEY_LEN or memcmp(p + i, _INPUTS_KEY, INPUTS_KEY_LEN):
            return None
        i = _ws(p, i + INPUTS_KEY_LEN, n)
        if i >= n or p[i] != 58:  # :
            return None
        i = _ws(p, i + 1, n)
        if i >= n or p[i] != 91:  # [
            return None
        i = _ws(p, i + 1, n)
        while True:
            if i >= n or p[i] != 91 or rows == max_rows:  # a row, within the limit
                return None
            if count + width > cap:
                cap = max(cap * 2, width * 4)
                grown = <double*>realloc(values, cap * sizeof(double))
                if grown == NULL:
                    return None
                values = grown
            i += 1
            for j in range(width):
                i = _ws(p, i, n)
                i = _number(p, i, n, &x)
                if i < 0 or not isfinite(x) or (float32 and fabs(x) > _FLOAT32_MAX):
                    return None
                values[count] = x
                count += 1
                i = _ws(p, i, n)
                if i >= n or p[i] != (93 if j == width - 1 else 44):  # ] after the last, , between
                    return None
                i += 1
            rows += 1
            i = _ws(p, i, n)
            if i < n and p[i] == 44:  # , another row
                i = _ws(p, i + 1, n)
                continue
            if i < n and p[i] == 93:  # ] the last
                break
            return None
        i = _ws(p, i + 1, n)
        if i >= n or p[i] != 125:  # }
            return None
        if _ws(p, i + 1, n) != n:
            return None
        if float32:
            out32 = np.empty((rows, width), dtype=np.float32)
            _cast_into[float](values, out32)
            return out32
        out64 = np.empty((rows, width), dtype=np.float64)
        _cast_into[double](values, out64)
        return out64
    finally:
        free(values)


# msgpack: the common raw tensor body
cdef bint _LITTLE_ENDIAN = sys.byteorder == "little"  # raw tensors are little-endian: viewed, not converted, here


cdef Py_ssize_t _msgpack_str(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, Py_ssize_t* length) noexcept nogil:
    """The index of a fixstr's bytes at p[i] (its length in `length`), or -1 for anything else."""
    if i >= n or (p[i] & 0xe0) != 0xa0:
        return -1
    length[0] = p[i] & 0x1f
    if i + 1 + length[0] > n:
        return -1
    return i + 1


cdef Py_ssize_t _msgpack_uint(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, Py_ssize_t* value) noexcept nogil:
    """The index past an unsigned integer (positive fixint, uint8/16/32) at p[i] (into `value`), or -1."""
    if i >= n:
        return -1
    if p[i] < 0x80:
        value[0] = p[i]
        return i + 1
    if p[i] == 0xcc and i + 1 < n:
        value[0] = p[i + 1]
        return i + 2
    if p[i] == 0xcd and i + 2 < n:
        value[0] = (<Py_ssize_t>p[i + 1] << 8) | p[i + 2]
        return i + 3
    if p[i] == 0xce and i + 4 < n:
        value[0] = ((<Py_ssize_t>p[i + 1] << 24) | (<Py_ssize_t>p[i + 2] << 16) | (<Py_ssize_t>p[i + 3] << 8)
                    | p[i + 4])
        return i + 5
    return -1


cpdef object msgpack_tensor(bytes body, Py_ssize_t width, Py_ssize_t max_rows, bint float32):
    """The matrix of a msgpack body that is exactly `{"inputs": {"dtype", "shape", "data"}}` (the three keys in any
    order) holding a raw little-endian tensor of the model's own dtype (`float32`, else `float64`), of shape
    [1 to `max_rows`, `width`], every value finite: a read-only view of the body's bytes, as the general way gives.
    None for any other body, which then takes the general way (the msgpack decoder), where whatever is wrong with it
    is told."""
    cdef Py_ssize_t n, i, k, length, rows = -1, columns = -1, data_at = -1, data_len = -1, itemsize
    cdef const unsigned char* p
    cdef bint dtype_seen = False
    cdef bytes want = b"float32" if float32 else b"float64"
    if body is None or width < 1 or max_rows < 1 or not _LITTLE_ENDIAN:
        return None
    n = PyBytes_GET_SIZE(body)
    p = <const unsigned char*>PyBytes_AS_STRING(body)
    itemsize = 4 if float32 else 8
    if n < 2 or p[0] != 0x81:  # a map of one key
        return None
    i = _msgpack_str(p, 1, n, &length)
    if i < 0 or length != 6 or memcmp(p + i, b"inputs", 6):
        return None
    i += 6
    if i >= n or p[i] != 0x83:  # a map of three keys
        return None
    i += 1
    for k in range(3):
        i = _msgpack_str(p, i, n, &length)
        if i < 0:
            return None
        if length == 5 and not memcmp(p + i, b"dtype", 5) and not dtype_seen:
            dtype_seen = True
            i = _msgpack_str(p, i + 5, n, &length)
            if i < 0 or length != 7 or memcmp(p + i, <const char*>want, 7):
                return None
            i += 7
        elif length == 5 and not memcmp(p + i, b"shape", 5) and rows < 0:
            i += 5
            if i >= n or p[i] != 0x92:  # an array of two
                return None
            i = _msgpack_uint(p, i + 1, n, &rows)
            if i < 0:
                return None
            i = _msgpack_uint(p, i, n, &columns)
            if i < 0:
                return None
        elif length == 4 and not memcmp(p + i, b"data", 4) and data_at < 0:
            i += 4
            if i >= n:
                return None
            if p[i] == 0xc4 and i + 1 < n:
                data_len, i = p[i + 1], i + 2
            elif p[i] == 0xc5 and i + 2 < n:
                data_len, i = (<Py_ssize_t>p[i + 1] << 8) | p[i + 2], i + 3
            elif p[i] == 0xc6 and i + 4 < n:
                data_len = ((<Py_ssize_t>p[i + 1] << 24) | (<Py_ssize_t>p[i + 2] << 16) | (<Py_ssize_t>p[i + 3] << 8)
                            | p[i + 4])
                i += 5
            else:
                return None
            if data_len > n - i:
                return None
            data_at = i
            i += data_len
        else:
            return None
    if i != n or not dtype_seen or rows < 1 or rows > max_rows or columns != width or data_len != rows * width * itemsize:
        return None
    x = np.frombuffer(body, dtype="<f4" if float32 else "<f8", count=rows * width, offset=data_at).reshape(rows, width)
    if float32:
        if first_non_finite[float](x) >= 0:
            return None
    elif first_non_finite[double](x) >= 0:
        return None
    return x


# --- the common V2 inference request, once its JSON is decoded --------------------------------------------------------

cdef frozenset _V2_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "model_name", "model_version"})
cdef frozenset _V2_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})


cdef bint _v2_parameters_plain(object parameters):
    """Parameters that ask for nothing this reader leaves to the general way (other extensions)."""
    return parameters is None or (type(parameters) is dict and "shared_memory_region" not in parameters
                                  and "classification" not in parameters)


cdef object _v2_values(list data, Py_ssize_t rows, Py_ssize_t width, bint float32):
    """JSON data of `rows` x `width` numbers, flat or as rows of `width`, every one a finite int or float (in the
    float32 range when `float32`): the matrix, else None."""
    cdef Py_ssize_t n = PyList_GET_SIZE(data), i, j
    cdef bint flat = n == rows * width and n > 0 and type(<object>PyList_GET_ITEM(data, 0)) is not list
    cdef object row, value
    cdef double x
    if not flat and n != rows:
        return None
    out = np.empty((rows, width), dtype=np.float32 if float32 else np.float64)
    cdef float[:, ::1] out32
    cdef double[:, ::1] out64
    if float32:
        out32 = out
    else:
        out64 = out
    for i in range(rows):
        if not flat:
            row = <object>PyList_GET_ITEM(data, i)
            if type(row) is not list or PyList_GET_SIZE(row) != width:
                return None
        for j in range(width):
            value = <object>PyList_GET_ITEM(data, i * width + j) if flat else <object>PyList_GET_ITEM(row, j)
            if type(value) is float:
                x = PyFloat_AS_DOUBLE(value)
            elif type(value) is int:
                x = PyLong_AsDouble(value)  # (an int past the double range raises: the general way tells it)
            else:
                return None
            if not isfinite(x) or (float32 and fabs(x) > _FLOAT32_MAX):
                return None
            if float32:
                out32[i, j] = <float>x
            else:
                out64[i, j] = x
    return out


cdef object _v2_binary(object tail, Py_ssize_t rows, Py_ssize_t width, bint float32):
    """Binary data of `rows` x `width` little-endian floats, every one finite: the matrix (a copy: one pass, and no
    view to keep the body alive), else None."""
    cdef Py_buffer view
    cdef Py_ssize_t i, n = rows * width
    cdef const float* f
    cdef const double* d
    if not _LITTLE_ENDIAN:
        return None
    PyObject_GetBuffer(tail, &view, PyBUF_SIMPLE)
    try:
        if view.len != n * (4 if float32 else 8):
            return None
        if float32:
            f = <const float*>view.buf
            for i in range(n):
                if not isfinite(f[i]):
                    return None
            out = np.empty((rows, width), dtype=np.float32)
        else:
            d = <const double*>view.buf
            for i in range(n):
                if not isfinite(d[i]):
                    return None
            out = np.empty((rows, width), dtype=np.float64)
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>out), view.buf, view.len)
        return out
    finally:
        PyBuffer_Release(&view)


cpdef object v2_tensor(object request, object tail, str input_name, Py_ssize_t width, Py_ssize_t max_rows,
                       bint float32):
    """The common V2 inference request, decoded from its JSON: one input named `input_name`, shape [1 to `max_rows`,
    `width`], of the model's own float datatype, its finite values as JSON data (flat or rows) or as the whole binary
    tail; no `outputs` list, no parameters of other extensions. Returns (the matrix, the request's id or None,
    `binary_data_output`, the `timeout` parameter in microseconds or None), the matrix a read-only view of binary
    data; None for any other request, which then takes the general way (http/v2/request.py), where whatever is wrong
    with it is told: so this accepts only what that way accepts, and gives the same matrix."""
    cdef object item, shape, parameters, request_id, timeout, binary_output, size, data, first, second
    cdef Py_ssize_t rows, itemsize = 4 if float32 else 8
    try:
        if type(request) is not dict or not (<dict>request).keys() <= _V2_REQUEST_KEYS:
            return None
        request_id = (<dict>request).get("id")
        if request_id is not None and type(request_id) is not str:
            return None
        parameters = (<dict>request).get("parameters")
        if not _v2_parameters_plain(parameters):
            return None
        binary_output, timeout = (False, None) if parameters is None else (
            (<dict>parameters).get("binary_data_output", False), (<dict>parameters).get("timeout"))
        if type(binary_output) is not bool:
            return None
        if timeout is not None and (type(timeout) is not int and type(timeout) is not float or not 0 < timeout < 1e12):
            return None
        inputs = (<dict>request).get("inputs")
        if type(inputs) is not list or PyList_GET_SIZE(inputs) != 1:
            return None
        item = <object>PyList_GET_ITEM(inputs, 0)
        if type(item) is not dict or not (<dict>item).keys() <= _V2_INPUT_KEYS:
            return None
        if (<dict>item).get("name") != input_name or type(input_name) is not str:
            return None
        if (<dict>item).get("datatype") != ("FP32" if float32 else "FP64"):
            return None
        shape = (<dict>item).get("shape")
        if type(shape) is not list or PyList_GET_SIZE(shape) != 2:
            return None
        first, second = <object>PyList_GET_ITEM(shape, 0), <object>PyList_GET_ITEM(shape, 1)
        if type(first) is not int or type(second) is not int or second != width or not 1 <= first <= max_rows:
            return None
        rows = first
        parameters = (<dict>item).get("parameters")
        if not _v2_parameters_plain(parameters):
            return None
        size = None if parameters is None else (<dict>parameters).get("binary_data_size")
        if size is None:
            data = (<dict>item).get("data")
            if type(data) is not list or len(tail) != 0:
                return None
            x = _v2_values(data, rows, width, float32)
        else:
            if type(size) is not int or "data" in item or size != rows * width * itemsize or len(tail) != size:
                return None
            x = _v2_binary(tail, rows, width, float32)
        if x is None:
            return None
        return x, request_id, binary_output, timeout
    except (OverflowError, TypeError, ValueError):  # (an int past the double range; an unhashable key)
        return None
