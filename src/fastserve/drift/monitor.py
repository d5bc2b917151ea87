"""Drift of a serving version against its reference profile: sketches fed from every batch, tumbling windows,
scores per column, and a status with the top drifting columns.

Scores per column, from counts in the reference's own bins: PSI, the binned Kolmogorov-Smirnov statistic, the
Jensen-Shannon distance, and a z-test of the window's mean against the reference mean. A column alerts when the KS
statistic or the mean's z exceeds the critical value at a false-alarm budget of `alerts_per_day` per model over a
day of windows, split evenly (Bonferroni) over every column and both tests; or when PSI >= `psi_alert` on a window
of at least `psi_min_rows` rows (PSI's own sampling noise is about bins / rows). `warn` uses a 10x looser budget
and `psi_warn`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from fastserve._core.sketch import BinnedSketch
from fastserve.drift.profile import prediction_columns

log = logging.getLogger("fastserve.drift")
STATUSES = ("ok", "warn", "alert")
FLUSH_ROWS = 256  # rows kept before the sketches are updated: bounds memory and amortizes the per-update cost


@dataclass(frozen=True)
class DriftOptions:
    enabled: bool = True
    window_rows: int = 5000  # a window closes after this many rows...
    window_seconds: float = 60.0  # ...or this many seconds, whichever first (0 = rows only)
    min_rows: int = 200  # a window closed by time with fewer rows is not scored (it carries on)
    alerts_per_day: float = 1.0  # false-alarm budget per model, for windows of `window_seconds`
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    psi_min_rows: int = 2000


QUANTILES = (0.1, 0.5, 0.9)


def _quantile(counts: np.ndarray, column: dict[str, Any], q: float) -> float | None:
    """Quantile `q` from counts in the column's bins, interpolated linearly inside its bin (the outer bins run to the
    reference's range): off by at most the width of that bin, 1/32 of the reference's mass."""
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
    return round(float(lo + (hi - lo) * min(max(share, 0.0), 1.0)), 6)


class _Section:
    """The sketches and reference of one group of columns (model inputs, or predictions)."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.columns = reference["columns"]
        self.names = [c["name"] for c in self.columns]
        low = np.array([c["low"] for c in self.columns], dtype=np.float64)
        high = np.array([c["high"] for c in self.columns], dtype=np.float64)
        self.window = BinnedSketch([c["edges"] for c in self.columns], low, high)
        self.total = self.window.copy()
        self.reference = [np.asarray(c["counts"], dtype=np.float64) for c in self.columns]

    def scores(self, sketch: BinnedSketch, critical: dict[str, tuple[float, float]], options: DriftOptions,
               ) -> list[dict[str, Any]]:
        out = []
        n = sketch.rows
        for j, column in enumerate(self.columns):
            observed = sketch.bin_counts(j).astype(np.float64)
            ref = self.reference[j]
            m, k = ref.sum(), observed.sum()
            entry: dict[str, Any] = {"name": column["name"], "rows": int(k), "nan": int(sketch.nan[j]),
                                     "inf": int(sketch.inf[j]), "out_of_range": int(sketch.below[j] + sketch.above[j])}
            if k == 0 or m == 0:
                entry.update(status="ok", psi=None, ks=None, js=None, z=None)
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
            for level, (ks_c, z_c) in (("warn", critical["warn"]), ("alert", critical["alert"])):
                psi_limit = options.psi_alert if level == "alert" else options.psi_warn
                if ks > ks_c * scale or abs(z) > z_c or (n >= options.psi_min_rows and psi >= psi_limit):
                    status = level
            entry.update(status=status, psi=round(psi, 6), ks=round(ks, 6), js=round(js, 6), z=round(z, 3),
                         mean=round(mean, 6), reference_mean=column["mean"])
            if column["kind"] == "continuous":
                entry["quantiles"] = {f"p{round(q * 100)}": [_quantile(observed, column, q), _quantile(ref, column, q)]
                                      for q in QUANTILES}
            out.append(entry)
        return out


class DriftMonitor:
    """Per serving version. `observe` runs on the event loop after each batch; its cost is the sketch update."""

    def __init__(self, profile: dict[str, Any], options: DriftOptions, label: str) -> None:
        self.options = options
        self.label = label
        self.inputs = _Section(profile["inputs"])
        self.predictions = _Section(profile["predictions"]) if profile.get("predictions") else None
        self.status = "ok"
        self.last: dict[str, Any] | None = None
        self.windows = 0
        self._opened = time.monotonic()
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._pending_rows = 0
        tests = 2 * (len(self.inputs.columns) + (len(self.predictions.columns) if self.predictions else 0))
        per_day = 86400.0 / options.window_seconds if options.window_seconds > 0 else 1440.0
        self.critical = {level: self._critical(options.alerts_per_day * factor / per_day / tests)
                         for level, factor in (("alert", 1.0), ("warn", 10.0))}

    @staticmethod
    def _critical(alpha: float) -> tuple[float, float]:
        """(KS coefficient c(alpha), two-sided normal z) for a per-test false-alarm probability alpha."""
        alpha = min(max(alpha, 1e-15), 0.5)
        return math.sqrt(-math.log(alpha / 2) / 2), NormalDist().inv_cdf(1 - alpha / 2)

    def observe(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        """Keep a batch for the sketches; every `FLUSH_ROWS` rows they are updated at once, so a one-row request
        pays an append, not the fixed cost of an update. `x` must not be reused by the caller afterwards."""
        self._pending.append((x, outputs))
        self._pending_rows += len(x)
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Update the sketches with the kept batches, and close the window when it is due."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        x = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
        self.inputs.window.update(np.ascontiguousarray(x, dtype=np.float32))
        if self.predictions is not None:
            names = [n for n in ("label", "probabilities", "prediction", "variable") if n in pending[0][1]]
            outputs: dict[str, np.ndarray] = {n: np.concatenate([np.asarray(p[1][n]) for p in pending]) for n in names}
            columns = prediction_columns(outputs)
            if len(columns) == len(self.predictions.names):
                self.predictions.window.update(np.ascontiguousarray(np.column_stack(list(columns.values())),
                                                                    dtype=np.float32))
        rows = self.inputs.window.rows
        if rows >= self.options.window_rows or (
                self.options.window_seconds > 0 and rows >= self.options.min_rows
                and time.monotonic() - self._opened >= self.options.window_seconds):
            self.close_window()

    def close_window(self) -> dict[str, Any]:
        """Score the window against the reference, fold it into the total, start the next one."""
        inputs = self.inputs.scores(self.inputs.window, self.critical, self.options)
        predictions = self.predictions.scores(self.predictions.window, self.critical, self.options) \
            if self.predictions else []
        status = max((c["status"] for c in inputs + predictions), key=STATUSES.index, default="ok")
        drifting = sorted((c for c in inputs + predictions if c["status"] != "ok"),
                          key=lambda c: (-STATUSES.index(c["status"]), -abs(c["z"] or 0)))
        self.last = {"closed_at": time.time(), "rows": self.inputs.window.rows, "status": status,
                     "top": [c["name"] for c in drifting[:5]], "inputs": inputs, "predictions": predictions}
        if status != self.status:
            log.warning("%s: drift status %s -> %s (%s)", self.label, self.status, status,
                        ", ".join(self.last["top"]) or "no column drifting")
        self.status = status
        self.windows += 1
        for section in (self.inputs, self.predictions):
            if section is not None:
                section.total.merge(section.window)
                section.window.reset()
        self._opened = time.monotonic()
        return self.last

    def report(self) -> dict[str, Any]:
        self.flush()
        total_inputs = self.inputs.scores(self.inputs.total, self.critical, self.options) \
            if self.inputs.total.rows else []
        return {"status": self.status, "windows": self.windows, "window_rows": self.options.window_rows,
                "window_seconds": self.options.window_seconds, "current_window_rows": self.inputs.window.rows,
                "last_window": self.last, "since_load": {"rows": self.inputs.total.rows, "inputs": total_inputs},
                "memory_bytes": self.inputs.window.nbytes * 2 + (self.predictions.window.nbytes * 2
                                                                 if self.predictions else 0)}
