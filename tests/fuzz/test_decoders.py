"""The request decoders on arbitrary bytes and arbitrary decoded objects."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz import targets
from tests.fuzz.conftest import fuzz_settings


@fuzz_settings(400)
@given(st.binary(max_size=300) | targets.encoded_bodies())
@example(b"[" * 100_000)
@example(b"\x91" * 100_000)  # msgpack arrays nested past its depth limit
@example(b"\xdd\xff\xff\xff\xff")  # an array that declares 4 billion items
def test_decode_any_bytes(body):
    targets.check_decode(body)


@fuzz_settings(400)
@given(targets.predict_bodies(), st.booleans(), st.booleans(), st.booleans(), st.sampled_from([1, 3, 4096]))
@example({b"a": 1, "b": 2}, False, False, False, 4096)  # keys of two types cannot be sorted together
@example({"inputs": {"dtype": [], "shape": [1, 22], "data": b""}}, False, False, False, 4096)  # unhashable dtype
@example({"inputs": {"dtype": "float32", "shape": [1, 22], "data": b"", b"x": 1}}, False, False, False, 4096)
def test_predict_inputs_any_object(payload, double, allow_non_finite, strict, max_rows):
    targets.check_predict_inputs(payload, double, allow_non_finite, strict, max_rows)


@fuzz_settings(200)
@given(st.booleans(), targets.records(), targets.columns())
def test_churn_transform_near_valid(strict, records, columns):
    targets.check_churn_transform(strict, records, columns)


@fuzz_settings(300)
@given(st.binary(max_size=200) | st.builds(lambda flags, body: bytes([flags]) + body, st.integers(0, 255),
                                            targets.encoded_bodies()))
def test_predict_body_bytes(data):
    targets.check_predict_body_bytes(data)
