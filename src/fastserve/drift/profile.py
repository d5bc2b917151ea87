"""The reference profile of a version (`profile.json`): per input column and per prediction, the bins of its
training distribution and how many training rows fell in each, plus range, mean, standard deviation and the
number of missing values.

For a model with a feature spec the columns are the raw fields as clients send them, before any transform
(`"source": "fields"`): a number as sent, a category as its slot in the spec's vocabulary with one bin per slot
and one for unknown values. Without a spec they are the model's own inputs (`"source": "model_inputs"`). A numeric
column with at most 63 distinct training values gets one bin per value; others get bins at 32 training quantiles.
Drift scores compare counts in these same bins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fastserve._core import FeatureTransform
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


def _category_column(name: str, lookup: dict[Any, int]) -> dict[str, Any] | None:
    """Bins for a category's slot codes: one for unknown values (-1), then one per slot; None past MAX_BINS."""
    slots = max(lookup.values(), default=-1) + 1
    if slots + 1 > MAX_BINS:
        return None
    names: list[list[str]] = [[] for _ in range(slots)]
    for category, slot in lookup.items():
        names[slot].append(str(category))
    return {"name": name, "kind": "category", "edges": [k - 0.5 for k in range(slots)], "low": -1.0,
            "high": float(slots - 1), "categories": ["(unknown)", *("|".join(n) for n in names)]}


def _section(matrix: np.ndarray, names: list[str], categories: dict[int, dict[str, Any]] | None = None,
             source: str = "model_inputs") -> dict[str, Any]:
    columns = []
    edges = []
    for j, name in enumerate(names):
        values = matrix[:, j]
        finite = values[np.isfinite(values)]
        column = (categories or {}).get(j)
        if column is None:
            e, kind = column_edges(values)
            column = {"name": name, "kind": kind, "edges": e,
                      "low": float(finite.min()) if finite.size else 0.0,
                      "high": float(finite.max()) if finite.size else 0.0}
        column.update(mean=float(finite.mean()) if finite.size else 0.0,
                      std=float(finite.std()) if finite.size else 0.0, missing=int(np.isnan(values).sum()))
        columns.append(column)
        edges.append(column["edges"])
    sketch = BinnedSketch(edges, np.array([c["low"] for c in columns]), np.array([c["high"] for c in columns]))
    sketch.update(np.ascontiguousarray(matrix, dtype=np.float32))
    for j, column in enumerate(columns):
        column["counts"] = sketch.bin_counts(j).tolist()
    return {"rows": int(matrix.shape[0]), "source": source, "columns": columns}


def sketched_fields(transform: FeatureTransform) -> list[int]:
    """The fields drift sketches: every field but those only hashed features read (no vocabulary to bin)."""
    return [k for k, feature in enumerate(transform.raw_features) if feature is not None]


def build_profile(inputs: np.ndarray, input_names: list[str], outputs: dict[str, np.ndarray],
                  transform: FeatureTransform | None = None, raw: np.ndarray | None = None) -> dict[str, Any]:
    """The profile of a reference sample and the model's outputs on it. With a feature `transform`, `raw` holds the
    sample's raw field codes (`FeatureTransform.fill_records`'s `raw`) and the fields are profiled; else the model
    inputs are."""
    predictions = prediction_columns(outputs)
    matrix = np.column_stack(list(predictions.values())) if predictions else np.empty((len(inputs), 0))
    if transform is not None and raw is not None:
        keep = sketched_fields(transform)
        categories = {}
        for j, k in enumerate(keep):
            feature = transform.raw_features[k]
            if feature is not None and feature.kind_name.startswith("category"):
                column = _category_column(transform.fields[k], feature.lookup)
                if column is not None:
                    categories[j] = column
        section = _section(raw[:, keep], [transform.fields[k] for k in keep], categories, "fields")
    else:
        section = _section(inputs, input_names)
    return {"format": 2, "inputs": section,
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
    profile: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return profile
