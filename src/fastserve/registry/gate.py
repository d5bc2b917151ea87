"""The validation gate a version passes before it serves: its own golden set reproduced, nothing non-finite, and
run times within the model's latency SLO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastserve._core import FeatureTransform
from fastserve.config import GateOptions
from fastserve.registry.repository import GOLDEN_RECORDS_FILE, VALIDATION_FILE
from fastserve.runtime import ModelSession


def _inputs(folder: Path, golden: dict[str, np.ndarray], session: ModelSession,
            transform: FeatureTransform | None) -> tuple[np.ndarray, str | None]:
    """The golden inputs; for a model with a feature spec, computed from the golden records through the transform,
    which must give the stored inputs (so the gate covers the transform too)."""
    stored = golden.get("inputs")
    records_path = folder / GOLDEN_RECORDS_FILE
    if transform is None or not records_path.is_file():
        if stored is None:
            return np.empty(0), f"{VALIDATION_FILE} has no `inputs`"
        return stored.astype(session.input_dtype, copy=False), None
    records = json.loads(records_path.read_text(encoding="utf-8"))
    x = np.empty((len(records), transform.width), dtype=session.input_dtype)
    transform.fill_records(records, x)
    if stored is not None and (stored.shape != x.shape or not np.allclose(x, stored, rtol=1e-6, atol=1e-6)):
        return x, f"the feature spec does not reproduce the stored inputs from {GOLDEN_RECORDS_FILE}"
    return x, None


def check(folder: Path, session: ModelSession, transform: FeatureTransform | None, options: GateOptions,
          latency_slo_ms: float | None, warm_up: dict[int, float]) -> str | None:
    """None when the version passes, else why it does not. Blocking: runs with the load, on a worker thread."""
    if not options.enabled:
        return None
    if latency_slo_ms is not None and warm_up:
        rows, seconds = min(warm_up.items())
        if seconds * 1e3 > latency_slo_ms:
            return f"warm-up run of {rows} row(s) took {seconds * 1e3:.2f} ms, over latency_slo_ms {latency_slo_ms}"
    path = folder / VALIDATION_FILE
    if not path.is_file():
        return None  # nothing to compare with; the status shows `gate: "no validation set"`
    with np.load(path, allow_pickle=False) as data:
        golden = {k: data[k] for k in data.files}
    x, problem = _inputs(folder, golden, session, transform)
    if problem:
        return problem
    outputs = session.run(x)
    names = {o.name for o in session.outputs}
    for name, expected in sorted(golden.items()):
        if name == "inputs":
            continue
        if name not in names:
            return f"{VALIDATION_FILE} has `{name}`, which is not an output of the model ({', '.join(sorted(names))})"
        got = np.asarray(outputs[name])
        if got.shape != expected.shape:
            return f"output `{name}` has shape {list(got.shape)} on the validation set, expected {list(expected.shape)}"
        if got.dtype.kind == "f" and not np.isfinite(got).all():
            return f"output `{name}` has NaN or Inf on the validation set"
        if got.dtype.kind in "fc" or expected.dtype.kind == "f":
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            bound = options.atol + options.rtol * np.abs(expected.astype(np.float64))
            if not (diff <= bound).all():
                return (f"output `{name}` differs from the validation set: max abs diff {diff.max():.3g} > "
                        f"atol {options.atol:g} + rtol {options.rtol:g} * |expected|")
        elif not np.array_equal(got, expected):
            wrong = int((got != expected).sum())
            return f"output `{name}` differs from the validation set on {wrong} of {len(expected)} rows"
    return None
