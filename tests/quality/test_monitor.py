"""A version's live quality against its reference: windows, alerts beyond chance, and the canary comparison."""

from __future__ import annotations

import numpy as np
import pytest

from fastserve.config import QualityOptions
from fastserve.quality.measures import CLASSIFICATION, REGRESSION, reference_quality
from fastserve.quality.monitor import LabelError, QualityMonitor, compare

OPTIONS = QualityOptions(window_rows=500, window_seconds=0, min_rows=100)


def _rows(n: int, seed: int, flip: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A calibrated classifier's answers and labels; `flip`: the share of labels flipped."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.02, 0.98, n)
    truth = (rng.random(n) < s).astype(int)
    truth = np.where(rng.random(n) < flip, 1 - truth, truth)
    p = np.column_stack([1 - s, s]).astype(np.float32)
    return p.argmax(axis=1), p, truth.tolist()


def _monitor(options: QualityOptions = OPTIONS) -> QualityMonitor:
    predicted, p, truth = _rows(4000, seed=0)
    reference = reference_quality({"label": predicted, "probabilities": p}, np.array(truth), classes=[0, 1])
    return QualityMonitor(CLASSIFICATION, options, "m v1", reference)


def test_healthy_windows_stay_ok_and_a_label_flip_alerts() -> None:
    monitor = _monitor()
    for seed in range(1, 21):  # 20 windows of a healthy model: no alert, at a budget of one a day of 1,440
        monitor.add(*_rows(500, seed))
        assert monitor.status == "ok", monitor.last
    assert monitor.windows == 20
    monitor.add(*_rows(500, 99, flip=0.3))
    assert monitor.status == "alert"
    tests = monitor.last.tests
    assert tests["zero_one"].status == "alert" and tests["zero_one"].live > tests["zero_one"].reference
    monitor.add(*_rows(500, 100))
    assert monitor.status == "ok"  # the next healthy window


def test_a_window_under_min_rows_is_not_judged() -> None:
    monitor = _monitor(QualityOptions(window_rows=500, window_seconds=0.000001, min_rows=100))
    monitor.add(*_rows(50, 1, flip=1.0))
    assert monitor.windows == 0 and monitor.status == "ok"
    monitor.add(*_rows(60, 2, flip=1.0))  # 110 rows, past the window's time: closed and judged
    assert monitor.windows == 1 and monitor.status == "alert"


def test_labels_are_checked_against_the_classes() -> None:
    monitor = _monitor()
    monitor.check_label(1, 0)
    with pytest.raises(LabelError, match="not one of the model's classes"):
        monitor.check_label(2, 3)
    with pytest.raises(LabelError, match="class label"):
        monitor.check_label(1.5, 0)
    regression = QualityMonitor(REGRESSION, OPTIONS, "r v1")
    regression.check_label(1.5, 0)
    with pytest.raises(LabelError, match="finite number"):
        regression.check_label("x", 0)


def test_without_a_reference_classes_are_learned_and_no_alert_is_raised() -> None:
    monitor = QualityMonitor(CLASSIFICATION, OPTIONS, "m v1", None, None)
    predicted, p, truth = _rows(600, 4, flip=0.5)
    monitor.add(predicted, p, truth)
    assert monitor.classes == [0, 1] and monitor.status == "no_reference"
    assert monitor.since_load.rows == 600 and monitor.last is not None and monitor.last.tests == {}


def test_compare_tells_a_worse_canary_from_one_that_is_not() -> None:
    primary, canary = _monitor(), _monitor()
    primary.add(*_rows(400, 1))
    canary.add(*_rows(400, 2))
    assert compare(canary, primary, 1e-3, 100).verdict == "same"
    worse = _monitor()
    worse.add(*_rows(400, 3, flip=0.3))
    verdict = compare(worse, primary, 1e-3, 100)
    assert verdict is not None and verdict.verdict == "worse" and verdict.loss == "log_loss"
    assert compare(primary, worse, 1e-3, 100).verdict == "better"
    assert compare(worse, primary, 1e-3, 1000) is None  # too few labelled rows to judge
