"""Live quality of one version from the labels joined to its answers: tumbling windows (by labelled rows or by
time), a tally since load, and a status from comparing each closed window with the version's reference quality.
The tests and their false-alarm budget: docs/operations.md, "Live quality"."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from fastserve.config import QualityOptions
from fastserve.quality.measures import AUC_BINS, CLASSIFICATION, LOSSES, REGRESSION, Tally, read_quality

log = logging.getLogger("fastserve.quality")
STATUSES = ("ok", "warn", "alert")
GUARD_LOSS = {CLASSIFICATION: "log_loss", REGRESSION: "squared_error"}


class LabelError(ValueError):
    """A label this version cannot be scored on; `index` is its place in the request."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class LossTest:
    """One loss of a window against the reference's."""

    live: float
    reference: float
    z: float | None  # (None: infinite)
    status: str

    def as_json(self) -> dict[str, Any]:
        return {"live": self.live, "reference": self.reference, "z": self.z, "status": self.status}


@dataclass(frozen=True, slots=True)
class QualityWindow:
    """A closed window: its measures (`Tally.figures`) and its tests against the reference."""

    closed_at: float
    status: str
    figures: dict[str, Any]
    tests: dict[str, LossTest]  # by loss; none for a window not judged

    def as_json(self) -> dict[str, Any]:
        return {"closed_at": self.closed_at, "status": self.status, **self.figures,
                "tests": {name: test.as_json() for name, test in self.tests.items()}}


@dataclass(frozen=True, slots=True)
class Comparison:
    """The canary's recent loss against the primary's (`compare`), and the verdict: worse, better or same."""

    loss: str
    canary: float
    primary: float
    canary_rows: int
    primary_rows: int
    z: float | None  # (None: infinite)
    verdict: str

    def as_json(self) -> dict[str, Any]:
        return {"loss": self.loss, "canary": self.canary, "primary": self.primary,
                "rows": {"canary": self.canary_rows, "primary": self.primary_rows}, "z": self.z,
                "verdict": self.verdict}


def one_sided_z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - min(max(alpha, 1e-15), 0.5))


def worse_z(a: Tally, b_mean: float, b_var: float, b_rows: int, name: str) -> float:
    """Welch's z of tally `a`'s mean loss over `b`'s (positive: `a` is worse)."""
    mean, var = a.mean_var(name)
    spread = math.sqrt(var / max(a.rows, 1) + b_var / max(b_rows, 1))
    if spread == 0:
        return 0.0 if mean == b_mean else math.copysign(math.inf, mean - b_mean)
    return (mean - b_mean) / spread


class QualityMonitor:
    """Per version. `add` takes the rows whose labels arrived (predictions as kept by the store, and the labels);
    `report` is what `GET /v1/models/{name}/quality` shows of the version."""

    def __init__(self, kind: str, options: QualityOptions, label: str, reference: dict[str, Any] | None = None,
                 classes: list[Any] | None = None) -> None:
        self.kind, self.options, self.label, self.reference = kind, options, label, reference
        self.classes: list[Any] = list(classes or (reference or {}).get("classes") or [])
        self.column = {value: i for i, value in enumerate(self.classes)}
        scale = 6.0 * float((reference or {}).get("residual_std") or 0.0)
        self._scale = scale if scale > 0 else None  # (without a reference: from the first labels)
        self.window = self._tally()
        self.since_load = self._tally()
        self.last: QualityWindow | None = None
        self.last_tally: Tally | None = None
        self.status = "ok" if reference else "no_reference"
        self.windows = 0
        self._opened = time.monotonic()
        tests = len(LOSSES[kind])
        per_day = 86400.0 / options.window_seconds if options.window_seconds > 0 else 1440.0
        self.critical = {level: one_sided_z(options.alerts_per_day * factor / per_day / tests)
                         for level, factor in (("alert", 1.0), ("warn", 10.0))}

    def _tally(self) -> Tally:
        return Tally(self.kind, classes=len(self.classes), scale=self._scale or 1.0)

    def check_label(self, value: Any, index: int) -> None:
        """Refuse a label of the wrong type or, for a classifier with known classes, not one of them."""
        if self.kind == REGRESSION:
            if type(value) not in (int, float) or not math.isfinite(value):
                raise LabelError(f"expected a finite number, got {value!r}", index)
            return
        if type(value) not in (int, str):
            raise LabelError(f"expected a class label (an integer or a string), got {value!r}", index)
        if self.classes and value not in self.column:
            known = ", ".join(repr(c) for c in self.classes[:20])
            raise LabelError(f"{value!r} is not one of the model's classes ({known})", index)

    def learn_classes(self, predicted: np.ndarray, scores: np.ndarray) -> None:
        """Without a reference, the classes' columns from predictions: a predicted label is its top column."""
        if not len(predicted) or scores.shape[1] == 0:
            return
        top = scores.argmax(axis=1)
        grown = False
        for value, column in zip(predicted.tolist(), top.tolist(), strict=True):
            if value not in self.column:
                while len(self.classes) <= column:
                    self.classes.append(None)
                if self.classes[column] is None:
                    self.classes[column] = value
                    self.column[value] = column
                    grown = True
        if grown:
            for tally in (self.window, self.since_load):
                self._widen(tally)

    def _widen(self, tally: Tally) -> None:
        k = len(self.classes)
        if tally.classes == k:
            return
        old = tally.classes
        tally.classes = k
        for name, shape in (("support", (k,)), ("hits", (k,))):
            grown = np.zeros(shape, np.int64)
            grown[:old] = getattr(tally, name)
            setattr(tally, name, grown)
        auc = np.zeros((k, 2, AUC_BINS), np.int64)
        if old:
            auc[:old] = tally.auc
        tally.auc = auc

    def add(self, predicted: np.ndarray, scores: np.ndarray, truth: list[Any]) -> None:
        """Rows whose labels arrived: the predicted labels and scores the store kept, and the labels."""
        n = len(truth)
        if n == 0:
            return
        if self.kind == CLASSIFICATION:
            if not self.reference:
                self.learn_classes(predicted, scores)
            k = len(self.classes)
            column = self.column
            known = [i for i in range(n) if truth[i] in column and predicted[i] in column]
            if len(known) < n:
                log.warning("%s: %d label(s) of classes the version does not know were not scored", self.label,
                            n - len(known))
            if not known:
                return
            rows = np.asarray(known, dtype=np.int64)
            t = np.array([column[truth[i]] for i in known], dtype=np.int64)
            p = np.array([column[v] for v in predicted[rows].tolist()], dtype=np.int64)
            probabilities = scores[rows, :k].astype(np.float64) if scores.shape[1] >= k else np.eye(k)[p]
            for tally in (self.window, self.since_load):
                tally.add_classified(probabilities, p, t)
        else:
            values = scores[:, 0].astype(np.float64)
            truth_values = np.asarray(truth, dtype=np.float64)
            if self._scale is None:  # no reference: the histogram's span from the first labels
                self._scale = 6.0 * (float(np.std(values - truth_values)) or 1.0)
                self.window.scale = self.since_load.scale = self._scale
            for tally in (self.window, self.since_load):
                tally.add_regressed(values, truth_values)
        self.close_if_due()

    def close_if_due(self) -> None:
        rows, options = self.window.rows, self.options
        if rows >= options.window_rows or (options.window_seconds > 0 and rows >= options.min_rows
                                           and time.monotonic() - self._opened >= options.window_seconds):
            self.close_window()

    def close_window(self) -> QualityWindow:
        """Compare the window with the reference, keep it as the last window, start the next."""
        tally = self.window
        tests, status = self._tests(tally)
        self.last = QualityWindow(time.time(), status, tally.figures(self.classes), tests)
        if status != self.status and self.reference:
            reasons = [f"{name} {t.live} vs {t.reference} (z {t.z})" for name, t in tests.items()
                       if t.status != "ok"]
            log.warning("%s: quality status %s -> %s (%s)", self.label, self.status, status,
                        "; ".join(reasons) or "as the reference")
        if self.reference:
            self.status = status
        self.windows += 1
        self.last_tally = tally
        self.window = self._tally()
        self._opened = time.monotonic()
        return self.last

    def _tests(self, tally: Tally) -> tuple[dict[str, LossTest], str]:
        """Each loss of the window against the reference's: one-sided Welch z-tests (worse only), Bonferroni over
        the losses; a window under `min_rows` is not judged."""
        reference = self.reference
        if not reference or tally.rows < self.options.min_rows:
            return {}, self.status
        tests: dict[str, LossTest] = {}
        status = "ok"
        ref_rows = int(reference.get("rows", 0))
        for name in LOSSES[self.kind]:
            ref = reference["losses"].get(name)
            if ref is None:
                continue
            z = worse_z(tally, ref["mean"], ref["var"], ref_rows, name)
            level = "alert" if z > self.critical["alert"] else "warn" if z > self.critical["warn"] else "ok"
            if STATUSES.index(level) > STATUSES.index(status):
                status = level
            tests[name] = LossTest(round(tally.mean_var(name)[0], 6), round(ref["mean"], 6),
                                   round(z, 3) if math.isfinite(z) else None, level)
        return tests, status

    def recent(self) -> Tally:
        """The current window with the last closed one: what the canary's guard compares."""
        out = self._tally()
        for tally in (self.last_tally, self.window):
            if tally is not None:
                if tally.classes != out.classes:
                    self._widen(tally)
                out.merge(tally)
        return out

    def report(self) -> dict[str, Any]:
        """What `GET /v1/models/{name}/quality` shows of the version."""
        self.close_if_due()
        return {"kind": self.kind, "status": self.status, "classes": self.classes if self.kind == CLASSIFICATION
                else None, "windows": self.windows, "window_rows": self.options.window_rows,
                "window_seconds": self.options.window_seconds,
                "reference": (self.reference or {}).get("figures"),
                "critical_z": {k: round(v, 3) for k, v in self.critical.items()},
                "current_window": self.window.figures(self.classes),
                "last_window": self.last.as_json() if self.last is not None else None,
                "since_load": self.since_load.figures(self.classes)}


def compare(canary: QualityMonitor, primary: QualityMonitor, alpha: float, min_rows: int) -> Comparison | None:
    """The canary's recent loss against the primary's, beyond chance either way (a two-sided Welch z-test at
    `alpha`): None with too few labelled rows on a side."""
    a, b = canary.recent(), primary.recent()
    if a.rows < min_rows or b.rows < min_rows or canary.kind != primary.kind:
        return None
    name = GUARD_LOSS[canary.kind]
    b_mean, b_var = b.mean_var(name)
    z = worse_z(a, b_mean, b_var, b.rows, name)
    critical = NormalDist().inv_cdf(1 - alpha / 2)
    verdict = "worse" if z > critical else "better" if z < -critical else "same"
    return Comparison(name, round(a.mean_var(name)[0], 6), round(b_mean, 6), a.rows, b.rows,
                      round(z, 3) if math.isfinite(z) else None, verdict)


def monitor_for(folder: Path, label: str, options: QualityOptions, outputs: list[str]) -> QualityMonitor | None:
    """A version's monitor from its outputs' names (classes or a prediction), its quality.json when export wrote
    one, and else its validation set's labels (which classes the probability columns are)."""
    names = set(outputs)
    kind = CLASSIFICATION if "label" in names or "probabilities" in names else \
        REGRESSION if "prediction" in names or "variable" in names else None
    if kind is None:
        return None
    try:
        reference = read_quality(folder)
    except ValueError as exc:
        log.warning("%s: %s; live quality is measured without a reference", label, exc)
        reference = None
    if reference is not None and reference["kind"] != kind:
        log.warning("%s: quality.json is for %s, the model does %s; ignored", label, reference["kind"], kind)
        reference = None
    classes = None
    if kind == CLASSIFICATION and reference is None:
        classes = _validation_classes(folder)
    return QualityMonitor(kind, options, label, reference, classes)


def _validation_classes(folder: Path) -> list[Any] | None:
    """The classes in probability-column order, as the validation set's golden answers show them."""
    try:
        with np.load(folder / "validation.npz", allow_pickle=False) as data:
            if "label" not in data or "probabilities" not in data:
                return None
            labels, top = data["label"].tolist(), data["probabilities"].argmax(axis=1).tolist()
            width = data["probabilities"].shape[1]
    except (OSError, ValueError):
        return None
    classes: list[Any] = [None] * width
    for value, column in zip(labels, top, strict=True):
        classes[column] = value
    return classes if all(c is not None for c in classes) else None
