"""Bad records and columns: each refused with the record index and the field named."""

import math

import numpy as np
import pytest

from fastserve._core import FeatureTransform
from fastserve.exceptions import InvalidInput
from fastserve.features import parse_features

SPEC = [
    {"name": "age", "type": "numeric", "steps": [{"op": "standardize", "mean": 40.0, "std": 10.0}]},
    {"name": "income", "type": "numeric", "impute": 1000.0, "steps": [{"op": "log1p"}]},
    {"name": "country", "type": "categorical", "vocabulary": ["US", "FR"], "unknown": "error"},
    {"name": "rooms", "type": "categorical", "vocabulary": [1, 2, 3], "encoding": "ordinal", "unknown": "value",
     "unknown_value": -1.0},
]
GOOD = {"age": 41, "income": 20.5, "country": "FR", "rooms": 2}


def make(strict=False):
    return FeatureTransform(list(parse_features(SPEC, "test")), strict)


def refuse(records, strict=False):
    t = make(strict)
    with pytest.raises(InvalidInput) as info:
        t.fill_records(records, np.empty((len(records), t.width), dtype=np.float32))
    return info.value


def test_a_good_record():
    t = make()
    out = np.empty((1, t.width), dtype=np.float32)
    t.fill_records([GOOD], out)
    np.testing.assert_allclose(out[0], [0.1, math.log1p(20.5), 0, 1, 1], rtol=1e-6)


@pytest.mark.parametrize(("change", "path", "message"), [
    ({"age": None}, "$.records[1].age", "missing required field (a number)"),
    ({"age": "41"}, "$.records[1].age", "expected a number, got string '41'"),
    ({"age": True}, "$.records[1].age", "expected a number, got bool True"),
    ({"age": [1]}, "$.records[1].age", "expected a number, got array"),
    ({"age": math.inf}, "$.records[1].age", "expected a finite number, got inf"),
    ({"age": 10**400}, "$.records[1].age", "is too large for a float"),
    ({"country": "DE"}, "$.records[1].country", "unknown category 'DE' (known: 'US', 'FR')"),
    ({"country": 3}, "$.records[1].country", "expected a string, got int 3"),
    ({"country": None}, "$.records[1].country", "missing required field (a category)"),
    ({"rooms": "2"}, "$.records[1].rooms", "expected an integer, got string '2'"),
    ({"rooms": False}, "$.records[1].rooms", "expected an integer, got bool False"),
])
def test_bad_values_name_the_record_and_the_field(change, path, message):
    err = refuse([GOOD, {**GOOD, **change}])
    assert message in err.message and f"at `{path}`" in err.message, err.message
    assert err.detail["record"] == 1 and err.detail["path"] == path


def test_absent_required_field_is_named():
    record = dict(GOOD)
    del record["country"]
    err = refuse([record])
    assert err.detail["path"] == "$.records[0].country" and "missing required field" in err.message


def test_imputed_and_unknown_policies_fill_in():
    t = make()
    out = np.empty((3, t.width))
    t.fill_records([{**GOOD, "income": None}, {k: v for k, v in GOOD.items() if k != "income"},
                    {**GOOD, "income": math.nan, "rooms": 9}], out)
    assert (out[:, 1] == math.log1p(1000.0)).all()
    assert out[2, 4] == -1.0  # unknown integer category: the configured value
    assert out[0, 4] == 1.0


def test_record_that_is_not_an_object():
    err = refuse([GOOD, [1, 2, 3]])
    assert err.detail["path"] == "$.records[1]" and "expected a record (an object of fields), got array" in err.message


def test_unknown_fields_are_ignored_unless_strict():
    t = make()
    t.fill_records([{**GOOD, "user_id": "u1"}], np.empty((1, t.width)))
    err = refuse([GOOD, {**GOOD, "user_id": "u1"}], strict=True)
    assert err.detail == {"path": "$.records[1]", "record": 1, "field": "user_id"}
    assert "unknown field 'user_id'; this model reads age, income, country, rooms" in err.message
    # an absent imputed field and an extra one: the count of known fields still tells
    record = {k: v for k, v in GOOD.items() if k != "income"} | {"extra": 1}
    assert refuse([record], strict=True).detail["field"] == "extra"


def test_columns_are_checked_for_shape_and_name_the_field():
    t = make()
    with pytest.raises(InvalidInput, match=r"column 'income' has 1 values, column 'age' has 2"):
        t.count_columns({"age": [1, 2], "income": [3], "country": ["US", "FR"], "rooms": [1, 2]})
    with pytest.raises(InvalidInput, match=r"expected a column \(an array of values\), got string - at `\$.col"):
        t.count_columns({"age": "1"})
    with pytest.raises(InvalidInput, match=r"no column this model reads"):
        t.count_columns({"other": [1]})
    with pytest.raises(InvalidInput, match=r"unknown field 'other'"):
        make(strict=True).count_columns({**{k: [v] for k, v in GOOD.items()}, "other": [1]})
    columns = {"age": [1, "x"], "income": [1, 2], "country": ["US", "FR"], "rooms": [1, 2]}
    with pytest.raises(InvalidInput) as info:
        t.fill_columns(columns, np.empty((t.count_columns(columns), t.width)))
    assert info.value.detail == {"path": "$.columns.age[1]", "record": 1, "field": "age"}


def test_missing_column_means_missing_values():
    t = make()
    out = np.empty((2, t.width))
    columns = {"age": [1, 2], "country": ["US", "FR"], "rooms": [1, 2]}
    t.fill_columns(columns, out)
    assert (out[:, 1] == math.log1p(1000.0)).all()


def test_output_shape_is_checked():
    t = make()
    with pytest.raises(ValueError, match="needs"):
        t.fill_records([GOOD], np.empty((2, t.width)))
