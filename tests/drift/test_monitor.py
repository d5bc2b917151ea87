"""Drift scores and statuses on replayed reference data and on known shifts (in-process, seeded)."""

import numpy as np

from fastserve.config import DriftOptions
from fastserve.drift.monitor import DriftMonitor
from fastserve.drift.profile import build_profile

D = 100


def reference_profile(rng, categorical=False):
    ref = rng.normal(size=(50_000, D))
    if categorical:
        ref[:, 0] = rng.choice(4, size=len(ref), p=[0.4, 0.3, 0.2, 0.1])
    return build_profile(ref, [f"f{j}" for j in range(D)], {})


def window(monitor, x):
    monitor.inputs.window.update(np.ascontiguousarray(x, dtype=np.float32))
    return monitor.close_window().as_json()


def test_replayed_reference_rarely_alerts():
    """The false-alarm budget is one alert per day of one-minute windows per model (1/1440 per window), split over
    100 columns and two tests. Measured here over 600 windows of 1,000 rows: at most 3 alerts (the budget's
    expectation is 0.4; the bound leaves room for the reference being a sample itself)."""
    rng = np.random.default_rng(10)
    monitor = DriftMonitor(reference_profile(rng), DriftOptions(window_rows=1000), "t")
    alerts = sum(window(monitor, rng.normal(size=(1000, D)))["status"] == "alert" for _ in range(600))
    assert alerts <= 3, alerts


def test_small_mean_shift_is_flagged_on_that_feature_only():
    """0.2 sigma in one feature, flagged in the first 1,000 rows after it starts, in at least 90 of 100 trials
    (96% over 600 trials in `python -m benchmarks.bench_drift`); 0.1 sigma within 5,000 rows."""
    rng = np.random.default_rng(11)
    profile = reference_profile(rng)
    for shift, rows, needed in ((0.2, 1000, 90), (0.1, 5000, 90)):
        hits = 0
        for _ in range(100):
            monitor = DriftMonitor(profile, DriftOptions(window_rows=rows), "t")
            x = rng.normal(size=(rows, D))
            x[:, 7] += shift
            result = window(monitor, x)
            flagged = [c["name"] for c in result["inputs"] if c["status"] == "alert"]
            hits += flagged == ["f7"]
        assert hits >= needed, (shift, hits)


def test_categorical_frequency_shift_is_flagged():
    rng = np.random.default_rng(12)
    monitor = DriftMonitor(reference_profile(rng, categorical=True), DriftOptions(window_rows=2000), "t")
    x = rng.normal(size=(2000, D))
    x[:, 0] = rng.choice(4, size=2000, p=[0.3, 0.3, 0.25, 0.15])  # one category loses a quarter of its share
    result = window(monitor, x)
    f0 = result["inputs"][0]
    assert f0["status"] == "alert" and result["top"][0] == "f0"
    assert monitor.inputs.columns[0]["kind"] == "discrete" and len(monitor.inputs.columns[0]["counts"]) == 4


def test_large_shift_has_large_psi_and_totals_accumulate():
    rng = np.random.default_rng(13)
    monitor = DriftMonitor(reference_profile(rng), DriftOptions(window_rows=3000), "t")
    x = rng.normal(size=(3000, D))
    x[:, 3] = x[:, 3] * 2 + 1
    result = window(monitor, x)
    f3 = result["inputs"][3]
    assert f3["psi"] > 0.25 and f3["ks"] > 0.2 and f3["js"] > 0.2 and f3["status"] == "alert"
    assert result["inputs"][4]["psi"] < 0.05
    report = monitor.report()
    assert report["since_load"]["rows"] == 3000 and report["status"] == "alert" and report["windows"] == 1
    assert report["memory_bytes"] / D < 32 * 1024


def test_profile_command_writes_a_profile_the_server_reads(tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import MODELS

    shutil.copytree(MODELS / "churn", tmp_path / "churn")
    (tmp_path / "churn" / "1" / "profile.json").unlink()
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    pd.DataFrame(records * 20).to_csv(tmp_path / "sample.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "fastserve", "profile", str(tmp_path / "sample.csv"), "--model",
                           "churn/1", "--models-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    profile = json.loads((tmp_path / "churn" / "1" / "profile.json").read_text())
    assert profile["inputs"]["rows"] == 64 * 20 and len(profile["inputs"]["columns"]) == 22
    assert [c["name"] for c in profile["predictions"]["columns"]] == ["label", "score"]
    done = subprocess.run([sys.executable, "-m", "fastserve", "profile", str(tmp_path / "sample.csv"), "--model",
                           "churn/9", "--models-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "give --model NAME/VERSION" in done.stderr


def test_quantiles_against_the_reference_are_within_a_bin():
    rng = np.random.default_rng(14)
    monitor = DriftMonitor(reference_profile(rng), DriftOptions(window_rows=20_000), "t")
    x = rng.normal(size=(20_000, D))
    x[:, 2] += 1.0
    result = window(monitor, x)
    q = result["inputs"][2]["quantiles"]
    assert abs(q["p50"][1] - 0.0) < 0.05 and abs(q["p50"][0] - 1.0) < 0.1  # window vs reference median
    assert abs(q["p90"][1] - 1.2816) < 0.1 and abs(q["p10"][1] + 1.2816) < 0.1


def test_missing_share_alerts_only_when_it_moves_enough():
    rng = np.random.default_rng(15)
    ref = rng.normal(size=(50_000, 3))
    ref[rng.random(50_000) < 0.02, 1] = np.nan  # 2% missing in training
    profile = build_profile(ref, ["a", "b", "c"], {})
    assert profile["inputs"]["columns"][1]["missing"] == int(np.isnan(ref[:, 1]).sum())
    for share, expected in ((0.2, "alert"), (0.025, "ok")):
        monitor = DriftMonitor(profile, DriftOptions(window_rows=5000), "t")
        x = rng.normal(size=(5000, 3))
        x[rng.random(5000) < share, 1] = np.nan
        b = window(monitor, x)["inputs"][1]
        assert b["status"] == expected, (share, b)
        assert (b["missing_z"] > 10) == (expected == "alert")


def test_quantile_bounds_hold_the_exact_quantiles():
    """The counts are exact, so each window quantile lies in the bin the endpoint names, whatever the traffic."""
    rng = np.random.default_rng(16)
    monitor = DriftMonitor(reference_profile(rng), DriftOptions(window_rows=10**6), "t")
    x = rng.standard_t(3, size=(100_000, D)) * 0.7 + 0.3  # heavier tails and shifted: not the reference
    result = window(monitor, x)
    for j in (0, 5, 50):
        bounds = result["inputs"][j]["quantile_bounds"]
        for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
            exact = float(np.quantile(x[:, j].astype(np.float32), q))
            lo, hi = bounds[name]
            assert lo <= exact <= hi, (j, name, lo, exact, hi)
            assert lo <= result["inputs"][j]["quantiles"][name][0] <= hi


def test_a_missing_share_test_that_cannot_reject_gives_its_budget_to_the_others():
    """Tarone: with no missing value in the reference nor the window, the missing-share test cannot reject, so the
    mean test takes its share of the column's budget. A window whose mean z lies between the two critical values
    alerts on such a column, and not on one whose reference had missing values (its three tests share the budget)."""
    rng = np.random.default_rng(16)
    ref = rng.normal(size=(50_000, 2))
    ref[:50, 1] = np.nan  # column b: 50 missing values in training
    profile = build_profile(ref, ["a", "b"], {})
    monitor = DriftMonitor(profile, DriftOptions(window_rows=1000), "t")
    strict, relaxed = monitor.critical["alert"]["z"], monitor.critical_untested["alert"]["z"]
    assert relaxed < strict
    x = rng.normal(size=(1000, 2))
    for j, column in enumerate(monitor.inputs.columns):
        spread = column["std"] * np.sqrt(1 / 1000 + 1 / (50_000 - column["missing"]))
        x[:, j] += column["mean"] - x[:, j].mean() + (strict + relaxed) / 2 * spread
    a, b = window(monitor, x)["inputs"]
    assert relaxed < a["z"] < strict and relaxed < b["z"] < strict, (a["z"], b["z"], relaxed, strict)
    assert (a["status"], b["status"]) == ("alert", "warn")
