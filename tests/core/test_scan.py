"""Duplicate-key detection in JSON and msgpack bodies, against the standard decoders' pair hooks."""

import json

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from fastserve._core.scan import (
    json_duplicate_key,
    json_top_array_length,
    json_value_bound,
    msgpack_duplicate_key,
    msgpack_item_count,
)

KEYS = st.sampled_from(["a", "b", "age", "inputs", "x y", "é", 'q"uote', "back\\slash", "{", "", "A", "\n", "😀"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
                    st.text(max_size=8), st.sampled_from(['"', "\\", "{}", "[,]", '\\"']))


def trees(leaves):
    """Values whose objects are lists of (key, value) pairs, so that keys may repeat."""
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(KEYS, inner), max_size=5).map(lambda pairs: ("obj", pairs))), max_leaves=25)


def to_json(value) -> str:
    if isinstance(value, tuple) and value[0] == "obj":
        # Keys spelled with escapes or not, by turns: the same key either way is a duplicate.
        return "{" + ",".join(json.dumps(k, ensure_ascii=i % 2 == 0) + ":" + to_json(v)
                              for i, (k, v) in enumerate(value[1])) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def to_msgpack(value) -> bytes:
    if isinstance(value, tuple) and value[0] == "obj":
        pairs = value[1]
        return _map_header(len(pairs)) + b"".join(
            msgpack.packb(k) + to_msgpack(v) for k, v in pairs)
    if isinstance(value, list):
        return _array_header(len(value)) + b"".join(to_msgpack(v) for v in value)
    return msgpack.packb(value)


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def has_duplicate(value) -> bool:
    if isinstance(value, tuple) and value[0] == "obj":
        keys = [k for k, _ in value[1]]
        return len(set(keys)) < len(keys) or any(has_duplicate(v) for _, v in value[1])
    if isinstance(value, list):
        return any(has_duplicate(v) for v in value)
    return False


@settings(max_examples=400, deadline=None)
@given(trees(SCALARS))
def test_json_agrees_with_the_structure(value):
    text = to_json(value).encode()
    json.loads(text)  # valid JSON
    found = json_duplicate_key(text)
    assert (found is not None) == has_duplicate(value), (text, found)


@settings(max_examples=400, deadline=None)
@given(trees(SCALARS))
def test_msgpack_agrees_with_the_structure(value):
    body = to_msgpack(value)
    msgpack.unpackb(body, strict_map_key=False)  # valid msgpack
    assert (msgpack_duplicate_key(body) is not None) == has_duplicate(value)


def test_paths_name_the_object_holding_the_duplicate():
    assert json_duplicate_key(b'{"records": [{"age": 1}, {"age": 2, "plan": "x", "age": 3}]}') == \
        ("age", "$.records[1]")
    assert json_duplicate_key(b'{"inputs": [[1]], "inputs": [[2]]}') == ("inputs", "$")
    assert json_duplicate_key(b'{"a": {"x": [0, {"k": 1, "k": 2}]}}') == ("k", "$.a.x[1]")
    body = b"\x81\xa7records\x92\x81\xa3age\x01\x82\xa3age\x02\xa3age\x03"
    assert msgpack_duplicate_key(body) == ("age", "$.records[1]")
    assert msgpack_duplicate_key(b"\x82\xa1a\x01\xc4\x01a\x02") is None  # a string and bytes are different keys


def test_json_keys_compare_by_the_text_they_spell():
    """Escapes are undone before keys compare: "\\u00e9" and "é" are one key, as every decoder reads them."""
    assert json_duplicate_key(b'{"a\\u00e9": 1, "a\xc3\xa9": 2}') == ("a\u00e9", "$")
    assert json_duplicate_key('{"x": {"\\ud83d\\ude00": 1, "😀": 2}}'.encode()) == ("😀", "$.x")
    assert json_duplicate_key(b'{"a\\"b": {"q\\n": 1, "q\\u000a": 2}}') == ("q\n", '$.a"b')
    assert json_duplicate_key(b'{"a\\\\": 1, "a\\u005c": 2}') == ("a\\", "$")
    assert json_duplicate_key(b'{"a\\\\": 1, "a\\u005d": 2, "\\/": 3, "/": 4}') == ("/", "$")
    assert json_duplicate_key(b'{"a\\\\": 1, "a\\u005d": 2, "\\t": 3, "\\b": 4}') is None


def test_a_key_is_found_among_many_and_after_popped_maps():
    """The index holds the keys of every open map: a nested map's keys leave it when the map closes, and the outer
    map's keys are still found after it grew past its first size."""
    keys = [f"k{i}" for i in range(5000)]
    inner = "{" + ",".join(f'"{k}": 1' for k in keys) + "}"
    body = "{" + ",".join(f'"{k}": {inner}' for k in keys[:3]) + ', "k1": 0}'
    assert json_duplicate_key(body.encode()) == ("k1", "$")
    body = "{" + ",".join(f'"{k}": {inner}' for k in keys[:3]) + "}"
    assert json_duplicate_key(body.encode()) is None
    assert msgpack_duplicate_key(msgpack.packb({k: {k2: 1 for k2 in keys} for k in keys[:3]})) is None
    body = msgpack.packb({"x": {k: 1 for k in keys}}).replace(b"\xde\x13\x88", b"\xde\x13\x89", 1)  # a pair more
    assert msgpack_duplicate_key(body + b"\xa2k0\x01") == ("k0", "$.x")


def test_msgpack_item_count():
    assert msgpack_item_count(msgpack.packb({"inputs": [[1, 2], [3, 4]]}), 100) == 9  # map, key, 3 arrays, 4 ints
    assert msgpack_item_count(msgpack.packb([[]] * 1000), 10) == 11  # stops past the limit
    assert msgpack_item_count(msgpack.packb({"data": b"x" * 1000}), 100) == 3  # bytes are one item
    assert msgpack_item_count(b"\xdd\xff\xff\xff\xff", 10) == 1  # declared, not there: the decoder refuses it
    assert msgpack_item_count(b"\xc1", 10) == -1
    assert msgpack_item_count(b"\x91" * 5000 + b"\x90", 10**6) == -1  # deeper than any decoder goes


def test_same_keys_in_sibling_objects_are_fine():
    assert json_duplicate_key(b'[{"a": 1}, {"a": 2}, {"b": {"a": 3}}]') is None
    assert msgpack_duplicate_key(msgpack.packb([{"a": 1}, {"a": 2}, {"b": {"a": 3}}])) is None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, trees(SCALARS), max_size=4), st.one_of(st.none(), st.lists(trees(SCALARS), max_size=6)))
def test_top_array_length_counts_without_parsing(others, rows):
    """The length of `inputs` at the top level, as json.loads sees it; -1 when it is not an array there."""
    body = {k: v for k, v in others.items() if k != "inputs"}
    if rows is not None:
        body["inputs"] = rows
    text = "{" + ", ".join(json.dumps(k) + ": " + to_json(v) for k, v in body.items()) + "}"
    expected = len(rows) if rows is not None else -1
    assert json_top_array_length(text.encode(), b"inputs") == expected, text


def test_top_array_length_finds_brackets_and_quotes_at_every_offset():
    # Inside a row the scan looks 16 bytes at a time: a bracket, brace or quote at any place in a block must stop it.
    for pad in range(40):
        for inner in ("a]b", [1, [2]], {"k": [3, "]"]}, 'q\\"]', "[", "{", "\u00db\u00fd"):
            rows = [[0.5] * pad + [inner], [7] * (pad % 17), [inner] + [1] * pad]
            for separators in ((",", ":"), (", ", ": ")):
                body = {"x": "[", "inputs": rows, "y": [[1]]}
                text = json.dumps(body, separators=separators, ensure_ascii=False).encode()
                assert json_top_array_length(text, b"inputs") == 3, text
                assert json_top_array_length(text[:-8], b"inputs") == 3  # the rest need not be read


def test_top_array_length_is_minus_one_for_other_shapes():
    for text in (b"[1, 2]", b'{"inputs": 3}', b'{"a": {"inputs": [1]}}', b'"inputs"', b"", b'{"inputs": [1, 2'):
        assert json_top_array_length(text, b"inputs") == -1, text


def _elements(value) -> int:
    """Commas and containers a JSON text of `value` holds outside strings: elements and members but the last, and
    each array and object, all the way down."""
    if isinstance(value, tuple) and value[0] == "obj":
        pairs = value[1]
        return 1 + max(0, len(pairs) - 1) + sum(_elements(v) for _, v in pairs)
    if isinstance(value, list):
        return 1 + max(0, len(value) - 1) + sum(_elements(v) for v in value)
    return 0


@settings(max_examples=300, deadline=None)
@given(trees(SCALARS))
def test_value_bound_counts_separators_and_containers(value):
    """Strings may hold commas, brackets, quotes and backslashes: only the separators and the containers count."""
    text = to_json(value)
    assert json_value_bound(text.encode()) == _elements(value), text


def test_value_bound_of_nesting_without_commas():
    assert json_value_bound(b"[" * 1000 + b"0" + b"]" * 1000) == 1000
    assert json_value_bound(b'{"a": {"b": [[{}]]}}') == 5


def test_value_bound_finds_quotes_and_commas_at_every_offset():
    # The count goes 16 bytes at a time up to the next quote: a quote or comma at any place in a block must count.
    for pad in range(40):
        for inner in ("a,b", 'q\\",', ",", "", "\u00ac,"):
            value = [[0.5] * pad + [inner], [7] * (pad % 17), [inner] + [1] * pad, {"k,": inner}]
            for separators in ((",", ":"), (", ", ": ")):
                text = json.dumps(value, separators=separators, ensure_ascii=False)
                # Between the four, in rows 1 and 3, in row 2; and four arrays and an object.
                expected = 3 + 2 * pad + max(0, pad % 17 - 1) + 5
                assert json_value_bound(text.encode()) == expected, text


def test_value_bound_of_an_unclosed_string_is_minus_one():
    assert json_value_bound(b'{"a": "x,y') == -1
    assert json_value_bound(b"") == 0
