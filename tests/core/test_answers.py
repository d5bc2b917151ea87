"""`msgpack_arrays` writes output arrays as msgpack, byte for byte what msgpack writes from them as lists (the
server's answers before it): every dtype it takes, every integer width, values and shapes drawn at random; and it
declines what it does not take, which msgpack then writes."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from fastserve._core.answers import msgpack_arrays
from fastserve.http.codecs import MSGPACK, encode
from fastserve.http.predict import msgpack_answer
from fastserve.numpy_encoding import encode_numpy


def as_msgpack_writes_it(outputs: dict[str, np.ndarray]) -> bytes:
    return msgpack.packb(outputs, use_bin_type=True, default=encode_numpy)


def drawn(rng: np.random.Generator) -> dict[str, np.ndarray]:
    outputs = {}
    for k in range(int(rng.integers(1, 4))):
        dtype = str(rng.choice(["float32", "float64", "int32", "int64"]))
        shape = (int(rng.integers(0, 40)),) if rng.random() < 0.5 else (int(rng.integers(0, 20)),
                                                                        int(rng.integers(0, 20)))
        if dtype.startswith("float"):
            with np.errstate(over="ignore"):
                a = (rng.normal(size=shape) * 10.0 ** float(rng.integers(-40, 40))).astype(dtype)
        else:
            info = np.iinfo(dtype)
            a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
            if rng.random() < 0.5:  # every integer form: fixints, 8, 16, 32 and 64 bits, both signs
                bound = int(rng.choice([40, 300, 70_000, 5_000_000_000]))
                a = (a.astype(np.int64) % bound - int(rng.integers(0, 3)) * 20).astype(dtype)
        outputs[f"output_{k}"] = a
    return outputs


@pytest.mark.parametrize("seed", range(5))
def test_writes_what_msgpack_writes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(300):
        outputs = drawn(rng)
        assert msgpack_arrays(outputs) == as_msgpack_writes_it(outputs)


def test_writes_special_floats_as_msgpack_does() -> None:
    outputs = {"x": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.5], dtype=np.float64),
               "y": np.array([[np.float32(3.4e38), -0.0]], dtype=np.float32)}
    assert msgpack_arrays(outputs) == as_msgpack_writes_it(outputs)


@pytest.mark.parametrize("integers", [np.int64, np.longlong, np.intc])  # (numpy has two 64-bit integer types)
def test_the_answer_is_what_msgpack_writes(integers: type) -> None:
    outputs = {"label": np.array([1, 0], dtype=integers),
               "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)}
    expected = encode({"model": "churn", "version": 3, "outputs": outputs}, MSGPACK)
    assert msgpack_answer("churn", 3, outputs) == expected


@pytest.mark.parametrize("outputs", [
    {"label": np.array(["yes", "no"])},  # strings: msgpack writes them
    {"x": np.ones((2, 2, 2), dtype=np.float32)},  # three dimensions
    {"x": np.ones((4, 4), dtype=np.float32)[:, ::2]},  # not contiguous
    {"x": np.ones(3, dtype=">f4")},  # big-endian
    {"x": np.ones(3, dtype=np.float16)},
    {"x": np.ones(3, dtype=np.bool_)},
    {"x" * 32: np.ones(3, dtype=np.float32)},  # a name longer than a fixstr
    {f"o{i}": np.ones(1, dtype=np.float32) for i in range(16)},  # more names than a fixmap
])
def test_declines_what_it_does_not_write(outputs: dict[str, np.ndarray]) -> None:
    assert msgpack_arrays(outputs) is None
    assert msgpack_answer("m", 1, outputs) is None
