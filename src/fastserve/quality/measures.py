"""Quality of predictions against labels, in tallies that add up: one per window, one since load, one for the
reference (the version's validation set, written at export as quality.json). Each loss the alerts test is kept as a
sum and a sum of squares, so a window's mean loss can be compared with the reference's beyond chance."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QUALITY_FILE = "quality.json"
CLASSIFICATION, REGRESSION = "classification", "regression"
AUC_BINS = 1000  # score histogram bins for the streaming ROC AUC: its error is at most half the pairs sharing a bin
ECE_BINS = 15
RESIDUAL_BINS = 120  # the residual histogram spans +-6 reference standard deviations
EPS = 1e-15
LOSSES = {CLASSIFICATION: ("zero_one", "log_loss", "brier"), REGRESSION: ("absolute_error", "squared_error")}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


@dataclass
class Tally:
    """Labelled rows of one version, summed. `classes` (classification): the labels in the order of the
    probability columns; `scale`: the residual histogram's half-width (regression)."""

    kind: str
    classes: int = 0
    scale: float = 1.0
    rows: int = 0
    loss: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, sum of squares]
    support: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per class: rows labelled with it
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per class: of those, predicted right
    auc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # class x (other, itself) x AUC_BINS
    ece: np.ndarray = field(default_factory=lambda: np.zeros((3, ECE_BINS)))  # rows, confidence, right per bin
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(RESIDUAL_BINS + 2, np.int64))
    bias: float = 0.0

    def __post_init__(self) -> None:
        for name in LOSSES[self.kind]:
            self.loss.setdefault(name, [0.0, 0.0])
        if self.kind == CLASSIFICATION and len(self.support) != self.classes:
            self.support = np.zeros(self.classes, np.int64)
            self.hits = np.zeros(self.classes, np.int64)
            self.auc = np.zeros((self.classes, 2, AUC_BINS), np.int64)

    def _losses(self, **values: np.ndarray) -> None:
        for name, value in values.items():
            total = self.loss[name]
            total[0] += float(value.sum())
            total[1] += float(np.square(value).sum())

    def add_classified(self, probabilities: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Rows of class probabilities (columns in `classes` order), the predicted class index, the true one."""
        n, k = len(truth), self.classes
        if n == 0:
            return
        rows = np.arange(n)
        p = np.clip(probabilities[:, :k].astype(np.float64), EPS, 1.0)
        right = predicted == truth
        onehot = np.zeros((n, k))
        onehot[rows, truth] = 1.0
        self._losses(zero_one=(~right).astype(np.float64), log_loss=-np.log(p[rows, truth]),
                     brier=np.square(probabilities[:, :k] - onehot).sum(axis=1))
        np.add.at(self.support, truth, 1)
        np.add.at(self.hits, truth[right], 1)
        bins = np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        for c in range(k if k > 2 else 1 if k == 2 else 0):
            column = 1 if k == 2 else c  # binary: the positive class's score only
            positive = (truth == column).astype(np.int64)
            np.add.at(self.auc[column], (positive, bins[:, column]), 1)
        confidence = p[rows, predicted] if k else np.zeros(n)
        which = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        np.add.at(self.ece[0], which, 1.0)
        np.add.at(self.ece[1], which, confidence)
        np.add.at(self.ece[2], which, right.astype(np.float64))
        self.rows += n

    def add_regressed(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        n = len(truth)
        if n == 0:
            return
        residual = predicted.astype(np.float64) - truth.astype(np.float64)
        self._losses(absolute_error=np.abs(residual), squared_error=np.square(residual))
        self.bias += float(residual.sum())
        scaled = np.floor((residual / self.scale + 1.0) * RESIDUAL_BINS / 2).astype(np.int64) + 1
        np.add.at(self.residuals, np.clip(scaled, 0, RESIDUAL_BINS + 1), 1)
        self.rows += n

    def merge(self, other: Tally) -> None:
        self.rows += other.rows
        for name, (s, s2) in other.loss.items():
            self.loss[name][0] += s
            self.loss[name][1] += s2
        self.bias += other.bias
        self.residuals += other.residuals
        if self.kind == CLASSIFICATION:
            self.support += other.support
            self.hits += other.hits
            self.auc += other.auc
            self.ece += other.ece

    def mean_var(self, name: str) -> tuple[float, float]:
        """A loss's mean and (sample) variance per row."""
        s, s2 = self.loss[name]
        n = self.rows
        if n == 0:
            return math.nan, math.nan
        mean = s / n
        return mean, max(0.0, (s2 - n * mean * mean) / (n - 1)) if n > 1 else 0.0

    def roc_auc(self) -> tuple[float | None, float | None]:
        """(ROC AUC, its largest error from binning): binary, or the mean one-vs-rest AUC over classes seen on both
        sides. Pairs whose scores share a bin count as half; the error bound is half their share."""
        aucs, errors = [], []
        columns = [1] if self.classes == 2 else range(self.classes)
        for c in columns:
            negative, positive = self.auc[c, 0].astype(np.float64), self.auc[c, 1].astype(np.float64)
            n_pos, n_neg = positive.sum(), negative.sum()
            if n_pos == 0 or n_neg == 0:
                continue
            below = np.cumsum(negative) - negative  # negatives in lower bins
            pairs = n_pos * n_neg
            tied = float((positive * negative).sum())
            aucs.append(float((positive * below).sum() + 0.5 * tied) / pairs)
            errors.append(0.5 * tied / pairs)
        if not aucs:
            return None, None
        return float(np.mean(aucs)), float(np.mean(errors))

    def calibration_error(self) -> float | None:
        rows, confidence, right = self.ece
        total = rows.sum()
        if total == 0:
            return None
        seen = rows > 0
        return float((np.abs(right[seen] - confidence[seen])).sum() / total)

    def residual_quantiles(self) -> dict[str, float | None]:
        total = self.residuals.sum()
        out: dict[str, float | None] = {}
        for q in (0.05, 0.25, 0.5, 0.75, 0.95):
            if total == 0:
                out[f"p{round(q * 100)}"] = None
                continue
            k = int(np.searchsorted(np.cumsum(self.residuals), q * total))
            if k == 0 or k == RESIDUAL_BINS + 1:  # beyond the histogram's span: its edge, as a bound
                out[f"p{round(q * 100)}"] = _round(self.scale * (-1.0 if k == 0 else 1.0))
                continue
            middle = ((k - 1 + 0.5) * 2 / RESIDUAL_BINS - 1.0) * self.scale
            out[f"p{round(q * 100)}"] = _round(middle)
        return out

    def figures(self, names: list[Any] | None = None) -> dict[str, Any]:
        """The tally's measures, as the API shows them: a map, which quality.json holds too (the reference's),
        whose measures depend on the kind and on whether any row was labelled."""
        n = self.rows
        out: dict[str, Any] = {"rows": n}
        if n == 0:
            return out
        if self.kind == CLASSIFICATION:
            auc, auc_error = self.roc_auc()
            out.update(accuracy=_round(1.0 - self.mean_var("zero_one")[0]),
                       log_loss=_round(self.mean_var("log_loss")[0]), brier=_round(self.mean_var("brier")[0]),
                       roc_auc=_round(auc), roc_auc_error=_round(auc_error),
                       calibration_error=_round(self.calibration_error()))
            labels = names if names is not None else list(range(self.classes))
            out["recall"] = {str(labels[c]): _round(self.hits[c] / self.support[c]) for c in range(self.classes)
                             if self.support[c]}
        else:
            mae = self.mean_var("absolute_error")[0]
            out.update(mae=_round(mae), rmse=_round(math.sqrt(self.mean_var("squared_error")[0])),
                       bias=_round(self.bias / n), residuals=self.residual_quantiles())
        return out


def reference_quality(outputs: dict[str, np.ndarray], labels: np.ndarray, classes: list[Any] | None = None,
                      ) -> dict[str, Any]:
    """A version's quality on its validation set (what export writes as quality.json): the measures, each loss's
    mean and variance per row, and what the live tallies need (the classes, the residuals' scale)."""
    labels = np.asarray(labels)
    if "probabilities" in outputs or "label" in outputs:
        probabilities = np.asarray(outputs["probabilities"], dtype=np.float64)
        names = list(classes) if classes is not None else sorted(set(np.asarray(outputs["label"]).tolist()))
        index = {name: i for i, name in enumerate(names)}
        truth = np.array([index[v] for v in labels.tolist()], dtype=np.int64)
        predicted = np.array([index[v] for v in np.asarray(outputs["label"]).tolist()], dtype=np.int64)
        tally = Tally(CLASSIFICATION, classes=len(names))
        tally.add_classified(probabilities, predicted, truth)
        extra: dict[str, Any] = {"classes": [v.item() if hasattr(v, "item") else v for v in names]}
    else:
        predicted_values = np.asarray(outputs["prediction"], dtype=np.float64).reshape(-1)
        residual_std = float(np.std(predicted_values - labels.astype(np.float64))) or 1.0
        tally = Tally(REGRESSION, scale=6.0 * residual_std)
        tally.add_regressed(predicted_values, labels.astype(np.float64))
        extra = {"residual_std": residual_std}
    losses = {name: {"mean": tally.mean_var(name)[0], "var": tally.mean_var(name)[1]} for name in tally.loss}
    return {"kind": tally.kind, "rows": tally.rows, **extra, "losses": losses,
            "figures": tally.figures(extra.get("classes"))}


def write_quality(folder: Path, quality: dict[str, Any]) -> None:
    (folder / QUALITY_FILE).write_text(json.dumps(quality, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_quality(folder: Path) -> dict[str, Any] | None:
    path = folder / QUALITY_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in LOSSES or not isinstance(data.get("losses"), dict):
        raise ValueError(f"{path}: expected an object with `kind` (classification or regression) and `losses`")
    return data
