"""The feature spec's validation: every mistake named with its feature and key."""

import math

import numpy as np
import pytest

from fastserve._core import FeatureTransform
from fastserve.exceptions import ConfigError
from fastserve.features import parse_features


def parse(*features):
    return parse_features(list(features), "m/fastserve.toml")


@pytest.mark.parametrize(("feature", "message"), [
    ({"type": "numeric"}, "`name` is required"),
    ({"name": "a"}, "`type` must be one of numeric, categorical, hashed"),
    ({"name": "a", "type": "numeric", "scale": 2}, "feature 'a': unknown key `scale`"),
    ({"name": "a", "type": "numeric", "impute": "x"}, "`impute` must be int or float"),
    ({"name": "a", "type": "numeric", "steps": [{"op": "sqrt"}]}, "steps[0]: `op` must be one of log1p, clip"),
    ({"name": "a", "type": "numeric", "steps": [{"op": "standardize", "mean": 1.0, "std": 0.0}]},
     "`std` must not be 0"),
    ({"name": "a", "type": "numeric", "steps": [{"op": "standardize", "mean": 1.0}]}, "`std` is required"),
    ({"name": "a", "type": "numeric", "steps": [{"op": "clip", "min": 2.0, "max": 1.0}]}, "clip needs min <= max"),
    ({"name": "a", "type": "numeric", "steps": [{"op": "min_max", "min": 0, "max": 1, "range": [1, 0]}]},
     "`range` must be [low, high] with low < high"),
    ({"name": "a", "type": "numeric", "bucketize": {"boundaries": [2.0, 1.0]}}, "non-decreasing"),
    ({"name": "a", "type": "numeric", "bucketize": {"boundaries": [1.0], "encoding": "bits"}},
     "`encoding` must be one of onehot, ordinal"),
    ({"name": "c", "type": "categorical"}, "`vocabulary` is required"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a", 1]}, "list of strings or of integers"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a", "a"]}, "has a category twice"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a"], "unknown": "slot", "encoding": "ordinal"},
     "`unknown` must be one of error, value"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a"], "encoding": "ordinal", "unknown": "value"},
     "`unknown_value` is required"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a", "b"], "columns": [0]}, "one column index"),
    ({"name": "c", "type": "categorical", "vocabulary": ["a"], "impute": 3}, "`impute` must be str"),
    ({"name": "h", "type": "hashed"}, "`buckets` must be >= 1"),
    ({"name": "h", "type": "hashed", "buckets": 4, "encoding": "ordinal", "alternate_sign": True},
     "`alternate_sign` applies to one-hot hashing only"),
])
def test_mistakes_are_named(feature, message):
    with pytest.raises(ConfigError) as info:
        parse(feature)
    assert message in str(info.value) and "m/fastserve.toml" in str(info.value), str(info.value)


def test_names_are_unique():
    a = {"name": "a", "type": "numeric"}
    with pytest.raises(ConfigError, match="unique"):
        parse(a, a)


def test_column_order_and_widths_follow_the_spec():
    t = FeatureTransform(list(parse(
        {"name": "c", "type": "categorical", "vocabulary": ["x", "y", "z"], "unknown": "slot"},
        {"name": "a", "type": "numeric", "bucketize": {"boundaries": [0.0, 10.0], "encoding": "onehot"}},
        {"name": "a_raw", "field": "a", "type": "numeric",
         "steps": [{"op": "min_max", "min": 0.0, "max": 20.0, "range": [-1.0, 1.0], "clip": True}]},
        {"name": "h", "field": "c", "type": "hashed", "buckets": 2, "encoding": "ordinal"},
    )))
    assert t.width == 4 + 3 + 1 + 1 and t.fields == ("c", "a")
    out = np.empty((2, t.width))
    t.fill_records([{"c": "y", "a": 10.0}, {"c": "new", "a": 50.0}], out)
    np.testing.assert_array_equal(out[0, :8], [0, 1, 0, 0, 0, 0, 1, 0.0])
    np.testing.assert_array_equal(out[1, :8], [0, 0, 0, 1, 0, 0, 1, 1.0])  # unknown slot; min-max clipped to 1
    assert out[0, 8] in (0.0, 1.0)


def test_min_max_matches_scikit_learn_arithmetic():
    from sklearn.preprocessing import MinMaxScaler

    x = np.array([[3.0], [7.25], [1e-3], [11.0]])
    scaler = MinMaxScaler(feature_range=(-2, 5)).fit(x)
    t = FeatureTransform(list(parse({"name": "v", "type": "numeric", "steps": [
        {"op": "min_max", "min": float(scaler.data_min_[0]), "max": float(scaler.data_max_[0]), "range": [-2, 5]}]})))
    probe = [0.5, 3.0, 1e9, -math.pi]
    out = np.empty((len(probe), 1))
    t.fill_records([{"v": v} for v in probe], out)
    np.testing.assert_array_equal(out, scaler.transform(np.array(probe).reshape(-1, 1)))
