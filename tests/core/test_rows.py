import math

import numpy as np
import pytest

from fastserve._core import fill_rows, first_non_finite
from fastserve.exceptions import InvalidInput


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_are_written_in_order(dtype):
    rows = [[1, 2.5, -3], [4.25, 0, 6e10]]
    out = np.full((2, 3), -1, dtype=dtype)
    assert fill_rows(rows, out, False, "$.inputs") == 2
    np.testing.assert_array_equal(out, np.array(rows, dtype=dtype))


def test_large_python_ints_convert_like_float():
    out = np.empty((1, 2), dtype=np.float64)
    fill_rows([[2**62, -(2**53) - 1]], out, False, "$.inputs")
    assert out[0, 0] == float(2**62) and out[0, 1] == float(-(2**53) - 1)


@pytest.mark.parametrize(
    ("rows", "message", "path"),
    [
        ([[1, 2, 3], [1, 2]], "expected 3 features per row, got 2", "$.inputs[1]"),
        ([[1, 2, 3], [1, 2, 3, 4]], "expected 3 features per row, got 4", "$.inputs[1]"),
        ([[1, "2", 3]], "expected a number, got string", "$.inputs[0][1]"),
        ([[1, 2, None]], "expected a number, got null", "$.inputs[0][2]"),
        ([[True, 2, 3]], "expected a number, got bool", "$.inputs[0][0]"),
        ([[1, [2], 3]], "expected a number, got array", "$.inputs[0][1]"),
        ([[1, {}, 3]], "expected a number, got object", "$.inputs[0][1]"),
        ([5, [1, 2, 3]], "expected a row (an array of 3 numbers), got int", "$.inputs[0]"),
        ([[1, 2, 3], {"a": 1}], "expected a row (an array of 3 numbers), got object", "$.inputs[1]"),
        ([[1, 2, math.nan]], "non-finite value nan refused", "$.inputs[0][2]"),
        ([[1, -math.inf, 2]], "non-finite value -inf refused", "$.inputs[0][1]"),
        ([[1, 2, 1e39]], "value 1e+39 is out of the float32 range", "$.inputs[0][2]"),
        ([[1, 2, 10**400]], "integer too large for a float", "$.inputs[0][2]"),
    ],
)
def test_bad_rows_are_refused_with_their_place(rows, message, path):
    out = np.empty((len(rows), 3), dtype=np.float32)
    with pytest.raises(InvalidInput) as info:
        fill_rows(rows, out, False, "$.inputs")
    assert message in info.value.message
    assert info.value.message.endswith(f"- at `{path}`")
    assert info.value.detail["path"] == path


def test_non_finite_values_pass_when_allowed():
    out = np.empty((1, 3), dtype=np.float32)
    fill_rows([[math.nan, math.inf, -math.inf]], out, True, "$.inputs")
    assert math.isnan(out[0, 0]) and out[0, 1] == math.inf and out[0, 2] == -math.inf


def test_float64_output_takes_values_beyond_float32():
    out = np.empty((1, 1), dtype=np.float64)
    fill_rows([[1e300]], out, False, "$.inputs")
    assert out[0, 0] == 1e300


def test_row_count_must_match_the_buffer():
    with pytest.raises(ValueError, match="out has 2 rows for 1 input rows"):
        fill_rows([[1.0]], np.empty((2, 1), dtype=np.float32), False, "$.inputs")


def test_compiled_core_is_compiled():
    import fastserve._core.rows as rows

    assert rows.__file__.endswith((".so", ".pyd")), rows.__file__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_non_finite(dtype):
    x = np.ones((3, 4), dtype=dtype)
    assert first_non_finite(x) == -1
    x[2, 1] = math.inf
    assert first_non_finite(x) == 9
    x[1, 3] = math.nan
    assert first_non_finite(x) == 7


def test_first_non_finite_reads_read_only_buffers():
    x = np.frombuffer(np.array([1.0, math.nan], dtype=np.float32).tobytes(), dtype=np.float32).reshape(1, 2)
    assert not x.flags.writeable
    assert first_non_finite(x) == 1
