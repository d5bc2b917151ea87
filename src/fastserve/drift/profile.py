"""The reference profile of a version (`profile.json`): per model-input column and per prediction, the bins of its
training distribution and how many training rows fell in each, plus range, mean and standard deviation.

Columns are the model's input as the server sees it in the batch buffer (after the feature spec's transforms):
a column with at most 63 distinct training values gets one bin per value (categories, codes, one-hot columns,
small counts); others get bins at 32 training quantiles. Drift scores compare counts in these same bins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fastserve._core.sketch import MAX_BINS, BinnedSketch

PROFILE_FILE = "profile.json"
QUANTILE_BINS = 32


def column_edges(values: np.ndarray) -> tuple[list[float], str]:
    finite = values[np.isfinite(values)].astype(np.float64)
    distinct = np.unique(finite)
    if len(distinct) <= MAX_BINS - 1:
        return ((distinct[1:] + distinct[:-1]) / 2).tolist(), "discrete"
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
    return edges.tolist(), "continuous"


def prediction_columns(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What is profiled of the predictions: the label, and the score (positive-class probability for two classes,
    the top probability otherwise, or a regressor's prediction)."""
    columns: dict[str, np.ndarray] = {}
    if "label" in outputs and np.asarray(outputs["label"]).dtype.kind in "iub":
        columns["label"] = np.asarray(outputs["label"], dtype=np.float64).reshape(-1)
    for name in ("probabilities", "prediction", "variable"):
        if name in outputs:
            values = np.asarray(outputs[name], dtype=np.float64)
            if values.ndim == 2 and values.shape[1] == 2:
                columns["score"] = values[:, 1]
            elif values.ndim == 2:
                columns["score"] = values.max(axis=1) if name == "probabilities" else values[:, 0]
            else:
                columns["score"] = values.reshape(-1)
            break
    return columns


def _section(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    columns = []
    edges = []
    for j, name in enumerate(names):
        e, kind = column_edges(matrix[:, j])
        finite = matrix[:, j][np.isfinite(matrix[:, j])]
        columns.append({"name": name, "kind": kind, "edges": e, "low": float(finite.min()),
                        "high": float(finite.max()), "mean": float(finite.mean()), "std": float(finite.std())})
        edges.append(e)
    sketch = BinnedSketch(edges, np.array([c["low"] for c in columns]), np.array([c["high"] for c in columns]))
    sketch.update(np.ascontiguousarray(matrix, dtype=np.float32))
    for j, column in enumerate(columns):
        column["counts"] = sketch.bin_counts(j).tolist()
    return {"rows": int(matrix.shape[0]), "columns": columns}


def build_profile(inputs: np.ndarray, input_names: list[str], outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The profile of a reference sample: the model inputs (as the batch buffer holds them) and the outputs."""
    predictions = prediction_columns(outputs)
    matrix = np.column_stack(list(predictions.values())) if predictions else np.empty((len(inputs), 0))
    return {"format": 1, "inputs": _section(inputs, input_names),
            "predictions": _section(matrix, list(predictions)) if predictions else None}


def input_names(features: Any, width: int) -> list[str]:
    """Column names: each feature's name, with `[k]` for the columns of a wide block; `x{j}` without a spec."""
    if features is None:
        return [f"x{j}" for j in range(width)]
    names = []
    for f in features:
        names.extend([f.name] if f.width == 1 else [f"{f.name}[{k}]" for k in range(f.width)])
    return names


def write_profile(folder: Path, profile: dict[str, Any]) -> None:
    (folder / PROFILE_FILE).write_text(json.dumps(profile, separators=(",", ":")) + "\n", encoding="utf-8")


def read_profile(folder: Path) -> dict[str, Any] | None:
    path = folder / PROFILE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
