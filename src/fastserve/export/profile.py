"""`fastserve profile DATA --model NAME/VERSION`: a reference profile for a version exported elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastserve.config import RuntimeOptions, load_model_config
from fastserve.drift.profile import PROFILE_FILE, build_profile, input_names, write_profile
from fastserve.exceptions import ConfigError
from fastserve.features import load_transform
from fastserve.registry.repository import MODEL_FILE
from fastserve.runtime import ModelSession


def profile_version(data: Path, models_dir: Path, target: str) -> Path:
    """Read DATA (the training sample: raw fields for a model with a feature spec, else one column per model
    input, in order), run the model on it, and write the version's profile.json. Returns its path."""
    from fastserve.export.sklearn import read_sample, sample_records

    name, _, version = target.partition("/")
    folder = models_dir / name / version
    if not version.isdigit() or not (folder / MODEL_FILE).is_file():
        raise ConfigError(f"no version folder with {MODEL_FILE} at {folder}; give --model NAME/VERSION")
    config = load_model_config(models_dir / name)
    session = ModelSession(folder / MODEL_FILE, RuntimeOptions(device="cpu"), f"{name} v{version}")
    transform = load_transform(folder, config.features, strict=False)
    frame = read_sample(data)
    raw = None
    if transform is not None:
        records = sample_records(frame, list(transform.fields))
        x = np.empty((len(records), transform.width), dtype=np.float32)
        raw = np.empty((len(records), len(transform.fields)), dtype=np.float64)
        transform.fill_records(records, x, raw)
    else:
        if frame.shape[1] != session.n_features:
            raise ConfigError(f"{data.name} has {frame.shape[1]} columns; the model takes {session.n_features} "
                              "inputs (one column each, in order) and has no feature spec")
        x = frame.to_numpy(dtype=np.float32)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), 4096):
        for key, value in session.run(x[start:start + 4096]).items():
            outputs.setdefault(key, []).append(np.asarray(value))
    merged = {key: np.concatenate(parts) for key, parts in outputs.items()}
    names = input_names(transform.features if transform is not None else None, x.shape[1])
    write_profile(folder, build_profile(x, names, merged, transform, raw))
    return folder / PROFILE_FILE
