"""Duplicate keys in a JSON or msgpack body: neither orjson nor msgpack reports them (the last one wins), and a body
that says `"inputs"` twice, or a record that gives a field two values, is ambiguous. One pass over the bytes of a
body the parser has already accepted; keys are compared by a 64-bit FNV-1a hash first, then by their bytes.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

cdef enum:
    MAX_DEPTH = 1100  # orjson refuses past 1024 levels; msgpack's unpacker past 1024 too

cdef struct Level:
    bint is_map
    Py_ssize_t index       # array: the current element; map: the items read so far (keys and values)
    Py_ssize_t remaining   # msgpack: items left to read
    Py_ssize_t key_start   # map: the current key
    Py_ssize_t key_len
    Py_ssize_t keys_base   # where this map's keys begin in the key table


cdef struct KeyTable:
    uint64_t* hashes
    Py_ssize_t* starts
    Py_ssize_t* lengths
    Py_ssize_t count
    Py_ssize_t capacity


# Scratch space shared by every call: the functions hold the GIL throughout, and a body's scan must not pay for a
# 50 KB allocation. The key table shrinks back after a body with very many keys.
cdef Level _levels[MAX_DEPTH]
cdef KeyTable _table
_table.hashes = NULL
_table.starts = NULL
_table.lengths = NULL
_table.count = _table.capacity = 0
cdef enum:
    KEEP_CAPACITY = 4096

# JSON bytes the scan stops at; everything else (digits, letters, whitespace, ':') is skipped in a tight loop.
cdef unsigned char _special[256]
for _c in (ord("{"), ord("}"), ord("["), ord("]"), ord(","), ord('"')):
    _special[_c] = 1


# The scans' bulk, 16 bytes at a time where the compiler targets SSE2 (every x86-64), a byte at a time elsewhere:
# inside the counted array's elements (whose commas are not counted), the next bracket, brace or quote ('[' | 0x20
# is '{' and ']' | 0x20 is '}', and no other byte ORs to either: two compares find all four); and the commas up to
# the next quote.
cdef extern from *:
    """
    #if defined(__SSE2__) && defined(__GNUC__)
    #include <emmintrin.h>
    #endif
    static inline Py_ssize_t fs_next_nesting(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) {
    #if defined(__SSE2__) && defined(__GNUC__)
        const __m128i lower = _mm_set1_epi8(0x20), open_ = _mm_set1_epi8('{'), close_ = _mm_set1_epi8('}'),
                      quote = _mm_set1_epi8('"');
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i*)(s + i));
            __m128i folded = _mm_or_si128(v, lower);
            int mask = _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(folded, open_), _mm_cmpeq_epi8(folded, close_)),
                _mm_cmpeq_epi8(v, quote)));
            if (mask) return i + __builtin_ctz((unsigned)mask);
        }
    #endif
        for (; i < n; i++) {
            unsigned char c = s[i] | 0x20;
            if (c == '{' || c == '}' || s[i] == '"') return i;
        }
        return n;
    }
    static inline Py_ssize_t fs_commas_to_quote(const unsigned char* s, Py_ssize_t i, Py_ssize_t n,
                                                Py_ssize_t* commas) {
    #if defined(__SSE2__) && defined(__GNUC__)
        const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"');
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i*)(s + i));
            unsigned q = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote));
            unsigned c = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma));
            if (q) {
                unsigned at = (unsigned)__builtin_ctz(q);
                *commas += __builtin_popcount(c & ((1u << at) - 1));
                return i + at;
            }
            *commas += __builtin_popcount(c);
        }
    #endif
        for (; i < n; i++) {
            if (s[i] == '"') return i;
            *commas += s[i] == ',';
        }
        return n;
    }
    """
    Py_ssize_t fs_next_nesting(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil
    Py_ssize_t fs_commas_to_quote(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t* commas) noexcept nogil


cdef void _release_table() noexcept:
    global _table
    _table.count = 0
    if _table.capacity > KEEP_CAPACITY:
        PyMem_Free(_table.hashes)
        PyMem_Free(_table.starts)
        PyMem_Free(_table.lengths)
        _table.hashes = NULL
        _table.starts = NULL
        _table.lengths = NULL
        _table.capacity = 0


cdef inline Py_ssize_t _string_end(const unsigned char* body, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    """The index of the quote closing a JSON string that begins at `start`, or -1: the first quote not escaped
    (escapes are rare, so the search jumps quote to quote)."""
    cdef const unsigned char* end
    cdef Py_ssize_t i = start, k
    while True:
        end = <const unsigned char*>memchr(body + i, b'"', n - i)
        if end == NULL:
            return -1
        i = end - body
        k = i - 1
        while k >= start and body[k] == b'\\':
            k -= 1
        if (i - 1 - k) % 2 == 0:
            return i
        i += 1


cdef inline uint64_t _fnv(const unsigned char* data, Py_ssize_t n, unsigned char tag) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL ^ tag
    cdef Py_ssize_t k
    for k in range(n):
        h = (h ^ data[k]) * 1099511628211ULL
    return h


cdef int _grow(KeyTable* t) except -1:
    cdef Py_ssize_t capacity = t.capacity * 2 if t.capacity else 64
    cdef void* h = PyMem_Realloc(t.hashes, capacity * sizeof(uint64_t))
    if h == NULL:
        raise MemoryError()
    t.hashes = <uint64_t*>h
    h = PyMem_Realloc(t.starts, capacity * sizeof(Py_ssize_t))
    if h == NULL:
        raise MemoryError()
    t.starts = <Py_ssize_t*>h
    h = PyMem_Realloc(t.lengths, capacity * sizeof(Py_ssize_t))
    if h == NULL:
        raise MemoryError()
    t.lengths = <Py_ssize_t*>h
    t.capacity = capacity
    return 0


cdef int _add_key(KeyTable* t, const unsigned char* body, Py_ssize_t base, Py_ssize_t start, Py_ssize_t n,
                  unsigned char tag) except -1:
    """1 when the map whose keys begin at `base` already has this key, else records it and returns 0."""
    cdef uint64_t h = _fnv(body + start, n, tag)
    cdef Py_ssize_t k
    for k in range(base, t.count):
        if t.hashes[k] == h and t.lengths[k] == n and memcmp(body + t.starts[k], body + start, n) == 0:
            return 1
    if t.count == t.capacity:
        _grow(t)
    t.hashes[t.count] = h
    t.starts[t.count] = start
    t.lengths[t.count] = n
    t.count += 1
    return 0


cdef str _text(const unsigned char* body, Py_ssize_t start, Py_ssize_t n):
    return (<bytes>body[start:start + n]).decode("utf-8", "replace")


cdef str _path(const unsigned char* body, Level* levels, Py_ssize_t depth):
    """The path of the innermost map: the selector each enclosing container holds."""
    parts = ["$"]
    cdef Py_ssize_t d
    for d in range(depth - 1):
        if levels[d].is_map:
            parts.append("." + _text(body, levels[d].key_start, levels[d].key_len))
        else:
            parts.append(f"[{levels[d].index}]")
    return "".join(parts)


def json_duplicate_key(const unsigned char[::1] data):
    """(key, path of its object) for the first key repeated within one object of a valid JSON text; None when
    there is none; True when a key has escapes and the bytes alone cannot tell (the caller checks slowly)."""
    cdef Py_ssize_t n = data.shape[0], i = 0, start, depth = 0
    if n == 0:
        return None
    cdef const unsigned char* body = &data[0]
    cdef unsigned char c
    cdef bint expect_key = False
    cdef Level* levels = _levels
    cdef KeyTable* table = &_table
    try:
        while i < n:
            c = body[i]
            if not _special[c]:
                i += 1
                continue
            if c == b'"':
                start = i + 1
                i = _string_end(body, start, n)
                if i < 0:
                    return None
                if expect_key and depth:
                    if memchr(body + start, b'\\', i - start) != NULL:
                        return True
                    levels[depth - 1].key_start, levels[depth - 1].key_len = start, i - start
                    if _add_key(table, body, levels[depth - 1].keys_base, start, i - start, 0):
                        return _text(body, start, i - start), _path(body, levels, depth)
                    expect_key = False
                i += 1
            elif c == b'{' or c == b'[':
                if depth == MAX_DEPTH:
                    return None  # the parser has refused deeper bodies already
                levels[depth].is_map = c == b'{'
                levels[depth].index = 0
                levels[depth].key_start = levels[depth].key_len = 0
                levels[depth].keys_base = table.count
                depth += 1
                expect_key = c == b'{'
                i += 1
            elif c == b'}' or c == b']':
                if depth == 0:
                    return None
                depth -= 1
                table.count = levels[depth].keys_base
                expect_key = False
                i += 1
            else:  # ','
                if depth:
                    levels[depth - 1].index += 1
                    expect_key = levels[depth - 1].is_map
                i += 1
        return None
    finally:
        _release_table()


cdef inline Py_ssize_t _be(const unsigned char* p, int size) noexcept nogil:
    cdef Py_ssize_t v = 0
    cdef int k
    for k in range(size):
        v = (v << 8) | p[k]
    return v


def msgpack_duplicate_key(const unsigned char[::1] data):
    """(key, path of its map) for the first key repeated within one map of a valid msgpack body; None when there
    is none. Keys are strings or bytes (the decoder refuses others); a string and bytes of the same content differ."""
    cdef Py_ssize_t n = data.shape[0], i = 0, depth = 0, items, payload, head
    if n == 0:
        return None
    cdef const unsigned char* body = &data[0]
    cdef unsigned char c, tag
    cdef bint container, is_map, is_key
    cdef Level* levels = _levels
    cdef KeyTable* table = &_table
    try:
        while i < n:
            c = body[i]
            container = is_map = False
            items = payload = 0
            head = 1
            tag = 0
            if c <= 0x7f or c >= 0xe0 or c == 0xc0 or c == 0xc2 or c == 0xc3:
                pass
            elif c <= 0x8f:
                container, is_map, items = True, True, c & 0x0f
            elif c <= 0x9f:
                container, items = True, c & 0x0f
            elif c <= 0xbf:
                payload, tag = c & 0x1f, 1
            elif c == 0xc4 or c == 0xc5 or c == 0xc6:
                head = 1 + (1 << (c - 0xc4))
                if i + head > n:
                    return None
                payload, tag = _be(body + i + 1, head - 1), 2
            elif c == 0xc7 or c == 0xc8 or c == 0xc9:
                head = 1 + (1 << (c - 0xc7)) + 1
                if i + head > n:
                    return None
                payload = _be(body + i + 1, head - 2)
            elif c == 0xca:
                payload = 4
            elif c == 0xcb:
                payload = 8
            elif 0xcc <= c <= 0xcf:
                payload = 1 << (c - 0xcc)
            elif 0xd0 <= c <= 0xd3:
                payload = 1 << (c - 0xd0)
            elif 0xd4 <= c <= 0xd8:
                payload = 1 + (1 << (c - 0xd4))
            elif 0xd9 <= c <= 0xdb:
                head = 1 + (1 << (c - 0xd9))
                if i + head > n:
                    return None
                payload, tag = _be(body + i + 1, head - 1), 1
            elif c == 0xdc or c == 0xdd or c == 0xde or c == 0xdf:
                head = 3 if c == 0xdc or c == 0xde else 5
                if i + head > n:
                    return None
                container, is_map, items = True, c >= 0xde, _be(body + i + 1, head - 1)
            else:
                return None  # 0xc1 is never used; the decoder has refused it
            if payload < 0 or i + head + payload > n:
                return None
            is_key = depth > 0 and levels[depth - 1].is_map and levels[depth - 1].index % 2 == 0
            if is_key and tag:
                levels[depth - 1].key_start, levels[depth - 1].key_len = i + head, payload
                if _add_key(table, body, levels[depth - 1].keys_base, i + head, payload, tag):
                    return (_text(body, i + head, payload) if tag == 1 else body[i + head:i + head + payload],
                            _path(body, levels, depth))
            i += head + payload
            if container and items > 0:
                if depth == MAX_DEPTH:
                    return None
                levels[depth].is_map = is_map
                levels[depth].index = 0
                levels[depth].remaining = items * 2 if is_map else items
                levels[depth].key_start = levels[depth].key_len = 0
                levels[depth].keys_base = table.count
                depth += 1
                continue
            # An item is complete: count it in its container, closing every container it completes.
            while depth:
                levels[depth - 1].index += 1
                levels[depth - 1].remaining -= 1
                if levels[depth - 1].remaining > 0:
                    break
                depth -= 1
                table.count = levels[depth].keys_base
        return None
    finally:
        _release_table()


def json_top_array_length(const unsigned char[::1] data, bytes key):
    """The number of elements of the array under `key` in a JSON object at the top level, counted without parsing
    (so a body with too many rows is refused before its numbers become objects); -1 when there is none or the text
    is not an object of that shape. Scans until that array ends."""
    if data.shape[0] == 0:
        return -1
    return _top_array_length(&data[0], data.shape[0], key, len(key))


cdef Py_ssize_t _top_array_length(const unsigned char* body, Py_ssize_t n, const char* wanted,
                                  Py_ssize_t m) noexcept nogil:
    # Most bytes are digits, dots, spaces and the commas between a row's values: the loop's common path is one
    # table lookup, and inside the counted array's elements a vector search for the next bracket or quote.
    cdef Py_ssize_t i = 0, j, depth = 0, start, count = 0
    cdef unsigned char c
    cdef bint expect_key = False, matched = False, counting = False, inside = False
    while i < n:
        if inside:
            i = fs_next_nesting(body, i, n)
            if i == n:
                break
        c = body[i]
        if not _special[c]:
            i += 1
            continue
        if c == b'"':
            start = i + 1
            i = _string_end(body, start, n)
            if i < 0:
                return -1
            if expect_key and depth == 1:
                matched = i - start == m and memcmp(body + start, wanted, m) == 0
                expect_key = False
        elif c == b'{' or c == b'[':
            if depth == 0 and c != b'{':
                return -1
            if depth == 1 and matched and c == b'[':
                j = i + 1
                while j < n and body[j] <= 32:  # whitespace
                    j += 1
                if j < n and body[j] == b']':
                    return 0
                counting, count = True, 0
            depth += 1
            expect_key = c == b'{' and depth == 1
            inside = counting and depth > 2
        elif c == b'}' or c == b']':
            depth -= 1
            if counting and depth == 1:
                return count + 1
            if depth <= 0:
                return -1
            inside = counting and depth > 2
        elif counting and depth == 2:  # ','
            count += 1
        elif depth == 1:
            expect_key = True
            matched = False
        i += 1
    return -1


def json_separator_count(const unsigned char[::1] data):
    """The number of commas outside strings in a JSON text, counted without parsing. Every element of an array and
    every member of an object but the last is followed by one: a body with more commas than a model takes values,
    plus room for its keys, holds more values than it takes. -1 when a string is not closed."""
    cdef Py_ssize_t n = data.shape[0], i = 0, count = 0
    if n == 0:
        return 0
    cdef const unsigned char* body = &data[0]
    while True:
        i = fs_commas_to_quote(body, i, n, &count)
        if i == n:
            return count
        i = _string_end(body, i + 1, n)
        if i < 0:
            return -1
        i += 1
