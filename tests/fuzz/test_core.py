"""The compiled core's entry points on arbitrary input: no crash, no hang, only the documented errors."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastserve._core.scan import json_duplicate_key, msgpack_duplicate_key
from tests.fuzz import targets
from tests.fuzz.conftest import fuzz_settings


@fuzz_settings(400)
@given(st.integers(0, 4).flatmap(lambda w: st.tuples(st.just(w), targets.rows(w))), st.booleans(), st.booleans())
@example((1, [[10**5000]]), False, True)
@example((1, [[3.5e38]]), True, True)
def test_fill_rows(width_rows, allow_non_finite, float32):
    width, rows = width_rows
    targets.check_fill_rows(rows, width, allow_non_finite, float32)


@fuzz_settings(200)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(min_dims=2, max_dims=2, min_side=0),
                  elements={"allow_nan": True, "allow_infinity": True}))
def test_first_non_finite(x):
    targets.check_first_non_finite(x)


@fuzz_settings(200)
@given(st.sampled_from(["fill_rows", "first_non_finite", "fill_records", "count_columns", "fill_columns"]),
       st.lists(st.none() | targets.values(4) | st.just(np.zeros((1, 22), np.float32))
                | st.just(np.zeros((2, 3), np.float64)) | st.just(np.zeros(3, np.float32)), max_size=4))
@example("fill_rows", [None, np.zeros((1, 22), np.float32), False, "$"])
@example("fill_records", [None, np.zeros((1, 22), np.float32)])
@example("count_columns", [None])
@example("fill_columns", [None, np.zeros((1, 22), np.float32)])
@example("first_non_finite", [None])
def test_core_argument_misuse(call, args):
    targets.check_core_misuse(call, tuple(args))


@fuzz_settings(300)
@given(st.lists(st.tuples(targets.feature_kinds, targets.feature_fields, targets.feature_kwargs), max_size=4),
       st.booleans(), st.lists(st.dictionaries(targets.feature_fields | targets.texts, targets.core_values,
                                               max_size=4) | targets.scalars, max_size=3), st.booleans())
@example([("category_onehot", "a", {"width": -5}), ("number", "b", {})], False, [{"a": "x", "b": 1.0}], True)
@example([("number", "a", {"ops": [("nope", 1.0, 2.0)]})], False, [{"a": 1.0}], True)
@example([("hash_ordinal", "a", {"buckets": 4})], False, [{"a": "\ud800"}], True)
@example([("number", "a", {})], False, [{"a": 10**5000}], True)
@example([("category_ordinal", "a", {"lookup": {"x": 0}, "values": [1.0]})], False, [{"a": 10**5000}], True)
@example([("category_ordinal", "a", {"lookup": {"x": 0.5}, "values": [1.0]})], False, [{"a": "x"}], True)
def test_feature_transform(specs, strict, records, float32):
    targets.check_transform(specs, strict, records, float32)


def test_feature_transform_refuses_none_and_a_feature_already_placed():
    """A None feature used to crash the process; a Feature placed in a second transform moved in the first one
    too (its offset and field index are per transform), so the first wrote past its row buffer."""
    from fastserve._core import Feature, FeatureTransform

    for bad in ([None], [Feature("a", "a", "number"), None]):
        try:
            FeatureTransform(bad)
        except TypeError:
            pass
        else:
            raise AssertionError("FeatureTransform took None as a feature")
    b = Feature("b", "b", "number")
    first = FeatureTransform([b])
    second = FeatureTransform([Feature("a", "a", "number"), b])
    for transform, record, want in ((first, {"b": 2.0}, [2.0]), (second, {"a": 1.0, "b": 2.0}, [1.0, 2.0])):
        out = np.zeros((1, transform.width))
        transform.fill_records([record], out)
        np.testing.assert_array_equal(out[0], want)


@fuzz_settings(300)
@given(targets.sketch_edges, targets.sketch_batches, st.sampled_from(["self", None, 3]), st.integers(-3, 5))
@example([[0.0]], [], None, 10**6)
@example([[0.0]], [], "self", -3)
@example([[np.nan, 0.0]], [np.zeros((1, 1), np.float32)], "self", 0)
def test_binned_sketch(edges, batches, merge_with, column):
    targets.check_sketch(edges, batches, merge_with, column)


@fuzz_settings(400)
@given(st.integers(-1, 8), st.integers(-1, 12), st.integers(-1, 10**7) | st.sampled_from([2**62]),
       st.integers(0, 3), targets.queue_ops)
@example(64, 2, 0, 1, [("push", 1, 0, 2**63 - 1), ("push", 1, 0, 2**63 - 1), ("cancel", 1),
                       ("push", 1, 0, 2**63 - 1)])  # a cancelled slot must not let the ring overwrite a live one
@example(64, 4, 0, 1, [("push", 1, 0, 2**63 - 1), ("push", 2**62, 0, 2**63 - 1)])  # rows that overflow the count
def test_batch_queue(max_batch, max_queue, max_delay, instances, ops):
    targets.check_batch_queue(max_batch, max_queue, max_delay, instances, ops)


@fuzz_settings(1000)
@given(st.binary(max_size=400) | st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b",", b'"', b"\\", b":", b"a",
                                                            b"\x81", b"\x92", b"\xa1", b"\xdf\xff\xff\xff\xff",
                                                            b"\xc6\x00\x00\x00\x09"]), max_size=60).map(b"".join))
def test_duplicate_key_scanners_take_any_bytes(body):
    """The scanners run on bodies a decoder accepted, but any bytes must give an answer, never a crash or hang."""
    for found in (json_duplicate_key(body), msgpack_duplicate_key(body)):
        assert found is None or found is True or (isinstance(found, tuple) and len(found) == 2)
