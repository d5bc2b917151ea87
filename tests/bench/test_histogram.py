"""The load generator's latency histogram: bounded relative error, exact merging, a JSON round trip."""

import json
import pickle

import numpy as np
import pytest

from fastserve.bench.histogram import Histogram


def filled(values) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(int(v))
    return h


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e9])
def test_percentiles_within_one_percent_of_numpy(scale):
    rng = np.random.default_rng(int(scale))
    values = (rng.lognormal(0.0, 1.0, size=50_000) * scale).astype(np.int64)
    h = filled(values)
    assert h.count == len(values)
    assert h.max == values.max()
    assert h.min == values.min()
    assert h.mean == pytest.approx(values.mean(), rel=1e-9)
    for q in (1, 10, 50, 90, 99, 99.9):
        # The value of rank ceil(q% of n), as the histogram defines it (numpy interpolates by default).
        assert h.percentile(q) == pytest.approx(np.percentile(values, q, method="inverted_cdf"), rel=0.01), q
        assert h.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.01 if q < 99.9 else 0.03), q
    assert h.percentile(0) == values.min()
    assert h.percentile(100) == values.max()


def test_every_value_from_1us_to_100s_reads_back_within_one_percent():
    for v in np.unique(np.geomspace(1e3, 1e11, 5_000).astype(np.int64)):
        h = Histogram()
        h.record(int(v))
        h.record(int(v) * 3)  # so that min and max do not give the value back exactly
        h.record(1)
        assert h.percentile(50) == pytest.approx(v, rel=0.01)


def test_small_values_are_exact_and_huge_ones_kept_as_max():
    h = filled([0, 1, 2, 255, -5])
    assert h.percentile(20) == 0 and h.percentile(60) == 1 and h.percentile(80) == 2 and h.percentile(100) == 255
    h.record(10**15)
    assert h.max == 10**15 and h.percentile(100) == 10**15
    assert Histogram().percentile(99) == 0 and Histogram().count == 0
    with pytest.raises(ValueError, match="percentile"):
        h.percentile(101)


def test_merge_equals_one_histogram_of_both():
    rng = np.random.default_rng(2)
    a_values = rng.exponential(50_000, size=10_000).astype(np.int64)
    b_values = rng.exponential(5_000_000, size=7_000).astype(np.int64)
    a, b = filled(a_values), filled(b_values)
    a.merge(b)
    both = filled(np.concatenate([a_values, b_values]))
    assert a == both
    assert a.to_dict() == both.to_dict()
    for q in (50, 99, 99.99):
        assert a.percentile(q) == both.percentile(q)


def test_to_dict_round_trips_through_json_and_pickle():
    rng = np.random.default_rng(3)
    h = filled(rng.lognormal(10, 2, size=5_000).astype(np.int64))
    again = Histogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h and again.count == h.count and again.max == h.max and again.mean == h.mean
    assert pickle.loads(pickle.dumps(h)) == h
    assert Histogram.from_dict(Histogram().to_dict()) == Histogram()
    assert h.copy() == h
    with pytest.raises(ValueError, match="format"):
        Histogram.from_dict({"format": "other"})
    bad = h.to_dict()
    bad["count"] += 1
    with pytest.raises(ValueError, match="count"):
        Histogram.from_dict(bad)
