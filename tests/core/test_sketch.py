"""The binned drift sketch: exact counts, counters, merging, bounded memory."""

import numpy as np
import pytest

from fastserve._core.sketch import MAX_BINS, BinnedSketch


def make(rng, columns=8, bins=32):
    ref = rng.normal(size=(20_000, columns))
    edges = [np.quantile(ref[:, j], np.linspace(0, 1, bins + 1)[1:-1]) for j in range(columns)]
    return BinnedSketch(edges, ref.min(axis=0), ref.max(axis=0)), edges, ref


def test_counts_equal_numpy_searchsorted_and_counters_see_everything():
    rng = np.random.default_rng(1)
    sketch, edges, ref = make(rng)
    x = (rng.normal(size=(500, 8)) * 1.5).astype(np.float32)
    x[3, 2], x[4, 2], x[5, 5] = np.nan, np.inf, -np.inf
    sketch.update(x)
    sketch.update(x[:7])
    both = np.concatenate([x, x[:7]])
    for j in range(8):
        values = both[:, j].astype(np.float64)
        finite = values[np.isfinite(values)]
        expected = np.bincount(np.searchsorted(edges[j], finite, side="right"), minlength=len(edges[j]) + 1)
        np.testing.assert_array_equal(sketch.bin_counts(j), expected)
        assert sketch.below[j] == (finite < ref[:, j].min()).sum()
        assert sketch.above[j] == (finite > ref[:, j].max()).sum()
        assert sketch.sum[j] == pytest.approx(finite.sum(), rel=1e-9)
        assert sketch.sum_sq[j] == pytest.approx((finite ** 2).sum(), rel=1e-9)
    assert sketch.nan[2] == 2 and sketch.inf[2] == 2 and sketch.inf[5] == 2 and sketch.rows == 507


def test_merging_parts_equals_sketching_the_whole():
    rng = np.random.default_rng(2)
    whole, edges, ref = make(rng)
    parts = [BinnedSketch(edges, ref.min(axis=0), ref.max(axis=0)) for _ in range(3)]
    data = rng.normal(size=(3, 300, 8)).astype(np.float32)
    for part, chunk in zip(parts, data, strict=True):
        part.update(chunk)
        whole.update(chunk)
    merged = parts[0].copy()
    merged.merge(parts[1])
    merged.merge(parts[2])
    for j in range(8):
        np.testing.assert_array_equal(merged.bin_counts(j), whole.bin_counts(j))
    assert merged.rows == whole.rows == 900
    with pytest.raises(ValueError, match="same edges"):
        merged.merge(BinnedSketch([[0.0]] * 8, np.zeros(8), np.ones(8)))


def test_memory_is_fixed_and_small_per_column():
    rng = np.random.default_rng(3)
    sketch, _, _ = make(rng, columns=100, bins=64)
    before = sketch.nbytes
    for _ in range(50):
        sketch.update(rng.normal(size=(64, 100)).astype(np.float32))
    assert sketch.nbytes == before and before / 100 < 32 * 1024  # ~1.1 KB per column, whatever the traffic
    assert MAX_BINS == 64


def test_bad_edges_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        BinnedSketch([[2.0, 1.0]], np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="at most 63"):
        BinnedSketch([np.arange(64.0)], np.zeros(1), np.ones(1))
