"""The raw field codes the transform writes for the drift sketches, in the same pass as the model's inputs."""

import math

import numpy as np
import pytest

from fastserve._core import Feature, FeatureTransform


def transform():
    return FeatureTransform([
        Feature("spend", "spend", "number", impute=0.0, ops=[("log1p", 0, 0), ("clip", 0.0, 3.0)]),
        Feature("spend_bucket", "spend", "bucket_ordinal", impute=0.0, edges=[10.0, 100.0]),
        Feature("plan", "plan", "category_ordinal", lookup={"basic": 0, "pro": 1}, values=[0.0, 1.0],
                unknown="ignore", unknown_value=-1.0, impute="basic"),
        Feature("city", "city", "hash_onehot", buckets=4, width=4, impute="x"),
    ])


def test_numbers_as_sent_categories_as_slots_missing_as_nan():
    t = transform()
    assert [f.name if f else None for f in t.raw_features] == ["spend", "plan", None]
    records = [{"spend": 500.0, "plan": "pro", "city": "Paris"},  # clipped by the spec: raw keeps 500
               {"plan": "gold", "city": "Oslo"},  # spend imputed; unknown plan
               {"spend": 2, "plan": None}]  # plan and city imputed
    x = np.empty((3, t.width), dtype=np.float32)
    raw = np.empty((3, len(t.fields)))
    t.fill_records(records, x, raw)
    assert raw[0, 0] == 500.0 and x[0, 0] == 3.0
    assert math.isnan(raw[1, 0]) and x[1, 0] == 0.0
    assert raw[2, 0] == 2.0
    assert raw[:, 1].tolist()[:2] == [1.0, -1.0] and math.isnan(raw[2, 1])
    assert np.isnan(raw[:, 2]).all()  # only hashed: not sketched

    columns = {"spend": [500.0, None, 2], "plan": ["pro", "gold", None], "city": ["Paris", "Oslo", None]}
    x2 = np.empty_like(x)
    raw2 = np.empty_like(raw)
    t.fill_columns(columns, x2, raw2)
    assert np.array_equal(x, x2) and np.array_equal(raw, raw2, equal_nan=True)


def test_raw_matrix_of_the_wrong_shape_is_refused():
    t = transform()
    x = np.empty((1, t.width))
    with pytest.raises(ValueError, match=r"raw has shape \(1, 2\), needs \(1, 3\)"):
        t.fill_records([{"spend": 1.0, "plan": "pro"}], x, np.empty((1, 2)))
