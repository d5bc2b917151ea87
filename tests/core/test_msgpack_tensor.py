"""`msgpack_tensor` reads a msgpack raw tensor body, `{"inputs": {"dtype", "shape", "data"}}`, from its bytes: for
every body it either declines (None: the general way reads it) or gives exactly the matrix the general way gives
(the msgpack decoder, then the tensor's checks)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastserve._core.rows import msgpack_tensor
from tests.timing import judge, ratio

WIDTH, MAX_ROWS = 3, 8
DTYPES = {"float32": "<f4", "float64": "<f8"}


def body(x: np.ndarray, dtype: str = "float32", **changes: object) -> bytes:
    tensor: dict[str, object] = {"dtype": dtype, "shape": list(x.shape), "data": x.astype(DTYPES[dtype]).tobytes()}
    tensor.update(changes)
    return msgpack.packb({"inputs": tensor})


def general(data: bytes, float32: bool) -> np.ndarray | None:
    """The general way's reading, for the bodies `msgpack_tensor` must read alike; None where it refuses."""
    try:
        payload = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return None
    want = "float32" if float32 else "float64"
    tensor = payload.get("inputs") if type(payload) is dict and payload.keys() == {"inputs"} else None
    if type(tensor) is not dict or tensor.keys() != {"dtype", "shape", "data"} or tensor["dtype"] != want:
        return None
    shape, data = tensor["shape"], tensor["data"]
    if type(shape) is not list or len(shape) != 2 or shape[1] != WIDTH or not 0 < shape[0] <= MAX_ROWS:
        return None
    if type(data) is not bytes or len(data) != shape[0] * WIDTH * (4 if float32 else 8):
        return None
    x = np.frombuffer(data, dtype=DTYPES[want]).reshape(shape)
    return x if np.isfinite(x).all() else None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reads_the_common_body(dtype: str) -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    got = msgpack_tensor(body(x, dtype), WIDTH, MAX_ROWS, dtype == "float32")
    assert got is not None and got.dtype == np.dtype(DTYPES[dtype])
    np.testing.assert_array_equal(got, x.astype(DTYPES[dtype]))


def test_reads_the_keys_in_any_order() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    data = msgpack.packb({"inputs": {"data": x.tobytes(), "shape": [2, 3], "dtype": "float32"}})
    got = msgpack_tensor(data, WIDTH, MAX_ROWS, True)
    assert got is not None
    np.testing.assert_array_equal(got, x)


ONE = np.ones((2, 3), dtype=np.float32)


@pytest.mark.parametrize("data", [
    body(ONE, "float64"),  # another dtype than the model's: the general way converts it
    body(ONE, shape=[2, 4]), body(ONE, shape=[3, 3]), body(ONE, shape=[0, 3]), body(ONE, shape=[2]),
    body(ONE, shape=[-2, 3]), body(ONE, data=ONE.tobytes()[:-1]), body(ONE, extra=1), body(ONE, data="text"),
    body(np.full((2, 3), np.nan, dtype=np.float32)), body(np.full((2, 3), np.inf, dtype=np.float32)),
    body(ONE) + b"\x00", body(ONE)[:-1], msgpack.packb({"inputs": [[1, 2, 3]]}), msgpack.packb([ONE.tobytes()]),
    msgpack.packb({"inputs": {"dtype": "float32", "shape": [2, 3]}}), b"", b"\x81",
    msgpack.packb({"inputs": {"dtype": "float32", "dtype ": "float32", "shape": [2, 3], "data": ONE.tobytes()}}),
    body(np.ones((MAX_ROWS + 1, 3), dtype=np.float32)),
])
def test_declines_what_it_does_not_read_alike(data: bytes) -> None:
    assert msgpack_tensor(data, WIDTH, MAX_ROWS, True) is None


def test_declines_a_key_given_twice() -> None:
    # Not expressible by a dict: the bytes written by hand, `dtype` twice in a map of three.
    x = ONE.tobytes()
    data = (b"\x81\xa6inputs\x83\xa5dtype\xa7float32\xa5dtype\xa7float32\xa4data\xc4" + bytes([len(x)]) + x)
    assert msgpack_tensor(data, WIDTH, MAX_ROWS, True) is None


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    rows = draw(st.integers(0, MAX_ROWS + 1))
    width = draw(st.sampled_from([WIDTH, WIDTH, WIDTH - 1]))
    dtype = draw(st.sampled_from(["float32", "float32", "float64", "int32", "float16"]))
    values = draw(st.lists(st.floats(width=32), min_size=rows * width, max_size=rows * width))
    x = np.array(values, dtype=np.float64).reshape(rows, width)
    data = x.astype(DTYPES.get(dtype, "<f4")).tobytes()
    tensor: dict[str, object] = {"dtype": dtype, "shape": draw(st.sampled_from([[rows, width], [rows, width],
                                                                               [rows], [width, rows]])),
                                 "data": data[:len(data) - draw(st.sampled_from([0, 0, 0, 1]))]}
    keys = draw(st.permutations(["dtype", "shape", "data"]))
    return msgpack.packb({"inputs": {k: tensor[k] for k in keys}}) + draw(st.sampled_from([b"", b"", b"\xc0"]))


@pytest.mark.parametrize("float32", [True, False])
@settings(max_examples=400, deadline=None)
@given(data=bodies())
def test_reads_alike_or_declines(float32: bool, data: bytes) -> None:
    fast = msgpack_tensor(data, WIDTH, MAX_ROWS, float32)
    expected = general(data, float32)
    if fast is None:
        return
    assert expected is not None, data
    assert fast.dtype == expected.dtype
    np.testing.assert_array_equal(fast, expected)


def test_time_is_linear_in_the_body() -> None:
    # The worst body for it: the largest tensor, read to its last value, which is not finite.
    def body(rows: int) -> bytes:
        x = np.ones((rows, 100), dtype=np.float32)
        x[-1, -1] = np.nan
        return msgpack.packb({"inputs": {"dtype": "float32", "shape": [rows, 100], "data": x.tobytes()}})

    small, large = body(2_000), body(20_000)
    judge("msgpack_tensor", len(small), len(large), ratio(lambda: msgpack_tensor(small, 100, 10 ** 6, True),
                                                          lambda: msgpack_tensor(large, 100, 10 ** 6, True),
                                                          cold=False))
