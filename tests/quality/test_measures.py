"""Quality measures of a tally against scikit-learn's on the same rows; tallies add up."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    recall_score,
    roc_auc_score,
)

from fastserve.quality.measures import CLASSIFICATION, REGRESSION, Tally, reference_quality


def _classified(k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), n)
    truth = np.array([rng.choice(k, p=row) for row in p])  # calibrated on purpose: ECE near 0
    return p, p.argmax(axis=1), truth


@pytest.mark.parametrize("k", [2, 4])
def test_classification_measures_match_sklearn(k: int) -> None:
    p, predicted, truth = _classified(k, 5000, seed=k)
    tally = Tally(CLASSIFICATION, classes=k)
    tally.add_classified(p[:2000], predicted[:2000], truth[:2000])
    tally.add_classified(p[2000:], predicted[2000:], truth[2000:])
    figures = tally.figures()
    assert figures["rows"] == 5000
    assert figures["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-6)
    assert figures["log_loss"] == pytest.approx(log_loss(truth, p, labels=list(range(k))), abs=1e-6)
    onehot = np.eye(k)[truth]
    assert figures["brier"] == pytest.approx(np.square(p - onehot).sum(axis=1).mean(), abs=1e-6)
    expected_auc = roc_auc_score(truth, p[:, 1]) if k == 2 else roc_auc_score(truth, p, multi_class="ovr")
    assert abs(figures["roc_auc"] - expected_auc) <= figures["roc_auc_error"] + 1e-9
    assert figures["roc_auc_error"] < 1e-3
    recalls = recall_score(truth, predicted, average=None, labels=list(range(k)))
    assert [figures["recall"][str(c)] for c in range(k)] == pytest.approx(recalls, abs=1e-6)
    assert figures["calibration_error"] < 0.03


def test_an_overconfident_model_has_a_large_calibration_error() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    truth = rng.integers(0, 2, n)
    p1 = np.where(rng.random(n) < 0.7, truth, 1 - truth) * 0.98 + 0.01  # 70% right, 99% sure
    p = np.column_stack([1 - p1, p1])
    tally = Tally(CLASSIFICATION, classes=2)
    tally.add_classified(p, p.argmax(axis=1), truth)
    assert tally.figures()["calibration_error"] == pytest.approx(0.29, abs=0.02)


def test_regression_measures_match_numpy() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(50, 10, 3000)
    predicted = truth + rng.normal(1.5, 4, 3000)
    tally = Tally(REGRESSION, scale=6 * 4.0)
    tally.add_regressed(predicted, truth)
    figures = tally.figures()
    assert figures["mae"] == pytest.approx(mean_absolute_error(truth, predicted), abs=1e-6)
    assert figures["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, predicted)), abs=1e-6)
    assert figures["bias"] == pytest.approx((predicted - truth).mean(), abs=1e-6)
    residual = predicted - truth
    for q in (5, 50, 95):  # within one histogram bin (0.2 standard deviations) of the exact quantile
        assert figures["residuals"][f"p{q}"] == pytest.approx(np.quantile(residual, q / 100), abs=0.2 * 4.0 + 1e-6)


def test_merged_tallies_equal_one_tally_of_all_rows() -> None:
    p, predicted, truth = _classified(3, 900, seed=9)
    whole, a, b = (Tally(CLASSIFICATION, classes=3) for _ in range(3))
    whole.add_classified(p, predicted, truth)
    a.add_classified(p[:300], predicted[:300], truth[:300])
    b.add_classified(p[300:], predicted[300:], truth[300:])
    a.merge(b)
    assert a.figures() == whole.figures()


def test_reference_quality_keeps_each_loss_mean_and_variance() -> None:
    p, predicted, truth = _classified(2, 1000, seed=5)
    ref = reference_quality({"label": predicted, "probabilities": p}, truth, classes=[0, 1])
    zero_one = (predicted != truth).astype(float)
    assert ref["kind"] == CLASSIFICATION and ref["classes"] == [0, 1] and ref["rows"] == 1000
    assert ref["losses"]["zero_one"]["mean"] == pytest.approx(zero_one.mean())
    assert ref["losses"]["zero_one"]["var"] == pytest.approx(zero_one.var(ddof=1))
    named = reference_quality({"label": np.array(["b", "a"]), "probabilities": np.array([[0.3, 0.7], [0.8, 0.2]])},
                              np.array(["b", "b"]), classes=["a", "b"])
    assert named["figures"]["accuracy"] == 0.5 and named["figures"]["recall"] == {"b": 0.5}
