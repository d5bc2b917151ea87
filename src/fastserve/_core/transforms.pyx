"""Raw records (named numeric and categorical fields) into the model's input matrix, in one pass.

Each `Feature` is one step of the training pipeline's column transformer, with its fitted numbers: it reads one field
of each record and writes `width` columns at its offset in the output row. Arithmetic is done in double precision in
the order scikit-learn does it, so the values equal the pipeline's own before the cast to the model's dtype (the
extension is compiled with floating-point contraction off: no fused multiply-add that would change last bits).

Records (a list of dicts) and columns (a dict of equal-length lists) share one inner loop over C arrays of borrowed
references; there is no Python-level loop per value. Errors name the record and the field.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsDouble, PyLong_AsSsize_t, PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Check
from libc.math cimport INFINITY, NAN, isfinite, isnan, log1p
from libc.stdint cimport int32_t, uint32_t

from fastserve._core.rows cimport shown, type_name

import numpy as np

from fastserve.exceptions import InvalidInput

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

ctypedef fused real:
    float
    double

_KINDS = {
    "number": NUMBER, "bucket_ordinal": BUCKET_ORDINAL, "bucket_onehot": BUCKET_ONEHOT,
    "category_ordinal": CATEGORY_ORDINAL, "category_onehot": CATEGORY_ONEHOT,
    "hash_ordinal": HASH_ORDINAL, "hash_onehot": HASH_ONEHOT,
}
_OPS = {"log1p": OP_LOG1P, "clip": OP_CLIP, "standardize": OP_STANDARDIZE, "affine": OP_AFFINE}
_UNKNOWN = {"error": UNKNOWN_ERROR, "ignore": UNKNOWN_IGNORE, "slot": UNKNOWN_SLOT}

# Outcome of reading one value.
cdef enum Read:
    READ_OK = 0
    READ_MISSING = 1


cdef inline uint32_t _rotl(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef int32_t murmurhash3_32(const unsigned char* data, Py_ssize_t n, uint32_t seed) noexcept nogil:
    """MurmurHash3 x86 32-bit, as a signed integer: the hash scikit-learn's FeatureHasher uses."""
    cdef uint32_t c1 = 0xcc9e2d51U, c2 = 0x1b873593U
    cdef uint32_t h = seed, k
    cdef Py_ssize_t i, blocks = n // 4
    for i in range(blocks):
        k = (<uint32_t>data[4 * i] | (<uint32_t>data[4 * i + 1] << 8) | (<uint32_t>data[4 * i + 2] << 16)
             | (<uint32_t>data[4 * i + 3] << 24))
        k *= c1
        k = _rotl(k, 15)
        k *= c2
        h ^= k
        h = _rotl(h, 13)
        h = h * 5 + 0xe6546b64U
    k = 0
    i = blocks * 4
    if n & 3 == 3:
        k ^= <uint32_t>data[i + 2] << 16
    if n & 3 >= 2:
        k ^= <uint32_t>data[i + 1] << 8
    if n & 3 >= 1:
        k ^= <uint32_t>data[i]
        k *= c1
        k = _rotl(k, 15)
        k *= c2
        h ^= k
    h ^= <uint32_t>n
    h ^= h >> 16
    h *= 0x85ebca6bU
    h ^= h >> 13
    h *= 0xc2b2ae35U
    h ^= h >> 16
    return <int32_t>h


def murmurhash3(str value):
    """The signed 32-bit MurmurHash3 (seed 0) of `value`'s UTF-8 bytes; equals sklearn.utils.murmurhash3_32."""
    cdef Py_ssize_t size
    cdef const char* data = PyUnicode_AsUTF8AndSize(value, &size)
    return murmurhash3_32(<const unsigned char*>data, size, 0)


cdef inline Py_ssize_t _hash_bucket(int32_t h, Py_ssize_t buckets) noexcept nogil:
    # FeatureHasher's index: abs(h) % n, with abs(-2**31) defined as scikit-learn defines it.
    if h == -2147483648:
        return (2147483647 - (buckets - 1)) % buckets
    return (h if h >= 0 else -h) % buckets


cdef inline Py_ssize_t _bucket(double x, double[::1] edges) noexcept nogil:
    # numpy.searchsorted(edges, x, side="right"): the number of edges <= x.
    cdef Py_ssize_t lo = 0, hi = edges.shape[0], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef class Feature:
    """One output block: a field of the record, its transforms with their fitted numbers, and its width.

    `kind` is one of number, bucket_ordinal, bucket_onehot, category_ordinal, category_onehot, hash_ordinal,
    hash_onehot. Numeric kinds apply `ops` in order, each `(name, a, b)`: log1p; clip to [a, b]; standardize
    (x - a) / b; affine x * a + b. Category kinds map a value through `lookup` (category -> slot) to `values[slot]`
    (ordinal) or to column `columns[slot]` of the block (one-hot, -1 = none). Hash kinds take MurmurHash3 of the
    string into `buckets`. `impute` replaces a missing value (absent, null or NaN); without it the field is required.
    """

    def __init__(self, str name, str field, str kind, *, object impute=None, list ops=None, object edges=None,
                 dict lookup=None, object values=None, object columns=None, bint strings=True,
                 str unknown="error", Py_ssize_t unknown_column=-1, double unknown_value=NAN,
                 Py_ssize_t buckets=0, bint alternate_sign=False, Py_ssize_t width=1):
        if kind not in _KINDS:
            raise ValueError(f"unknown feature kind {kind!r}")
        if unknown not in _UNKNOWN:
            raise ValueError(f"unknown policy {unknown!r}")
        self.name = name
        self.field = field
        self.kind = _KINDS[kind]
        self.kind_name = kind
        self.width = width
        ops = ops or []
        for op, _, _ in ops:
            if op not in _OPS:
                raise ValueError(f"feature {name!r}: unknown op {op!r}; expected one of {', '.join(_OPS)}")
        self.ops = np.array([_OPS[op] for op, _, _ in ops], dtype=np.intc)
        self.op_a = np.array([a for _, a, _ in ops], dtype=np.float64)
        self.op_b = np.array([b for _, _, b in ops], dtype=np.float64)
        self.edges = np.ascontiguousarray(edges if edges is not None else [], dtype=np.float64)
        self.lookup = lookup if lookup is not None else {}
        self.values = np.ascontiguousarray(values if values is not None else [], dtype=np.float64)
        self.columns = np.ascontiguousarray(columns if columns is not None else [], dtype=np.intp)
        self.strings = strings
        self.unknown = _UNKNOWN[unknown]
        self.unknown_column = unknown_column
        self.unknown_value = unknown_value
        self.buckets = buckets
        self.has_impute = impute is not None
        self.impute_number = NAN
        self.impute_category = impute
        if self.kind <= BUCKET_ONEHOT and impute is not None:
            try:
                self.impute_number = float(impute)
            except OverflowError:
                raise ValueError(f"feature {name!r}: impute {shown(impute)} is too large for a float") from None
        self.negative_sign = -1.0 if alternate_sign else 1.0
        self._check()

    cdef _check(self):
        cdef Py_ssize_t slot, n_slots
        if self.width < 1:
            raise ValueError(f"feature {self.name!r}: width must be >= 1, got {self.width}")
        if self.kind >= HASH_ORDINAL and self.has_impute and not isinstance(self.impute_category, str):
            raise ValueError(f"feature {self.name!r}: a hashed feature imputes a string, got {self.impute_category!r}")
        if self.kind == NUMBER or self.kind == BUCKET_ORDINAL or self.kind == CATEGORY_ORDINAL \
                or self.kind == HASH_ORDINAL:
            if self.width != 1:
                raise ValueError(f"feature {self.name!r}: an ordinal or numeric feature writes 1 column")
        if self.kind == BUCKET_ONEHOT and self.width != self.edges.shape[0] + 1:
            raise ValueError(f"feature {self.name!r}: {self.edges.shape[0]} edges make {self.edges.shape[0] + 1} "
                             f"one-hot columns, not {self.width}")
        if self.kind == HASH_ONEHOT and self.width != self.buckets:
            raise ValueError(f"feature {self.name!r}: hashing into {self.buckets} buckets writes that many columns")
        if (self.kind == HASH_ONEHOT or self.kind == HASH_ORDINAL) and self.buckets < 1:
            raise ValueError(f"feature {self.name!r}: buckets must be >= 1")
        if self.kind == CATEGORY_ORDINAL or self.kind == CATEGORY_ONEHOT:
            n_slots = self.values.shape[0] if self.kind == CATEGORY_ORDINAL else self.columns.shape[0]
            for value in self.lookup.values():
                if type(value) is not int or not 0 <= value < n_slots:
                    raise ValueError(f"feature {self.name!r}: slot {value!r} is not an integer in 0..{n_slots - 1}")
        if self.kind == CATEGORY_ONEHOT:
            for slot in range(self.columns.shape[0]):
                if not -1 <= self.columns[slot] < self.width:
                    raise ValueError(f"feature {self.name!r}: column {self.columns[slot]} outside the block")
            if self.unknown == UNKNOWN_SLOT and not 0 <= self.unknown_column < self.width:
                raise ValueError(f"feature {self.name!r}: unknown column {self.unknown_column} outside the block")

    def __repr__(self):
        return f"Feature({self.name!r}, field={self.field!r}, width={self.width})"


cdef class FeatureTransform:
    """The ordered features of a model: records or columns in, one row of `width` numbers per record out.

    With `strict`, a record (or a columns object) carrying a field no feature reads is refused.

    Given a `raw` matrix of shape (rows, len(fields)), the same pass also writes each field's raw code for the drift
    sketches: a number as sent, before imputing and transforms; a category as its slot in the first category
    feature reading it, -1 when unknown; NaN when missing, and for fields only hashed features read.
    """

    def __cinit__(self):
        self._values = NULL
        self._row_buffer = NULL
        self._offsets = NULL
        self._slots = NULL
        self._raw_slots = NULL

    def __init__(self, features, bint strict=False):
        cdef Feature f
        cdef Py_ssize_t offset = 0, n
        features = tuple(features)
        for f in features:
            if f is None:
                raise TypeError("a feature transform takes Feature objects, got None")
        if not features:
            raise ValueError("a feature transform needs at least one feature")
        # Where each feature reads and writes belongs to the transform, not the Feature: one Feature may serve in
        # several transforms (versions sharing the model's spec) at different places.
        self._free()
        self._offsets = <Py_ssize_t*>PyMem_Malloc(len(features) * sizeof(Py_ssize_t))
        self._slots = <Py_ssize_t*>PyMem_Malloc(len(features) * sizeof(Py_ssize_t))
        self._raw_slots = <Py_ssize_t*>PyMem_Malloc(len(features) * sizeof(Py_ssize_t))
        if self._offsets == NULL or self._slots == NULL or self._raw_slots == NULL:
            raise MemoryError()
        fields = []
        index = {}
        writers = {}
        for n, f in enumerate(features):
            if f.field not in index:
                index[f.field] = len(fields)
                fields.append(f.field)
            self._slots[n] = index[f.field]
            self._offsets[n] = offset
            offset += f.width
            self._raw_slots[n] = -1
            if f.kind < HASH_ORDINAL and f.field not in writers:
                writers[f.field] = f
                self._raw_slots[n] = index[f.field]
        self.raw_features = tuple(writers.get(name) for name in fields)
        self.features = features
        # Interned keys: a record decoded from JSON or msgpack hashes and compares them fastest.
        self.fields = tuple(fields)
        self._field_set = frozenset(fields)
        self._n_fields = len(fields)
        self.width = offset
        self.strict = strict
        self._values = <PyObject**>PyMem_Malloc(self._n_fields * sizeof(PyObject*))
        self._row_buffer = <double*>PyMem_Malloc(self.width * sizeof(double))
        if self._values == NULL or self._row_buffer == NULL:
            raise MemoryError()

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        PyMem_Free(self._values)
        PyMem_Free(self._row_buffer)
        PyMem_Free(self._offsets)
        PyMem_Free(self._slots)
        PyMem_Free(self._raw_slots)
        self._values = NULL
        self._row_buffer = NULL
        self._offsets = NULL
        self._slots = NULL
        self._raw_slots = NULL

    cdef int _fail(self, Py_ssize_t i, str field, bint columnar, str why) except -1:
        path = f"$.columns.{field}[{i}]" if columnar else f"$.records[{i}].{field}"
        raise InvalidInput(f"{why} - at `{path}`", detail={"path": path, "record": i, "field": field}, reason=why)

    cdef int _fail_value(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, str expected) except -1:
        value = <object>ptr
        self._fail(i, f.field, columnar, f"expected {expected}, got {type_name(value)} {shown(value)}")

    cdef int _number(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, double* x) except -1:
        """The field's value (`ptr`, NULL when absent) as a double in `x`: READ_OK, or READ_MISSING for absent,
        null and NaN."""
        cdef object value
        if ptr == NULL:
            return READ_MISSING
        value = <object>ptr
        if type(value) is float:
            x[0] = PyFloat_AS_DOUBLE(value)
        elif type(value) is int:
            try:
                x[0] = PyLong_AsDouble(value)
            except OverflowError:
                self._fail(i, f.field, columnar, f"integer of {value.bit_length()} bits is too large for a float")
        elif value is None:
            return READ_MISSING
        elif PyFloat_Check(value):
            x[0] = PyFloat_AS_DOUBLE(value)
        elif PyLong_Check(value) and not isinstance(value, bool):
            x[0] = PyLong_AsDouble(value)
        else:
            self._fail_value(i, f, ptr, columnar, "a number")
        if isnan(x[0]):
            return READ_MISSING
        if not isfinite(x[0]):
            self._fail(i, f.field, columnar, f"expected a finite number, got {x[0]!r}")
        return READ_OK

    cdef int _category(self, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, PyObject** out) except -1:
        """The field's value (`ptr`, NULL when absent) as a category object in `out`: READ_OK, or READ_MISSING for
        absent, null and NaN."""
        cdef object value
        if ptr == NULL:
            return READ_MISSING
        value = <object>ptr
        if value is None or (type(value) is float and isnan(PyFloat_AS_DOUBLE(value))):
            return READ_MISSING
        if f.strings or f.kind >= HASH_ORDINAL:
            if not PyUnicode_Check(value):
                self._fail_value(i, f, ptr, columnar, "a string")
        elif isinstance(value, bool) or not (PyLong_Check(value) or PyFloat_Check(value)):
            self._fail_value(i, f, ptr, columnar, "an integer")
        out[0] = ptr
        return READ_OK

    cdef int _row(self, Py_ssize_t i, double* out, double* raw, bint columnar) except -1:
        """Record (or column position) `i` into `out`, one feature's block at a time; its raw field codes into `raw`
        (when not NULL) for the drift sketches."""
        cdef Feature f
        cdef Py_ssize_t k, n = 0
        cdef PyObject* ptr
        cdef double* out_block
        cdef Py_ssize_t raw_slot
        if raw != NULL:
            for k in range(self._n_fields):
                raw[k] = NAN
        for f in self.features:
            ptr = self._values[self._slots[n]]
            raw_slot = self._raw_slots[n] if raw != NULL else -1
            out_block = out + self._offsets[n]
            n += 1
            if f.kind <= BUCKET_ONEHOT:
                _numeric(self, i, f, ptr, columnar, out_block, raw, raw_slot)
            else:
                _categorical(self, i, f, ptr, columnar, out_block, raw, raw_slot)
        return 0

    cdef int _unknown_field(self, Py_ssize_t i, object keys, bint columnar) except -1:
        extra = sorted(str(k) for k in keys if k not in self._field_set)
        where = f"$.columns" if columnar else f"$.records[{i}]"
        raise InvalidInput(f"unknown field {extra[0]!r}; this model reads {', '.join(self.fields)} - at `{where}`",
                           detail={"path": where, "record": i, "field": extra[0]})

    cdef int _check_raw(self, double[:, ::1] raw, Py_ssize_t n) except -1:
        if raw is not None and (raw.shape[0] != n or raw.shape[1] != self._n_fields):
            raise ValueError(f"raw has shape ({raw.shape[0]}, {raw.shape[1]}), needs ({n}, {self._n_fields})")
        return 0

    def fill_records(self, list records not None, real[:, ::1] out not None, double[:, ::1] raw=None):
        """Write one row per record (a dict) into `out`, of shape (len(records), width), and the fields' raw codes
        into `raw` when given."""
        cdef Py_ssize_t n = PyList_GET_SIZE(records), i, k, present
        cdef object record
        cdef PyObject* value
        if out.shape[0] != n or out.shape[1] != self.width:
            raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), needs ({n}, {self.width})")
        self._check_raw(raw, n)
        for i in range(n):
            record = <object>PyList_GET_ITEM(records, i)
            if type(record) is not dict:
                raise InvalidInput(f"expected a record (an object of fields), got {type_name(record)} - at "
                                   f"`$.records[{i}]`", detail={"path": f"$.records[{i}]", "record": i})
            present = 0
            for k in range(self._n_fields):
                value = PyDict_GetItem(record, self.fields[k])
                self._values[k] = value
                present += value != NULL
            if self.strict and present != PyDict_Size(record):
                self._unknown_field(i, record, False)
            self._row(i, self._row_buffer, &raw[i, 0] if raw is not None else NULL, False)
            for k in range(self.width):
                out[i, k] = <real>self._row_buffer[k]
        return n

    def count_columns(self, dict columns not None):
        """The number of rows in a columns object: every column is a list, all of one length. Checks fields."""
        cdef Py_ssize_t n = -1
        first = None
        if self.strict and not columns.keys() <= self._field_set:
            self._unknown_field(0, columns, True)
        for name in self.fields:
            column = columns.get(name)
            if column is None:
                continue
            if type(column) is not list:
                raise InvalidInput(f"expected a column (an array of values), got {type_name(column)} - at "
                                   f"`$.columns.{name}`", detail={"path": f"$.columns.{name}", "field": name})
            if n < 0:
                n, first = PyList_GET_SIZE(column), name
            elif PyList_GET_SIZE(column) != n:
                raise InvalidInput(f"column {name!r} has {PyList_GET_SIZE(column)} values, column {first!r} has "
                                   f"{n}: columns must have one length - at `$.columns.{name}`",
                                   detail={"path": f"$.columns.{name}", "field": name})
        if n < 0:
            raise InvalidInput(f"no column this model reads; it reads {', '.join(self.fields)} - at `$.columns`",
                               detail={"path": "$.columns"})
        return n

    def fill_columns(self, dict columns not None, real[:, ::1] out not None, double[:, ::1] raw=None):
        """Write row i from the i-th value of every column into `out` (and the raw codes into `raw`, as
        `fill_records` does); call `count_columns` first."""
        cdef Py_ssize_t n = out.shape[0], i, k
        cdef list column
        cdef list present = [columns.get(name) for name in self.fields]
        if out.shape[1] != self.width:
            raise ValueError(f"out has {out.shape[1]} columns, needs {self.width}")
        self._check_raw(raw, n)
        for column in present:
            if column is not None and PyList_GET_SIZE(column) != n:
                raise ValueError("call count_columns first: columns differ in length from out")
        for i in range(n):
            for k in range(self._n_fields):
                column = <list>PyList_GET_ITEM(present, k)
                self._values[k] = PyList_GET_ITEM(column, i) if column is not None else NULL
            self._row(i, self._row_buffer, &raw[i, 0] if raw is not None else NULL, True)
            for k in range(self.width):
                out[i, k] = <real>self._row_buffer[k]
        return n


# `_row`'s two kinds of feature, as functions of the module rather than methods: no method table between them and the
# loop, so the compiler may inline them (callgrind: 1.8% more instructions a record than the single 99-line method).
cdef inline int _numeric(FeatureTransform t, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, double* out,
                         double* raw, Py_ssize_t raw_slot) except -1:
    """A number, through its steps (log1p, clip, standardize, scale), as is or into its bucket."""
    cdef double x
    cdef Py_ssize_t k, slot
    cdef Read read = <Read>t._number(i, f, ptr, columnar, &x)
    if raw_slot >= 0 and read == READ_OK:
        raw[raw_slot] = x
    if read == READ_MISSING:
        if not f.has_impute:
            t._fail(i, f.field, columnar, "missing required field (a number)")
        x = f.impute_number
    for k in range(f.ops.shape[0]):
        if f.ops[k] == OP_LOG1P:
            x = log1p(x)
        elif f.ops[k] == OP_CLIP:
            if x < f.op_a[k]:
                x = f.op_a[k]
            if x > f.op_b[k]:
                x = f.op_b[k]
        elif f.ops[k] == OP_STANDARDIZE:
            x = (x - f.op_a[k]) / f.op_b[k]
        else:
            x = x * f.op_a[k]
            x = x + f.op_b[k]
    if f.kind == NUMBER:
        out[0] = x
        return 0
    if not isfinite(x):
        t._fail(i, f.field, columnar, f"value became {x!r} before bucketizing ({f.name!r})")
    slot = _bucket(x, f.edges)
    if f.kind == BUCKET_ORDINAL:
        out[0] = slot
        return 0
    for k in range(f.width):
        out[k] = 0
    out[slot] = 1
    return 0

cdef inline int _categorical(FeatureTransform t, Py_ssize_t i, Feature f, PyObject* ptr, bint columnar, double* out,
                             double* raw, Py_ssize_t raw_slot) except -1:
    """A category: hashed into buckets, or looked up in its vocabulary (ordinal value or one-hot column)."""
    cdef Py_ssize_t k, slot, size
    cdef PyObject* category
    cdef PyObject* found
    cdef const char* utf8 = NULL
    cdef int32_t h
    cdef Read read = <Read>t._category(i, f, ptr, columnar, &category)
    if read == READ_MISSING:
        if not f.has_impute:
            t._fail(i, f.field, columnar, "missing required field (a category)")
        category = <PyObject*>f.impute_category
    if f.kind >= HASH_ORDINAL:
        try:
            utf8 = PyUnicode_AsUTF8AndSize(<object>category, &size)
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 bytes to hash
            t._fail(i, f.field, columnar, f"expected a string of Unicode characters, got "
                                             f"{shown(<object>category)}")
        h = murmurhash3_32(<const unsigned char*>utf8, size, 0)
        slot = _hash_bucket(h, f.buckets)
        if f.kind == HASH_ORDINAL:
            out[0] = slot
            return 0
        for k in range(f.width):
            out[k] = 0
        out[slot] = f.negative_sign if h < 0 else 1.0
        return 0
    found = PyDict_GetItem(f.lookup, <object>category)
    if found == NULL:
        if f.unknown == UNKNOWN_ERROR:
            known = list(f.lookup)
            known_shown = ", ".join(repr(v) for v in known[:20]) + (", ..." if len(known) > 20 else "")
            t._fail(i, f.field, columnar, f"unknown category {shown(<object>category)} (known: {known_shown})")
        slot = -1
    else:
        slot = PyLong_AsSsize_t(<object>found)
    if raw_slot >= 0 and read == READ_OK:
        raw[raw_slot] = slot
    if f.kind == CATEGORY_ORDINAL:
        out[0] = (f.values[slot] if slot >= 0 else f.unknown_value)
        return 0
    for k in range(f.width):
        out[k] = 0
    if slot >= 0:
        k = f.columns[slot]
    else:
        k = f.unknown_column if f.unknown == UNKNOWN_SLOT else -1
    if k >= 0:
        out[k] = 1
    return 0
