"""`json_rows` reads `{"inputs": [[...], ...]}` straight from the body's bytes: for every body it either declines
(None: the general way reads it) or gives exactly the matrix the general way gives (the JSON decoder, then
`fill_rows`)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastserve._core import fill_rows
from fastserve._core.rows import json_rows
from tests.timing import judge, ratio

WIDTH, MAX_ROWS = 3, 8


def general(body: bytes, width: int, dtype: type) -> np.ndarray | None:
    """The general way, for the bodies `json_rows` must read alike; None where it refuses the body."""
    try:
        payload = orjson.loads(body)
        rows = payload["inputs"]
        if payload.keys() != {"inputs"} or type(rows) is not list or not 0 < len(rows) <= MAX_ROWS:
            return None
        out = np.empty((len(rows), width), dtype=dtype)
        fill_rows(rows, out, False, "$.inputs")
    except Exception:
        return None
    return out


numbers = st.one_of(
    st.integers(-(10 ** 20), 10 ** 20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-300, max_value=1e-300),
    st.sampled_from(["0", "-0", "1e400", "-1e400", "3.4028236e38", "1E5", "1e+2", "1.5e-7", "01", "1.", ".5", "+1",
                     "-", "1e", "true", "null", '"1"', "[]", "NaN", "Infinity", "0x10", "1_0"]),
)
spaces = st.sampled_from(["", " ", "\n", "\t", "\r\n  ", "\x0b", "\u00a0"])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    def sp() -> str:
        return draw(spaces)

    def num() -> str:
        v = draw(numbers)
        return v if isinstance(v, str) else json.dumps(v)

    rows = []
    for _ in range(draw(st.integers(0, MAX_ROWS + 1))):
        width = draw(st.sampled_from([WIDTH, WIDTH, WIDTH, WIDTH - 1, WIDTH + 1]))
        values = [sp() + num() + sp() for _ in range(width)]
        rows.append(sp() + "[" + ",".join(values) + "]" + sp())
    if draw(st.booleans()):  # the envelope read right, so that what is tried is the numbers and rows
        key, extra, tail = '"inputs"', "", b""
    else:
        key = draw(st.sampled_from(['"inputs"', '"input"', '"inputs" ', "inputs", '"in\\u0070uts"']))
        extra = draw(st.sampled_from(["", ', "timeout_ms": 5', ', "inputs": [[1,2,3]]']))
        tail = draw(st.sampled_from([b"", b"x", b"\x00", b"]"]))
    text = sp() + "{" + sp() + key + sp() + ":" + sp() + "[" + ",".join(rows) + "]" + extra + sp() + "}" + sp()
    return text.encode() + tail


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=600, deadline=None)
@given(body=bodies())
def test_reads_alike_or_declines(dtype: type, body: bytes) -> None:
    fast = json_rows(body, WIDTH, MAX_ROWS, dtype is np.float32)
    if fast is None:
        return
    expected = general(body, WIDTH, dtype)
    assert expected is not None, body
    assert fast.dtype == expected.dtype
    np.testing.assert_array_equal(fast, expected)
    assert [np.signbit(v) for v in fast.ravel()] == [np.signbit(v) for v in expected.ravel()]  # -0 kept


def test_reads_the_common_body() -> None:
    x = json_rows(b'{"inputs": [[1, 2.5, -3e2], [0, 1e-3, 0.1]]}', WIDTH, MAX_ROWS, True)
    assert x is not None and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.array([[1, 2.5, -300], [0, 1e-3, 0.1]], dtype=np.float32))
    x = json_rows(b' {\n "inputs" : [ [ 0.1 , 2 , 3 ] ] }\n', WIDTH, MAX_ROWS, False)
    assert x is not None and x.dtype == np.float64 and x[0, 0] == 0.1


def test_negative_zero_is_signed_only_as_a_float() -> None:
    x = json_rows(b'{"inputs": [[-0, -0.0, -0e1]]}', WIDTH, MAX_ROWS, False)  # the decoder: int 0, -0.0, -0.0
    assert x is not None and [bool(np.signbit(v)) for v in x[0]] == [False, True, True]


@pytest.mark.parametrize("seed", range(4))
def test_numbers_read_as_the_decoder_reads_them(seed: int) -> None:
    # Decimal strings of every length, fraction and exponent, both ways of reading them (the fast path's exact
    # products and strtod).
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(5_000):
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 18)))).lstrip("0") or "0"
        fraction = "." + "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 16)))) if rng.random() < .6 \
            else ""
        exponent = f"e{int(rng.integers(-40, 16))}" if rng.random() < 0.4 else ""  # (within the float32 range)
        texts.append(("-" if rng.random() < 0.5 else "") + digits + fraction + exponent)
    body = b'{"inputs": [' + b",".join(b"[" + t.encode() + b"]" for t in texts) + b"]}"
    for dtype in (np.float32, np.float64):
        fast = json_rows(body, 1, len(texts), dtype is np.float32)
        expected = general_rows(body, dtype)
        assert fast is not None
        np.testing.assert_array_equal(fast, expected)
        assert (np.signbit(fast) == np.signbit(expected)).all()


def general_rows(body: bytes, dtype: type) -> np.ndarray:
    rows = orjson.loads(body)["inputs"]
    out = np.empty((len(rows), len(rows[0])), dtype=dtype)
    fill_rows(rows, out, False, "$.inputs")
    return out


@pytest.mark.parametrize("body", [
    b'{"inputs": []}', b'{"inputs": [[1, 2]]}', b'{"inputs": [[1, 2, 3, 4]]}', b'{"inputs": [[1, 2, 3]], "x": 1}',
    b'{"inputs": [[1, 2, 1e400]]}', b'{"inputs": [[1, 2, 1e39]]}', b'{"inputs": [[1, 2, 3]]} x',
    b'{"inputs": [[1, 2, 3],]}', b'{"inputs": [[1, 2, true]]}', b'{"inputs": {"dtype": "float32"}}',
    b'{"records": [{"a": 1}]}', b'[[1, 2, 3]]', b'', b'{"inputs": [[1, 2, 3]',
    b'{"inputs": [[1, 2, ' + b'1' * 41 + b']]}',
    *(b'{"inputs": [[1, 2, %s]]}' % bad for bad in (b"01", b"-01", b"1.", b".5", b"+1", b"-", b"1e", b"1e+", b"0x10",
                                                      b"NaN", b"-Infinity", b"1_0", b'"1"', b"null", b"\x0b1")),
])
def test_declines_what_it_does_not_read_alike(body: bytes) -> None:
    assert json_rows(body, WIDTH, MAX_ROWS, True) is None


def test_declines_past_max_rows_without_reading_on() -> None:
    assert json_rows(b'{"inputs": [' + b",".join([b"[1,2,3]"] * (MAX_ROWS + 1)) + b"]}", WIDTH, MAX_ROWS, True) is None


def test_time_is_linear_in_the_body() -> None:
    # The worst body for it: the longest read before it declines (rows of the widest numbers, then one bad byte).
    def body(n: int) -> bytes:
        return b'{"inputs": [' + b",".join([b"[" + b",".join([b"-1.2345678901234567e-300"] * 100) + b"]"] * n) + b"]x"

    small, large = body(200), body(2_000)
    judge("json_rows", len(small), len(large), ratio(lambda: json_rows(small, 100, 10 ** 6, False),
                                                      lambda: json_rows(large, 100, 10 ** 6, False), cold=False))


def test_numbers_halfway_between_two_doubles_round_as_the_decoder_rounds_them() -> None:
    # The hardest numbers to read: 16-19 digits exactly halfway between two doubles (and one unit either side),
    # as integers, as decimals (the halfway integer over a power of ten: not exact in any binary format) and with
    # an exponent; each must round as the decoder rounds it (to even at halfway).
    rng = np.random.default_rng(11)
    texts = []
    for d in rng.uniform(2.0 ** 53, 1e19, size=3_000):
        d = float(int(d))
        halfway = int(d) + int(np.spacing(d)) // 2
        for v in (halfway - 1, halfway, halfway + 1):
            s = str(v)
            k = int(rng.integers(1, min(len(s), 27)))
            texts += [s, s[:-k] + "." + s[-k:], f"{s}e-{int(rng.integers(1, 9))}"]
    body = b'{"inputs": [' + b",".join(b"[" + t.encode() + b"]" for t in texts) + b"]}"
    for dtype in (np.float32, np.float64):
        fast = json_rows(body, 1, len(texts), dtype is np.float32)
        assert fast is not None
        np.testing.assert_array_equal(fast, general_rows(body, dtype))
