"""Drift of a serving version against its reference profile: sketches fed from every batch, tumbling windows,
scores per column (PSI, KS, Jensen-Shannon, mean and missing-share z-tests), and a status with the top drifting
columns. The tests and their false-alarm budget: docs/configuration.md, "Drift".
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np

from fastserve._core.sketch import BinnedSketch
from fastserve.config import DriftOptions
from fastserve.drift.profile import prediction_columns

log = logging.getLogger("fastserve.drift")
STATUSES = ("ok", "warn", "alert")
FLUSH_ROWS = 256  # rows kept before the sketches are updated: bounds memory and amortizes the per-update cost


QUANTILES = (0.1, 0.5, 0.9)
BUDGET = {"z": 0.8, "ks": 0.1, "missing": 0.1}  # shares of each column's false-alarm budget, by test
BUDGET_UNTESTED = {"z": 0.8 / 0.9, "ks": 0.1 / 0.9, "missing": 0.0}  # when the missing test cannot reject


def _quantile(counts: np.ndarray, column: dict[str, Any], q: float) -> tuple[float, float, float] | None:
    """Quantile `q` from counts in the column's bins: (estimate, lowest, highest). The counts are exact, so the true
    quantile lies in its bin, [lowest, highest] (the outer bins are bounded by the reference's range, which values
    past it are counted apart from); the estimate interpolates linearly inside the bin."""
    total = counts.sum()
    if total == 0:
        return None
    bounds = [column["low"], *column["edges"], column["high"]]
    cumulative = np.cumsum(counts)
    k = int(np.searchsorted(cumulative, q * total))
    below = cumulative[k - 1] if k > 0 else 0.0
    inside = counts[k]
    lo, hi = bounds[k], bounds[min(k + 1, len(bounds) - 1)]
    share = (q * total - below) / inside if inside else 0.0
    return (round(float(lo + (hi - lo) * min(max(share, 0.0), 1.0)), 6), round(float(lo), 6), round(float(hi), 6))


def _missing_z(missing: int, rows: int, ref_missing: int, ref_rows: int) -> tuple[float, float]:
    """(two-proportion z, change) of the window's share of missing values against the reference's."""
    if rows == 0 or ref_rows == 0:
        return 0.0, 0.0
    share, ref_share = missing / rows, ref_missing / ref_rows
    pooled = (missing + ref_missing) / (rows + ref_rows)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / rows + 1 / ref_rows))
    return ((share - ref_share) / spread if spread > 0 else 0.0), share - ref_share


@dataclass(frozen=True, slots=True)
class CategoryShare:
    category: Any
    share: float
    reference: float

    def as_json(self) -> dict[str, Any]:
        return {"category": self.category, "share": self.share, "reference": self.reference}


def _category_shares(observed: np.ndarray, ref: np.ndarray, column: dict[str, Any]) -> list[CategoryShare]:
    """The five categories whose share moved most (slot 0 holds the values the vocabulary does not know)."""
    share, ref_share = observed / max(observed.sum(), 1), ref / max(ref.sum(), 1)
    order = np.argsort(-np.abs(share - ref_share), kind="stable")[:5]
    return [CategoryShare(column["categories"][k], round(float(share[k]), 6), round(float(ref_share[k]), 6))
            for k in order]


@dataclass(slots=True)
class ColumnScores:
    """One column of a window against the reference. A column with rows on both sides is scored (`mean` on);
    a continuous one has quantiles, a category column the categories whose share moved most."""

    name: str
    rows: int
    nan: int
    inf: int
    out_of_range: int
    status: str = "ok"
    psi: float | None = None
    ks: float | None = None
    js: float | None = None
    z: float | None = None
    missing_z: float = 0.0
    mean: float | None = None
    reference_mean: float | None = None
    quantiles: dict[str, list[float | None]] | None = None  # window, reference
    quantile_bounds: dict[str, list[float] | None] | None = None
    categories: list[CategoryShare] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "rows": self.rows, "nan": self.nan, "inf": self.inf,
                               "out_of_range": self.out_of_range, "status": self.status, "psi": self.psi,
                               "ks": self.ks, "js": self.js, "z": self.z, "missing_z": self.missing_z}
        if self.mean is not None:
            out.update(mean=self.mean, reference_mean=self.reference_mean)
        if self.quantiles is not None:
            out.update(quantiles=self.quantiles, quantile_bounds=self.quantile_bounds)
        if self.categories is not None:
            out["categories"] = [c.as_json() for c in self.categories]
        return out


@dataclass(frozen=True, slots=True)
class DriftWindow:
    """A closed window, scored."""

    closed_at: float
    rows: int
    status: str
    source: str  # "fields" (raw fields) or "model_inputs"
    top: list[str]  # the most drifting columns
    inputs: list[ColumnScores]
    predictions: list[ColumnScores]

    def as_json(self) -> dict[str, Any]:
        return {"closed_at": self.closed_at, "rows": self.rows, "status": self.status, "source": self.source,
                "top": self.top, "inputs": [c.as_json() for c in self.inputs],
                "predictions": [c.as_json() for c in self.predictions]}


@dataclass(frozen=True, slots=True)
class DriftCounts:
    """A worker's window so far (`take`), for its supervisor's monitor (`add`): sketch states, not scores."""

    rows: int
    inputs: tuple[int, list[np.ndarray]]
    predictions: tuple[int, list[np.ndarray]] | None


class _Section:
    """The sketches and reference of one group of columns (model inputs, or predictions)."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.columns = reference["columns"]
        self.reference_rows = int(reference["rows"])
        self.names = [c["name"] for c in self.columns]
        low = np.array([c["low"] for c in self.columns], dtype=np.float64)
        high = np.array([c["high"] for c in self.columns], dtype=np.float64)
        self.window = BinnedSketch([c["edges"] for c in self.columns], low, high)
        self.total = self.window.copy()
        self.reference = [np.asarray(c["counts"], dtype=np.float64) for c in self.columns]

    def scores(self, sketch: BinnedSketch, critical: dict[str, dict[str, float]], options: DriftOptions,
               critical_untested: dict[str, dict[str, float]] | None = None) -> list[ColumnScores]:
        """Each column's scores and status; `critical_untested`: the critical values for a column whose
        missing-share test cannot reject (its budget shared by the other two)."""
        critical_untested = critical_untested or critical
        out = []
        n = sketch.rows
        for j, column in enumerate(self.columns):
            observed = sketch.bin_counts(j).astype(np.float64)
            ref = self.reference[j]
            m, k = ref.sum(), observed.sum()
            entry = ColumnScores(column["name"], int(k), int(sketch.nan[j]), int(sketch.inf[j]),
                                 int(sketch.below[j] + sketch.above[j]))
            missing_z, missing_change = (_missing_z(int(sketch.nan[j]), n, column["missing"], self.reference_rows)
                                         if "missing" in column else (0.0, 0.0))
            missing_moved = abs(missing_change) >= options.missing_min_change
            # Tarone: with no missing value in the reference nor the window, the missing-share test cannot reject
            # (conditioned on the total, its statistic is fixed), so its share of the budget goes to the others.
            testable = "missing" in column and (column["missing"] > 0 or sketch.nan[j] > 0)
            levels = critical if testable else critical_untested
            if k == 0 or m == 0:
                status = "ok"
                for level in ("warn", "alert"):
                    if missing_moved and abs(missing_z) > levels[level]["missing"]:
                        status = level
                entry.status, entry.missing_z = status, round(missing_z, 3)
                out.append(entry)
                continue
            p = (ref + 0.5) / (m + 0.5 * len(ref))
            q = (observed + 0.5) / (k + 0.5 * len(ref))
            psi = float(((q - p) * np.log(q / p)).sum())
            ks = float(np.abs(np.cumsum(ref / m) - np.cumsum(observed / k)).max())
            mix = (p + q) / 2
            js = math.sqrt(max(0.0, float((p * np.log2(p / mix)).sum() + (q * np.log2(q / mix)).sum()) / 2))
            mean = sketch.sum[j] / k
            std = column["std"]
            z = (mean - column["mean"]) / (std * math.sqrt(1 / k + 1 / m)) if std > 0 else 0.0  # both are samples
            scale = math.sqrt((m + k) / (m * k))
            status = "ok"
            for level in ("warn", "alert"):
                c = levels[level]
                psi_limit = options.psi_alert if level == "alert" else options.psi_warn
                if ks > c["ks"] * scale or abs(z) > c["z"] or (n >= options.psi_min_rows and psi >= psi_limit) \
                        or (missing_moved and abs(missing_z) > c["missing"]):
                    status = level
            entry.status, entry.missing_z = status, round(missing_z, 3)
            entry.psi, entry.ks, entry.js, entry.z = round(psi, 6), round(ks, 6), round(js, 6), round(z, 3)
            entry.mean, entry.reference_mean = round(mean, 6), column["mean"]
            if column["kind"] == "continuous":
                window_q = {q: _quantile(observed, column, q) for q in QUANTILES}
                ref_q = {q: _quantile(ref, column, q) for q in QUANTILES}
                entry.quantiles = {f"p{round(q * 100)}": [w[0] if w else None, r[0] if r else None]
                                      for (q, w), r in zip(window_q.items(), ref_q.values(), strict=True)}
                entry.quantile_bounds = {f"p{round(q * 100)}": list(w[1:]) if w else None
                                            for q, w in window_q.items()}
            elif column["kind"] == "category":
                entry.categories = _category_shares(observed, ref, column)
            out.append(entry)
        return out


class DriftMonitor:
    """Per serving version. `observe` runs on the event loop after each batch; its cost is the sketch update.

    In a worker process (`--workers N`) windows are not closed here: the supervisor takes each worker's counts
    (`take`), adds them into its own monitor of the version (`add`), and closes the windows of all traffic there."""

    closes_windows = True  # False in worker processes
    why = ""  # (monitored: no reason it is not)

    def __init__(self, profile: dict[str, Any], options: DriftOptions, label: str,
                 fields: tuple[str, ...] | None = None) -> None:
        """`fields`: the feature transform's fields, in order, when the profile describes raw fields."""
        self.options = options
        self.label = label
        self.inputs = _Section(profile["inputs"])
        self.predictions = _Section(profile["predictions"]) if profile.get("predictions") else None
        self.from_fields = profile["inputs"].get("source") == "fields"
        self.field_index: list[int] = []
        if self.from_fields:
            read: list[str] = list(fields or ())
            unknown = [name for name in self.inputs.names if name not in read]
            if unknown:
                raise ValueError(f"the profile describes fields the feature spec does not read: {', '.join(unknown)}")
            self.field_index = [read.index(name) for name in self.inputs.names]
        self.status = "ok"
        self.last: DriftWindow | None = None
        self.windows = 0
        self._opened = time.monotonic()
        self._inputs: list[np.ndarray] = []
        self._outputs: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0
        self._window_rows = 0  # rows served in the current window
        columns = len(self.inputs.columns) + (len(self.predictions.columns) if self.predictions else 0)
        per_day = 86400.0 / options.window_seconds if options.window_seconds > 0 else 1440.0
        levels = (("alert", 1.0), ("warn", 10.0))
        self.critical = {level: self._critical(options.alerts_per_day * factor / per_day / columns, BUDGET)
                         for level, factor in levels}
        self.critical_untested = {level: self._critical(options.alerts_per_day * factor / per_day / columns,
                                                        BUDGET_UNTESTED) for level, factor in levels}

    @staticmethod
    def _critical(alpha: float, budget: dict[str, float]) -> dict[str, float]:
        """Critical values for a column's false-alarm probability alpha, shared out by `budget`: the KS coefficient
        c(alpha) and the two-sided normal z of the mean and missing-share tests."""
        def z(share: float) -> float:
            return NormalDist().inv_cdf(1 - min(max(alpha * share, 1e-15), 0.5) / 2)
        ks_alpha = min(max(alpha * budget["ks"], 1e-15), 0.5)
        return {"ks": math.sqrt(-math.log(ks_alpha / 2) / 2), "z": z(budget["z"]),
                "missing": z(budget["missing"]) if budget["missing"] > 0 else math.inf}

    def observe(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        """Keep a batch (the batcher's hook) for the sketches; every `FLUSH_ROWS` rows they are updated at once, so
        a one-row request pays an append, not the fixed cost of an update. `x` must not be reused by the caller
        afterwards. With a raw-field profile `x` is not kept: `observe_fields` brings the fields."""
        if not self.from_fields:
            self._inputs.append(x)
        self._outputs.append(outputs)
        self._pending_rows += len(x)
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def observe_fields(self, raw: np.ndarray) -> None:
        """Keep a served request's raw field codes (`FeatureTransform.fill_records`'s `raw`); flushed with the
        batches. Rows a client sent as model inputs have no raw fields and are not counted here."""
        self._inputs.append(raw)

    def flush(self) -> None:
        """Update the sketches with the kept batches, and close the window when it is due."""
        if not self._outputs and not self._inputs:
            return
        inputs, outputs_kept, self._inputs, self._outputs = self._inputs, self._outputs, [], []
        self._window_rows += self._pending_rows
        self._pending_rows = 0
        if inputs:
            x = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
            if self.from_fields:
                x = x[:, self.field_index]
            self.inputs.window.update(np.ascontiguousarray(x, dtype=np.float32))
        if self.predictions is not None and outputs_kept:
            names = [n for n in ("label", "probabilities", "prediction", "variable") if n in outputs_kept[0]]
            outputs: dict[str, np.ndarray] = {n: np.concatenate([np.asarray(o[n]) for o in outputs_kept])
                                              for n in names}
            columns = prediction_columns(outputs)
            if len(columns) == len(self.predictions.names):
                self.predictions.window.update(np.ascontiguousarray(np.column_stack(list(columns.values())),
                                                                    dtype=np.float32))
        self._close_if_due()

    def _close_if_due(self) -> None:
        rows = self._window_rows
        if self.closes_windows and (rows >= self.options.window_rows or (
                self.options.window_seconds > 0 and rows >= self.options.min_rows
                and time.monotonic() - self._opened >= self.options.window_seconds)):
            self.close_window()

    def take(self) -> DriftCounts:
        """The current window's counts, handed over and reset (a worker's, for its supervisor)."""
        self.flush()
        taken = DriftCounts(self._window_rows, self.inputs.window.state(),
                            self.predictions.window.state() if self.predictions else None)
        self._window_rows = 0
        for section in (self.inputs, self.predictions):
            if section is not None:
                section.window.reset()
        return taken

    def add(self, taken: DriftCounts) -> None:
        """A worker's `take()`, counted in this window; closed when due."""
        self.inputs.window.add_state(*taken.inputs)
        if self.predictions is not None and taken.predictions is not None:
            self.predictions.window.add_state(*taken.predictions)
        self._window_rows += taken.rows
        self._close_if_due()

    def close_window(self) -> DriftWindow:
        """Score the window against the reference, fold it into the total, start the next one."""
        inputs = self.inputs.scores(self.inputs.window, self.critical, self.options, self.critical_untested)
        predictions = self.predictions.scores(self.predictions.window, self.critical, self.options,
                                              self.critical_untested) if self.predictions else []
        status = max((c.status for c in inputs + predictions), key=STATUSES.index, default="ok")
        drifting = sorted((c for c in inputs + predictions if c.status != "ok"),
                          key=lambda c: (-STATUSES.index(c.status), -abs(c.z or 0)))
        self.last = DriftWindow(time.time(), max(self.inputs.window.rows, self._window_rows), status,
                                "fields" if self.from_fields else "model_inputs", [c.name for c in drifting[:5]],
                                inputs, predictions)
        if status != self.status:
            log.warning("%s: drift status %s -> %s (%s)", self.label, self.status, status,
                        ", ".join(self.last.top) or "no column drifting")
        self.status = status
        self.windows += 1
        self._window_rows = 0
        for section in (self.inputs, self.predictions):
            if section is not None:
                section.total.merge(section.window)
                section.window.reset()
        self._opened = time.monotonic()
        return self.last

    def report(self) -> dict[str, Any]:
        """What `GET /v1/models/{name}/drift` shows of the version."""
        self.flush()
        total_inputs = self.inputs.scores(self.inputs.total, self.critical, self.options, self.critical_untested) \
            if self.inputs.total.rows else []
        return {"status": self.status, "windows": self.windows, "window_rows": self.options.window_rows,
                "window_seconds": self.options.window_seconds,
                "current_window_rows": max(self.inputs.window.rows, self._window_rows),
                "last_window": self.last.as_json() if self.last is not None else None,
                "since_load": {"rows": self.inputs.total.rows, "inputs": [c.as_json() for c in total_inputs]},
                "memory_bytes": self.inputs.window.nbytes * 2 + (self.predictions.window.nbytes * 2
                                                                 if self.predictions else 0)}


class NoDrift:
    """The drift of a version that has no monitor (no usable profile, or drift off): it keeps nothing."""

    __slots__ = ()
    why = "no profile.json in the version folder, or [drift] enabled = false"
    from_fields = False
    status = "ok"
    windows = 0
    last = None

    def observe(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        pass

    def observe_fields(self, raw: np.ndarray) -> None:
        pass

    def take(self) -> None:
        """Nothing to hand a supervisor."""
        return None

    def add(self, taken: DriftCounts) -> None:
        pass

    def report(self) -> None:
        return None


class Drift(Protocol):
    """A version's drift, monitored (`DriftMonitor`) or not (`NoDrift`, whose `why` says why not)."""

    @property
    def why(self) -> str: ...
    @property
    def from_fields(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def windows(self) -> int: ...
    @property
    def last(self) -> DriftWindow | None: ...
    def observe(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None: ...
    def observe_fields(self, raw: np.ndarray) -> None: ...
    def take(self) -> DriftCounts | None: ...
    def add(self, taken: DriftCounts) -> None: ...
    def report(self) -> dict[str, Any] | None: ...


NO_DRIFT: Drift = NoDrift()
