"""One pass over a request body's bytes: the keys a JSON or msgpack object repeats (after the decoder accepted it),
and how many rows or values it holds (before the decoder reads it: `json_top_array_length`, `json_value_bound`,
`msgpack_item_count`, which refuse a body too big for the model without making an object of it).

Duplicate keys in a JSON or msgpack body: neither orjson nor msgpack reports them (the last one wins), and a body
that says `"inputs"` twice, or a record that gives a field two values, is ambiguous. One pass over the bytes of a
body the parser has already accepted. The keys of the maps open at a point form a stack; a hash index over it, sized
to twice the keys it holds, finds a key's earlier twin in its own map in constant expected time, so the scan is linear
in the body however many keys one map has. The hash is CPython's keyed one (SipHash, seeded per process): a client
cannot craft keys that collide. JSON keys with escapes are compared by what they spell, unescaped here.
"""

from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x030E0000
    #define fs_hash_bytes(p, n) ((uint64_t)Py_HashBuffer((p), (n)))
    #else
    #define fs_hash_bytes(p, n) ((uint64_t)_Py_HashBytes((p), (n)))
    #endif
    """
    uint64_t fs_hash_bytes(const void* p, Py_ssize_t n) noexcept

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
    # The keys of the open maps, outermost first: a map's keys are popped when it closes.
    uint64_t* hashes
    Py_ssize_t* starts     # >= 0: where the key is in the body; < 0: -1 - where it is in `unescaped`
    Py_ssize_t* codes      # length << 2 | tag: a string and bytes of the same content differ
    Py_ssize_t* slots      # where each key sits in `index`
    Py_ssize_t count
    Py_ssize_t capacity
    # Open addressing with linear probing over 2 x capacity slots: a key's number, or -1. Keys leave in the reverse
    # of the order they came (a map's keys are the top of the stack), and emptying the slot of the last one in
    # undoes its insertion exactly, so no tombstones are needed.
    Py_ssize_t* index
    unsigned char* unescaped   # JSON keys with escapes, as the text they spell (UTF-8)
    Py_ssize_t unescaped_len
    Py_ssize_t unescaped_capacity


cdef Level _levels[MAX_DEPTH]
cdef KeyTable _table
_table.hashes = NULL
_table.starts = NULL
_table.codes = NULL
_table.slots = NULL
_table.index = NULL
_table.unescaped = NULL
_table.count = _table.capacity = _table.unescaped_len = _table.unescaped_capacity = 0
cdef enum:
    KEEP_CAPACITY = 4096  # keys
    KEEP_UNESCAPED = 65536  # bytes

# JSON bytes the scan stops at; everything else (digits, letters, whitespace, ':') is skipped in a tight loop.
cdef unsigned char _special[256]
for _c in (ord("{"), ord("}"), ord("["), ord("]"), ord(","), ord('"')):
    _special[_c] = 1


# The scans' bulk, 16 bytes at a time where the compiler targets SSE2 (every x86-64), a byte at a time elsewhere:
# inside the counted array's elements (whose commas are not counted), the next bracket, brace or quote ('[' | 0x20
# is '{' and ']' | 0x20 is '}', and no other byte ORs to either: two compares find all four); and the commas and
# opening brackets and braces up to the next quote.
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
    static inline Py_ssize_t fs_values_to_quote(const unsigned char* s, Py_ssize_t i, Py_ssize_t n,
                                                Py_ssize_t* values) {
    #if defined(__SSE2__) && defined(__GNUC__)
        const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"'), lower = _mm_set1_epi8(0x20),
                      open_ = _mm_set1_epi8('{');
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i*)(s + i));
            unsigned q = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote));
            unsigned c = (unsigned)_mm_movemask_epi8(_mm_or_si128(
                _mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(_mm_or_si128(v, lower), open_)));
            if (q) {
                unsigned at = (unsigned)__builtin_ctz(q);
                *values += __builtin_popcount(c & ((1u << at) - 1));
                return i + at;
            }
            *values += __builtin_popcount(c);
        }
    #endif
        for (; i < n; i++) {
            if (s[i] == '"') return i;
            *values += s[i] == ',' || (s[i] | 0x20) == '{';
        }
        return n;
    }
    """
    Py_ssize_t fs_next_nesting(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil
    Py_ssize_t fs_values_to_quote(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t* values) noexcept nogil


cdef void _pop_keys(KeyTable* t, Py_ssize_t base) noexcept:
    """Forget the keys from number `base` on (a map's own, when it closes), last first."""
    cdef Py_ssize_t e
    for e in range(t.count - 1, base - 1, -1):
        t.index[t.slots[e]] = -1
    t.count = base


cdef void _release_table() noexcept:
    global _table
    _pop_keys(&_table, 0)
    _table.unescaped_len = 0
    if _table.capacity > KEEP_CAPACITY:
        PyMem_Free(_table.hashes)
        PyMem_Free(_table.starts)
        PyMem_Free(_table.codes)
        PyMem_Free(_table.slots)
        PyMem_Free(_table.index)
        _table.hashes = NULL
        _table.starts = NULL
        _table.codes = NULL
        _table.slots = NULL
        _table.index = NULL
        _table.capacity = 0
    if _table.unescaped_capacity > KEEP_UNESCAPED:
        PyMem_Free(_table.unescaped)
        _table.unescaped = NULL
        _table.unescaped_capacity = 0


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


cdef void* _resize(void* block, Py_ssize_t size) except NULL:
    cdef void* grown = PyMem_Realloc(block, size)
    if grown == NULL:
        raise MemoryError()
    return grown


cdef inline Py_ssize_t _free_slot(KeyTable* t, uint64_t h) noexcept nogil:
    cdef Py_ssize_t mask = 2 * t.capacity - 1, s = <Py_ssize_t>(h & <uint64_t>mask)
    while t.index[s] >= 0:
        s = (s + 1) & mask
    return s


cdef int _grow(KeyTable* t) except -1:
    """Twice the room, and the index rebuilt by inserting the keys again in their order."""
    cdef Py_ssize_t capacity = t.capacity * 2 if t.capacity else 64, e, s
    t.hashes = <uint64_t*>_resize(t.hashes, capacity * sizeof(uint64_t))
    t.starts = <Py_ssize_t*>_resize(t.starts, capacity * sizeof(Py_ssize_t))
    t.codes = <Py_ssize_t*>_resize(t.codes, capacity * sizeof(Py_ssize_t))
    t.slots = <Py_ssize_t*>_resize(t.slots, capacity * sizeof(Py_ssize_t))
    t.index = <Py_ssize_t*>_resize(t.index, 2 * capacity * sizeof(Py_ssize_t))
    t.capacity = capacity
    for s in range(2 * capacity):
        t.index[s] = -1
    for e in range(t.count):
        s = _free_slot(t, t.hashes[e])
        t.index[s] = e
        t.slots[e] = s
    return 0


cdef inline const unsigned char* _key_bytes(KeyTable* t, const unsigned char* body, Py_ssize_t e) noexcept nogil:
    return body + t.starts[e] if t.starts[e] >= 0 else t.unescaped + (-1 - t.starts[e])


cdef int _add_key(KeyTable* t, const unsigned char* body, Py_ssize_t base, Py_ssize_t start, Py_ssize_t n,
                  unsigned char tag) except -1:
    """1 when the map whose keys begin at number `base` already has this key, else records it and returns 0. `start`
    is where the key is in the body, or -1 - where it is in t.unescaped."""
    if t.count == t.capacity:
        _grow(t)
    cdef const unsigned char* key = body + start if start >= 0 else t.unescaped + (-1 - start)
    cdef uint64_t h = fs_hash_bytes(key, n)
    cdef Py_ssize_t code = n << 2 | tag, mask = 2 * t.capacity - 1, s = <Py_ssize_t>(h & <uint64_t>mask), e
    while True:
        e = t.index[s]
        if e < 0:
            break
        # Keys of enclosing maps share the index: only this map's (numbered from `base`) are its twins.
        if e >= base and t.hashes[e] == h and t.codes[e] == code and memcmp(_key_bytes(t, body, e), key, n) == 0:
            return 1
        s = (s + 1) & mask
    e = t.count
    t.index[s] = e
    t.slots[e] = s
    t.hashes[e] = h
    t.starts[e] = start
    t.codes[e] = code
    t.count += 1
    return 0


cdef inline int _hex(unsigned char c) noexcept nogil:
    if c >= c'0' and c <= c'9':
        return c - c'0'
    c |= 0x20
    return c - c'a' + 10 if c >= c'a' and c <= c'f' else -1


cdef inline long _hex4(const unsigned char* s) noexcept nogil:
    cdef long v = 0
    cdef int k, d
    for k in range(4):
        d = _hex(s[k])
        if d < 0:
            return -1
        v = v << 4 | d
    return v


cdef Py_ssize_t _unescape(const unsigned char* s, Py_ssize_t n, unsigned char* out) noexcept nogil:
    """The text a JSON string's bytes (without quotes) spell, written to `out` as UTF-8 (never longer than the
    escaped form); its length. A surrogate pair is one code point, as decoders read it; the parser has refused lone
    surrogates and bad escapes, and whatever is not a valid escape is copied as it is."""
    cdef Py_ssize_t i = 0, j = 0
    cdef long cp, low
    cdef unsigned char c
    while i < n:
        c = s[i]
        if c != b'\\' or i + 1 >= n:
            out[j] = c
            i += 1
            j += 1
            continue
        c = s[i + 1]
        if c != b'u':
            out[j] = (b'\b' if c == b'b' else b'\f' if c == b'f' else b'\n' if c == b'n' else b'\r' if c == b'r'
                      else b'\t' if c == b't' else c)
            i += 2
            j += 1
            continue
        cp = _hex4(s + i + 2) if i + 6 <= n else -1
        if cp < 0:
            out[j] = s[i]
            i += 1
            j += 1
            continue
        i += 6
        if 0xD800 <= cp < 0xDC00 and i + 6 <= n and s[i] == b'\\' and s[i + 1] == b'u':
            low = _hex4(s + i + 2)
            if 0xDC00 <= low < 0xE000:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        if cp < 0x80:
            out[j] = <unsigned char>cp
            j += 1
        elif cp < 0x800:
            out[j] = <unsigned char>(0xC0 | cp >> 6)
            out[j + 1] = <unsigned char>(0x80 | cp & 0x3F)
            j += 2
        elif cp < 0x10000:
            out[j] = <unsigned char>(0xE0 | cp >> 12)
            out[j + 1] = <unsigned char>(0x80 | cp >> 6 & 0x3F)
            out[j + 2] = <unsigned char>(0x80 | cp & 0x3F)
            j += 3
        else:
            out[j] = <unsigned char>(0xF0 | cp >> 18)
            out[j + 1] = <unsigned char>(0x80 | cp >> 12 & 0x3F)
            out[j + 2] = <unsigned char>(0x80 | cp >> 6 & 0x3F)
            out[j + 3] = <unsigned char>(0x80 | cp & 0x3F)
            j += 4
    return j


cdef Py_ssize_t _keep_unescaped(KeyTable* t, const unsigned char* s, Py_ssize_t n, Py_ssize_t* length) except -2:
    """Unescapes a JSON key into t.unescaped; its start there, and its length in `length`."""
    cdef Py_ssize_t needed = t.unescaped_len + n, capacity
    if needed > t.unescaped_capacity:
        capacity = max(needed, 2 * t.unescaped_capacity, 1024)
        t.unescaped = <unsigned char*>_resize(t.unescaped, capacity)
        t.unescaped_capacity = capacity
    cdef Py_ssize_t at = t.unescaped_len
    length[0] = _unescape(s, n, t.unescaped + at)
    t.unescaped_len += length[0]
    return at


cdef str _text(const unsigned char* body, Py_ssize_t start, Py_ssize_t n, bint json):
    """A key as text; a JSON key with its escapes undone."""
    if not json or memchr(body + start, b'\\', n) == NULL:
        return (<bytes>body[start:start + n]).decode("utf-8", "replace")
    cdef bytearray out = bytearray(n)
    cdef Py_ssize_t length = _unescape(body + start, n, <unsigned char*>(<char*>out))
    return bytes(out[:length]).decode("utf-8", "replace")


cdef str _path(const unsigned char* body, Level* levels, Py_ssize_t depth, bint json):
    """The path of the innermost map: the selector each enclosing container holds."""
    parts = ["$"]
    cdef Py_ssize_t d
    for d in range(depth - 1):
        if levels[d].is_map:
            parts.append("." + _text(body, levels[d].key_start, levels[d].key_len, json))
        else:
            parts.append(f"[{levels[d].index}]")
    return "".join(parts)


def json_duplicate_key(const unsigned char[::1] data):
    """(key, path of its object) for the first key repeated within one object of a valid JSON text (keys compared
    by the text they spell, escapes undone); None when there is none."""
    cdef Py_ssize_t n = data.shape[0], i = 0, start, depth = 0, at, length
    cdef int found
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
                    levels[depth - 1].key_start, levels[depth - 1].key_len = start, i - start
                    if memchr(body + start, b'\\', i - start) == NULL:
                        found = _add_key(table, body, levels[depth - 1].keys_base, start, i - start, 0)
                    else:
                        at = _keep_unescaped(table, body + start, i - start, &length)
                        found = _add_key(table, body, levels[depth - 1].keys_base, -1 - at, length, 0)
                    if found:
                        return _text(body, start, i - start, True), _path(body, levels, depth, True)
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
                _pop_keys(table, levels[depth].keys_base)
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


cdef struct MpHead:
    Py_ssize_t head      # bytes of the item's head (type byte and lengths)
    Py_ssize_t payload   # bytes after the head that belong to the item itself (not a container's items)
    Py_ssize_t items     # a container's items (a map's pairs); 0 otherwise
    bint is_map
    unsigned char tag    # 1 a string, 2 bytes, 0 anything else


cdef inline int _mp_head(const unsigned char* body, Py_ssize_t i, Py_ssize_t n, MpHead* h) noexcept nogil:
    """The msgpack item whose head is at `i`; -1 when it runs past the body's end or is not msgpack."""
    cdef unsigned char c = body[i]
    h.head, h.payload, h.items, h.is_map, h.tag = 1, 0, 0, False, 0
    if c <= 0x7f or c >= 0xe0 or c == 0xc0 or c == 0xc2 or c == 0xc3:
        pass
    elif c <= 0x8f:
        h.is_map, h.items = True, c & 0x0f
    elif c <= 0x9f:
        h.items = c & 0x0f
    elif c <= 0xbf:
        h.payload, h.tag = c & 0x1f, 1
    elif c == 0xc4 or c == 0xc5 or c == 0xc6:
        h.head = 1 + (1 << (c - 0xc4))
        if i + h.head > n:
            return -1
        h.payload, h.tag = _be(body + i + 1, h.head - 1), 2
    elif c == 0xc7 or c == 0xc8 or c == 0xc9:
        h.head = 1 + (1 << (c - 0xc7)) + 1
        if i + h.head > n:
            return -1
        h.payload = _be(body + i + 1, h.head - 2)
    elif c == 0xca:
        h.payload = 4
    elif c == 0xcb:
        h.payload = 8
    elif 0xcc <= c <= 0xcf:
        h.payload = 1 << (c - 0xcc)
    elif 0xd0 <= c <= 0xd3:
        h.payload = 1 << (c - 0xd0)
    elif 0xd4 <= c <= 0xd8:
        h.payload = 1 + (1 << (c - 0xd4))
    elif 0xd9 <= c <= 0xdb:
        h.head = 1 + (1 << (c - 0xd9))
        if i + h.head > n:
            return -1
        h.payload, h.tag = _be(body + i + 1, h.head - 1), 1
    elif c == 0xdc or c == 0xdd or c == 0xde or c == 0xdf:
        h.head = 3 if c == 0xdc or c == 0xde else 5
        if i + h.head > n:
            return -1
        h.is_map, h.items = c >= 0xde, _be(body + i + 1, h.head - 1)
    else:
        return -1  # 0xc1 is never used
    if h.payload < 0 or i + h.head + h.payload > n:
        return -1
    return 0


def msgpack_item_count(const unsigned char[::1] data, Py_ssize_t stop):
    """The number of items in a msgpack body (each scalar, string, array and map, and each map key), counted from
    their heads without decoding, up to the first past `stop`: a body with more values than a model takes is refused
    before its values become objects. -1 when the body is not msgpack, or nested deeper than the decoder takes."""
    cdef Py_ssize_t n = data.shape[0], i = 0, count = 0, depth = 0
    cdef MpHead item
    cdef Level* levels = _levels
    while i < n and count <= stop:
        if _mp_head(&data[0], i, n, &item) < 0:
            return -1
        i += item.head + item.payload
        count += 1
        if item.items > 0:
            if depth == MAX_DEPTH:
                return -1
            levels[depth].remaining = item.items * 2 if item.is_map else item.items
            depth += 1
            continue
        while depth:  # an item is complete: close every container it completes
            levels[depth - 1].remaining -= 1
            if levels[depth - 1].remaining > 0:
                break
            depth -= 1
    return count


def msgpack_duplicate_key(const unsigned char[::1] data):
    """(key, path of its map) for the first key repeated within one map of a valid msgpack body; None when there
    is none. Keys are strings or bytes (the decoder refuses others); a string and bytes of the same content differ."""
    cdef Py_ssize_t n = data.shape[0], i = 0, depth = 0, payload, head
    if n == 0:
        return None
    cdef const unsigned char* body = &data[0]
    cdef unsigned char tag
    cdef bint is_key
    cdef MpHead item
    cdef Level* levels = _levels
    cdef KeyTable* table = &_table
    try:
        while i < n:
            if _mp_head(body, i, n, &item) < 0:
                return None
            head, payload, tag = item.head, item.payload, item.tag
            is_key = depth > 0 and levels[depth - 1].is_map and levels[depth - 1].index % 2 == 0
            if is_key and tag:
                levels[depth - 1].key_start, levels[depth - 1].key_len = i + head, payload
                if _add_key(table, body, levels[depth - 1].keys_base, i + head, payload, tag):
                    return (_text(body, i + head, payload, False) if tag == 1 else body[i + head:i + head + payload],
                            _path(body, levels, depth, False))
            i += head + payload
            if item.items > 0:
                if depth == MAX_DEPTH:
                    return None
                levels[depth].is_map = item.is_map
                levels[depth].index = 0
                levels[depth].remaining = item.items * 2 if item.is_map else item.items
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
                _pop_keys(table, levels[depth].keys_base)
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


def json_value_bound(const unsigned char[::1] data):
    """The commas and opening brackets and braces outside strings in a JSON text, counted without parsing: every
    element of an array and member of an object but the last is followed by a comma, and every array and object is
    a value of its own, so a text holds at most this many values plus one (a parser makes an object of each: 8 MiB
    of arrays nested 1,000 deep hold no comma). -1 when a string is not closed."""
    cdef Py_ssize_t n = data.shape[0], i = 0, count = 0
    if n == 0:
        return 0
    cdef const unsigned char* body = &data[0]
    while True:
        i = fs_values_to_quote(body, i, n, &count)
        if i == n:
            return count
        i = _string_end(body, i + 1, n)
        if i < 0:
            return -1
        i += 1
