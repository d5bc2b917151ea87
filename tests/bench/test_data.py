"""Where rows come from: files of real data become rows or records, checked against the model."""

import numpy as np
import pandas as pd
import pytest

from fastserve.bench.data import fit, random_rows, read_file, read_validation
from fastserve.exceptions import BenchError
from tests.conftest import MODELS


def test_numeric_csv_is_rows_and_mixed_csv_is_records(tmp_path):
    rows = tmp_path / "rows.csv"
    pd.DataFrame(np.arange(6.0).reshape(3, 2), columns=["a", "b"]).to_csv(rows, index=False)
    data = fit(read_file(rows), 2, "float32", "m")
    assert data.rows is not None and data.rows.dtype == np.float32 and data.rows.tolist()[1] == [2.0, 3.0]
    mixed = tmp_path / "records.csv"
    pd.DataFrame({"age": [41, None], "country": ["FR", "US"]}).to_csv(mixed, index=False)
    assert read_file(mixed).records == [{"age": 41.0, "country": "FR"}, {"age": None, "country": "US"}]


def test_json_lines(tmp_path):
    rows, records, both = tmp_path / "rows.jsonl", tmp_path / "records.jsonl", tmp_path / "both.jsonl"
    rows.write_text("[1, 2]\n\n[3, 4]\n")
    records.write_text('{"age": 41}\n{"age": 29}\n')
    both.write_text('[1, 2]\n{"age": 29}\n')
    assert read_file(rows).rows.tolist() == [[1, 2], [3, 4]]
    assert len(read_file(records)) == 2 and read_file(records).rows is None
    with pytest.raises(BenchError, match="every line to be an array"):
        read_file(both)


def test_what_does_not_fit_is_refused(tmp_path):
    with pytest.raises(BenchError, match="no such file"):
        read_file(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(BenchError, match=r"expected a \.csv, \.jsonl or \.parquet file"):
        read_file(tmp_path / "x.txt")
    with pytest.raises(BenchError, match="rows of 2 values, but model 'm' takes 3"):
        fit(random_rows(2, "float32", 4, 0), 3, "float32", "m")
    with pytest.raises(BenchError, match=r"no .*validation\.npz"):
        read_validation(MODELS, "spend", "9")


def test_validation_inputs_and_random_rows():
    assert read_validation(MODELS, "churn_mlp", None).rows.shape == (64, 22)
    ints = random_rows(5, "int64", 10, seed=1).rows
    assert ints.shape == (10, 5) and ints.dtype == np.int64
    assert np.array_equal(random_rows(3, "float32", 4, 7).rows, random_rows(3, "float32", 4, 7).rows)
