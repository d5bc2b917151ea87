"""The compiled transform against scikit-learn's ColumnTransformer.transform, on generated records."""

import math
from functools import cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils import murmurhash3_32

from fastserve._core import FeatureTransform, murmurhash3
from fastserve.export.sklearn import translate
from fastserve.features import parse_features
from tests import pipelines

MISSING = object()  # the field is left out of the record


@cache
def transform() -> FeatureTransform:
    pipeline, frame = pipelines.fitted()
    return FeatureTransform(list(parse_features(translate(pipeline.named_steps["features"], frame), "test")))


def maybe_missing(values):
    return st.one_of(values, st.sampled_from([MISSING, None, math.nan]))


numbers = st.one_of(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.integers(min_value=-10**9, max_value=10**9),
    st.sampled_from([0.0, -0.0, 1e-300, -2.0, 2.0, 600.0]),  # zeros, tiny, clip bounds, training mean
)
RECORD = st.fixed_dictionaries({
    "age": maybe_missing(numbers),                                    # imputed (mean, median)
    "score": maybe_missing(numbers),                                  # imputed (constant), clipped min-max
    "spend": st.floats(min_value=-0.999, max_value=1e12),             # log1p: defined above -1
    "balance": numbers,                                               # clip, min-max, uniform bins
    "visits": st.integers(min_value=-10**6, max_value=10**6),         # passthrough
    "country": maybe_missing(st.sampled_from([*pipelines.COUNTRIES, "unseen", "ZZ", ""])),
    "plan": st.sampled_from(pipelines.PLANS),                          # ordinal without unknowns: known only
    "rooms": st.sampled_from([*pipelines.ROOMS, 7, 0]),               # integer categories, unknown ignored
    "channel": st.sampled_from([*pipelines.CHANNELS, "fax"]),         # ordinal, unknown = -1
    "tier": st.sampled_from(["gold", "silver"]),
}).map(lambda r: {k: v for k, v in r.items() if v is not MISSING})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, min_size=1, max_size=16))
def test_records_transform_like_the_column_transformer(records):
    t = transform()
    ours = np.empty((len(records), t.width))
    t.fill_records(records, ours)
    theirs = pipelines.sklearn_transform(records)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORD, min_size=1, max_size=16))
def test_columns_give_what_records_give(records):
    t = transform()
    columns = {f: [r.get(f) for r in records] for f in t.fields}
    by_records = np.empty((len(records), t.width), dtype=np.float32)
    by_columns = np.empty_like(by_records)
    t.fill_records(records, by_records)
    assert t.count_columns(columns) == len(records)
    t.fill_columns(columns, by_columns)
    np.testing.assert_array_equal(by_columns, by_records)


def test_the_training_sample_itself_transforms_identically():
    _pipeline, frame = pipelines.fitted()
    t = transform()
    from fastserve.export.sklearn import sample_records

    records = sample_records(frame, list(t.fields))
    ours = np.empty((len(records), t.width), dtype=np.float32)
    t.fill_records(records, ours)
    expected = pipelines.sklearn_transform(records).astype(np.float32)
    np.testing.assert_array_equal(ours, expected)  # same doubles, same cast: bit for bit


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_murmurhash3_is_scikit_learns(text):
    assert murmurhash3(text) == murmurhash3_32(text, positive=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8), st.integers(1, 40), st.booleans())
def test_hashed_feature_is_feature_hasher(values, buckets, alternate_sign):
    spec = [{"name": "city", "type": "hashed", "buckets": buckets, "alternate_sign": alternate_sign}]
    t = FeatureTransform(list(parse_features(spec, "test")))
    ours = np.empty((len(values), buckets))
    t.fill_records([{"city": v} for v in values], ours)
    hasher = FeatureHasher(n_features=buckets, input_type="string", alternate_sign=alternate_sign)
    np.testing.assert_array_equal(ours, hasher.transform([[v] for v in values]).toarray())
