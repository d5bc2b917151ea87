# cython: language_level=3
"""A ring of answered rows kept by request id, in memory fixed by its capacity: what a label joins later. Writing a
request's rows frees the requests whose rows it writes over; their ids go into a Bloom filter of fixed size (two
generations), so a label that comes too late is told apart from an id never seen. `put` is the request path's step:
a few hundred nanoseconds, whatever the traffic."""

cimport numpy as cnp
from cpython.object cimport PyObject_Hash
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

import numpy as np

cnp.import_array()

# Rows allocated at first, doubled as they fill, up to the capacity: a server of thousands of models pays for each
# model's answers as they come, not for its budget.
cdef Py_ssize_t FIRST_SIZE = 64
LABEL_NOT_INTEGER = -3  # what `keep` leaves to its caller
cdef int PROBES = 4  # bits a fallen id sets in the filter: at 9.6 bits an id, 1.4% false positives


cdef class AnswerRing:
    """Rows of `width` float32 scores with a version, an int64 label, and per request its first row's id, time and
    row count. The arrays are allocated as the ring fills (doubling), up to `capacity` rows."""

    cdef readonly object versions, times, labels, scores, rows
    cdef readonly list ids
    cdef readonly dict where
    cdef readonly Py_ssize_t size, capacity, width, next, longest
    cdef readonly long long fell_out
    cdef int32_t* _versions
    cdef double* _times
    cdef int64_t* _labels
    cdef float* _scores
    cdef int32_t* _rows
    cdef bytearray _current, _older
    cdef readonly Py_ssize_t filter_bits, filter_capacity
    cdef Py_ssize_t _filter_count

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t width, Py_ssize_t filter_bytes):
        self.capacity = max(1, capacity)
        self.width = max(0, width)
        self.where = {}
        self.ids = []
        self.size = self.next = 0
        self.longest = 1
        self.fell_out = 0
        half = max(8, filter_bytes // 2)
        self.filter_bits = half * 8
        self.filter_capacity = max(1, <Py_ssize_t>(self.filter_bits / 9.6))  # ids a generation holds
        self._current = bytearray()  # (allocated when the first answer falls out: most models never fill)
        self._older = bytearray()
        self._filter_count = 0
        self._grow(min(self.capacity, FIRST_SIZE))

    @property
    def filter_bytes(self) -> int:
        return len(self._current) + len(self._older)

    cdef _grow(self, Py_ssize_t size):
        cdef Py_ssize_t old = self.size
        versions, times = np.zeros(size, np.int32), np.zeros(size, np.float64)
        labels, rows = np.zeros(size, np.int64), np.zeros(size, np.int32)
        scores = np.zeros((size, self.width), np.float32)
        if old:
            versions[:old], times[:old], labels[:old], rows[:old] = self.versions, self.times, self.labels, self.rows
            scores[:old] = self.scores
        self.ids.extend([None] * (size - old))
        self.versions, self.times, self.labels, self.scores, self.rows = versions, times, labels, scores, rows
        self._versions = <int32_t*>cnp.PyArray_DATA(versions)
        self._times = <double*>cnp.PyArray_DATA(times)
        self._labels = <int64_t*>cnp.PyArray_DATA(labels)
        self._scores = <float*>cnp.PyArray_DATA(scores)
        self._rows = <int32_t*>cnp.PyArray_DATA(rows)
        self.size = size

    cdef inline uint64_t _hash(self, object key) except? 0:
        return <uint64_t>PyObject_Hash(key)

    cdef inline Py_ssize_t _probe(self, uint64_t h, int i) noexcept:
        """The filter's i-th bit for a key of hash h (double hashing: four probes from one 64-bit hash)."""
        cdef uint64_t step = (h >> 32) | 1
        return <Py_ssize_t>(((h & 0xFFFFFFFF) + <uint64_t>i * step * <uint64_t>0x9E3779B1) % <uint64_t>self.filter_bits)

    cdef _remember(self, object key):
        cdef Py_ssize_t p
        cdef int i
        cdef unsigned char* bits
        cdef uint64_t h
        if not self._current:
            self._current = bytearray(self.filter_bits // 8)
            self._older = bytearray(self.filter_bits // 8)
        if self._filter_count >= self.filter_capacity:
            self._current, self._older = self._older, self._current
            memset(<unsigned char*>self._current, 0, len(self._current))
            self._filter_count = 0
        h = self._hash(key)
        bits = <unsigned char*>self._current
        for i in range(PROBES):
            p = self._probe(h, i)
            bits[p >> 3] |= 1 << (p & 7)
        self._filter_count += 1

    def fell_out_recently(self, str key) -> bool:
        """Whether `key` was dropped from the ring (among about the last `filter_capacity` dropped); an id never
        dropped is found here with a probability of about 1.4% (per full generation, two are looked in)."""
        cdef Py_ssize_t p
        cdef int i
        cdef bint found
        cdef unsigned char* bits
        cdef uint64_t h
        if not self._current:
            return False
        h = self._hash(key)
        for generation in (self._current, self._older):
            bits = <unsigned char*>(<bytearray>generation)
            found = True
            for i in range(PROBES):
                p = self._probe(h, i)
                if not bits[p >> 3] & (1 << (p & 7)):
                    found = False
                    break
            if found:
                return True
        return False

    cdef _drop(self, Py_ssize_t slot):
        key = self.ids[slot]
        self.ids[slot] = None
        self.where.pop(key, None)
        self._remember(key)
        self.fell_out += 1

    cdef _free(self, Py_ssize_t start, Py_ssize_t n):
        """Drop the requests with rows in [start, start + n): they are about to be written over."""
        cdef Py_ssize_t slot, back
        cdef list ids = self.ids
        for slot in range(start, start + n):
            if ids[slot] is not None:
                self._drop(slot)
        back = start - 1  # a request of the last lap starting before `start` may reach into it
        while back >= 0 and back > start - self.longest and ids[back] is None:
            back -= 1
        if back >= 0 and ids[back] is not None and back + self._rows[back] > start:
            self._drop(back)

    cpdef Py_ssize_t keep(self, str key, int version, dict outputs, double now) except -2:
        """`put` from a version's outputs as the session gives them: its `label` (integers) and its `probabilities`
        (or `prediction`, or `variable`: a regressor's). Returns as `put` does, or LABEL_NOT_INTEGER for labels
        of another kind (text: coded by the caller, then `put`)."""
        label = outputs.get("label")
        if label is not None and (type(label) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>label) not in (
                cnp.NPY_INT64, cnp.NPY_INT32, cnp.NPY_LONGLONG, cnp.NPY_BOOL)):
            return LABEL_NOT_INTEGER
        scores = outputs.get("probabilities")
        if scores is None:
            scores = outputs.get("prediction")
            if scores is None:
                scores = outputs.get("variable")
        if scores is not None and type(scores) is not cnp.ndarray:
            return LABEL_NOT_INTEGER
        return self.put(key, version, label, scores, now)

    cpdef Py_ssize_t put(self, str key, int version, cnp.ndarray label, cnp.ndarray scores, double now) except -2:
        """Keep a request's rows under `key`: `label` int64 (n,) or None, `scores` float32 C-contiguous (n, k) or
        None. Returns its first row, or -1 when it has no rows or more than the ring holds."""
        cdef Py_ssize_t n, start, end, k, i, j, copied
        cdef float* source
        cdef int64_t* label_data
        if label is not None:
            if cnp.PyArray_TYPE(label) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(label):
                label = np.ascontiguousarray(label, dtype=np.int64)
            n = cnp.PyArray_DIM(label, 0)
        elif scores is not None:
            n = cnp.PyArray_DIM(scores, 0)
        else:
            return -1
        if scores is not None and (cnp.PyArray_TYPE(scores) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(scores) != 2
                                   or not cnp.PyArray_IS_C_CONTIGUOUS(scores)):
            scores = np.ascontiguousarray(np.asarray(scores, dtype=np.float32).reshape(n, -1))
        if n == 0 or n > self.capacity or (scores is not None and cnp.PyArray_DIM(scores, 0) != n):
            return -1
        if n > self.longest:
            self.longest = n
        start = self.next
        if start + n > self.size:
            if self.size < self.capacity:
                self._grow(min(self.capacity, max(self.size * 2, start + n)))
            if start + n > self.size:
                start = 0  # wrap: the tail too short for these rows stays unused this lap
        self._free(start, n)
        old = self.where.pop(key, None)  # an id sent twice: the later answer is kept
        if old is not None:
            self.ids[<Py_ssize_t>old] = None
        self.where[key] = start
        self.ids[start] = key
        self._rows[start] = <int32_t>n
        self._times[start] = now
        end = start + n
        for i in range(start, end):
            self._versions[i] = version
        if label is not None:
            label_data = <int64_t*>cnp.PyArray_DATA(label)
            memcpy(&self._labels[start], label_data, n * sizeof(int64_t))
        if scores is not None and self.width:
            k = cnp.PyArray_DIM(scores, 1)
            source = <float*>cnp.PyArray_DATA(scores)
            if k == self.width:
                memcpy(&self._scores[start * self.width], source, n * k * sizeof(float))
            else:  # (a version with another number of classes than the ring was sized for)
                copied = min(k, self.width)
                memset(&self._scores[start * self.width], 0, n * self.width * sizeof(float))
                for i in range(n):
                    for j in range(copied):
                        self._scores[(start + i) * self.width + j] = source[i * k + j]
        self.next = end
        return start
