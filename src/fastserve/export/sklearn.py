"""A fitted scikit-learn `Pipeline([ColumnTransformer, estimator])` into a fastserve version folder.

The column transformer becomes a feature spec (the compiled transform computes it at serving time) and the estimator
an ONNX graph (skl2onnx). Each transformer is translated from its fitted attributes with scikit-learn's own arithmetic;
encoders are read by asking them to encode each known category (and one unknown), so drop / infrequent-category
settings come out as scikit-learn applies them. Anything that cannot be translated exactly is refused with its name.
The export then checks itself: the spec must reproduce `ColumnTransformer.transform` on the sample within 1e-6.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastserve._core import FeatureTransform
from fastserve.drift.profile import build_profile, input_names, write_profile
from fastserve.exceptions import ExportError
from fastserve.export.files import publish, rename_outputs, to_onnx, write_version
from fastserve.features import parse_features
from fastserve.quality.measures import reference_quality, write_quality

TOLERANCE = 1e-6
_UNKNOWN_STRING = "\x00fastserve-unknown-category"
_UNKNOWN_INTEGER = -(2**62) + 12345


@dataclass
class _Chain:
    """What the steps applied to one input column so far."""

    column: str
    impute: Any = None
    steps: list[dict[str, Any]] = field(default_factory=list)


def _name(obj: Any) -> str:
    return type(obj).__name__


def _pipeline_parts(pipeline: Any) -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise ExportError(f"expected a fitted sklearn Pipeline([ColumnTransformer, estimator]), got {_name(pipeline)}")
    steps = [s for _, s in pipeline.steps if s is not None and s != "passthrough"]
    if len(steps) != 2 or not isinstance(steps[0], ColumnTransformer):
        kinds = ", ".join(_name(s) for s in steps)
        raise ExportError(f"expected a Pipeline of exactly a ColumnTransformer then an estimator, got [{kinds}]")
    if not hasattr(steps[0], "transformers_"):
        raise ExportError("the pipeline is not fitted; fit it before exporting")
    return steps[0], steps[1]


def _columns(selection: Any, frame: Any) -> list[str]:
    """A transformer's column selection as column names of the sample."""
    import pandas as pd

    if callable(selection):
        selection = selection(frame)
    if isinstance(selection, str):
        return [selection]
    names = pd.Index(frame.columns)
    try:
        if isinstance(selection, slice) or (len(selection) and not isinstance(selection[0], str)):
            return [str(c) for c in names[selection]]
    except (IndexError, TypeError, KeyError) as exc:
        raise ExportError(f"cannot resolve the column selection {selection!r} against the sample's columns") from exc
    return [str(c) for c in selection]


def _category_kind(categories: np.ndarray, where: str) -> tuple[list[Any], bool]:
    """A fitted category list as strings or integers, refusing what records cannot carry exactly."""
    values = list(categories.tolist())
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        raise ExportError(f"{where}: missing values are one of the fitted categories; put a SimpleImputer before "
                          "the encoder so missing values are filled the same way at serving time")
    if all(isinstance(v, str) for v in values):
        return values, True
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in values):
        return [int(v) for v in values], False
    raise ExportError(f"{where}: categories must be all strings or all integers, got {values[:5]!r}")


def _probe_frame(encoder: Any, columns: list[str], j: int, values: list[Any]) -> Any:
    """One row per value in column j, the other columns at their first category: what `encoder` was fit on."""
    import pandas as pd

    data = {}
    for k, cats in enumerate(encoder.categories_):
        data[columns[k]] = values if k == j else [cats[0]] * len(values)
    frame = pd.DataFrame(data, dtype=object)
    if hasattr(encoder, "feature_names_in_"):
        frame.columns = list(encoder.feature_names_in_)
        return frame
    return frame.to_numpy(dtype=object)


def _encode(encoder: Any, frame: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # handle_unknown="warn" warns about the unknown probe, on purpose
        out = encoder.transform(frame)
    return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)


def _onehot_widths(encoder: Any) -> list[int]:
    """Columns each input column gets, as OneHotEncoder counts them (infrequent categories share one, drop removes
    one)."""
    widths = []
    infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(encoder.categories_)
    for j, cats in enumerate(encoder.categories_):
        n = len(cats)
        if infrequent[j] is not None:
            n -= len(infrequent[j]) - 1
        if encoder.drop_idx_ is not None and encoder.drop_idx_[j] is not None:
            n -= 1
        widths.append(n)
    return widths


def _encoder_features(encoder: Any, chains: list[_Chain], where: str) -> list[dict[str, Any]]:
    from sklearn.preprocessing import OneHotEncoder

    columns = [c.column for c in chains]
    onehot = isinstance(encoder, OneHotEncoder)
    widths = _onehot_widths(encoder) if onehot else [1] * len(columns)
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    features = []
    for j, chain in enumerate(chains):
        label = f"{where} column {chain.column!r}"
        vocabulary, strings = _category_kind(encoder.categories_[j], label)
        block = _encode(encoder, _probe_frame(encoder, columns, j, vocabulary))[:, offsets[j]:offsets[j + 1]]
        unknown_block = None
        if encoder.handle_unknown != "error":
            probe = _probe_frame(encoder, columns, j, [_UNKNOWN_STRING if strings else _UNKNOWN_INTEGER])
            unknown_block = _encode(encoder, probe)[:, offsets[j]:offsets[j + 1]][0]
        spec: dict[str, Any] = {"name": chain.column, "type": "categorical", "vocabulary": vocabulary}
        if chain.impute is not None:
            spec["impute"] = chain.impute
        if onehot:
            hot = [np.flatnonzero(row) for row in block]
            if any(len(h) > 1 or (len(h) == 1 and row[h[0]] != 1.0) for h, row in zip(hot, block, strict=True)):
                raise ExportError(f"{label}: the encoder writes something other than one 1 per category")
            spec.update(encoding="onehot", columns=[int(h[0]) if len(h) else -1 for h in hot], width=int(widths[j]))
            if unknown_block is None:
                spec["unknown"] = "error"
            elif not unknown_block.any():
                spec["unknown"] = "ignore"
            else:
                spec.update(unknown="slot", unknown_column=int(np.flatnonzero(unknown_block)[0]))
        else:
            spec.update(encoding="ordinal", values=[float(v) for v in block[:, 0]])
            if unknown_block is None:
                spec["unknown"] = "error"
            else:
                spec.update(unknown="value", unknown_value=float(unknown_block[0]))
        features.append(spec)
    return features


def _numeric_step(step: Any, chain: _Chain, j: int, where: str) -> dict[str, Any] | None:
    """One numeric transformer's effect on column j, as a spec step; None for a step that changes nothing."""
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

    if isinstance(step, StandardScaler):
        mean = float(step.mean_[j]) if step.with_mean else 0.0
        std = float(step.scale_[j]) if step.with_std else 1.0
        return {"op": "standardize", "mean": mean, "std": std}
    if isinstance(step, MinMaxScaler):
        low, high = step.feature_range
        return {"op": "min_max", "min": float(step.data_min_[j]), "max": float(step.data_max_[j]),
                "range": [float(low), float(high)], "clip": bool(step.clip)}
    if isinstance(step, FunctionTransformer):
        kw = dict(step.kw_args or {})
        if step.func is None and not kw:
            return None
        if step.func is np.log1p and not kw:
            return {"op": "log1p"}
        if step.func is np.clip and set(kw) <= {"a_min", "a_max", "min", "max"}:
            bounds: list[Any] = [kw.get("a_min", kw.get("min")), kw.get("a_max", kw.get("max"))]
            if any(np.ndim(b) for b in bounds):
                raise ExportError(f"{where}: np.clip with per-column bounds is not supported; use scalar bounds")
            return {"op": "clip", "min": -math.inf if bounds[0] is None else float(bounds[0]),
                    "max": math.inf if bounds[1] is None else float(bounds[1])}
        raise ExportError(f"{where}: FunctionTransformer({getattr(step.func, '__name__', step.func)!r}) cannot be "
                          "translated; supported: np.log1p, np.clip with scalar bounds, identity")
    raise ExportError(f"{where}: {_name(step)} cannot be translated exactly; supported: SimpleImputer, StandardScaler, "
                      "MinMaxScaler, FunctionTransformer(np.log1p | np.clip), KBinsDiscretizer, OneHotEncoder, "
                      "OrdinalEncoder, passthrough")


def _imputer(step: Any, chains: list[_Chain], where: str) -> None:
    if step.add_indicator:
        raise ExportError(f"{where}: SimpleImputer(add_indicator=True) is not supported")
    missing = step.missing_values
    if not (missing is None or (isinstance(missing, float) and math.isnan(missing))):
        raise ExportError(f"{where}: SimpleImputer(missing_values={missing!r}) is not supported; records mark a "
                          "missing value by leaving the field out or sending null, which is NaN / None")
    if len(step.statistics_) != len(chains):
        raise ExportError(f"{where}: SimpleImputer dropped columns it could not fit (all missing in the sample)")
    for chain, value in zip(chains, step.statistics_.tolist(), strict=True):
        if chain.steps:
            raise ExportError(f"{where}: a SimpleImputer must come before the other steps of a column")
        if isinstance(value, float) and math.isnan(value):
            raise ExportError(f"{where}: SimpleImputer learned NaN for {chain.column!r}")
        chain.impute = value


def _translate(transformer: Any, columns: list[str], where: str) -> list[dict[str, Any]]:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, OrdinalEncoder

    steps = transformer.steps if isinstance(transformer, Pipeline) else [("", transformer)]
    chains = [_Chain(c) for c in columns]
    for i, (_, step) in enumerate(steps):
        label = f"{where} step {i} ({_name(step)})"
        last = i == len(steps) - 1
        if step is None or step == "passthrough":
            continue
        if isinstance(step, SimpleImputer):
            _imputer(step, chains, label)
            continue
        if isinstance(step, (OneHotEncoder, OrdinalEncoder)):
            if not last or any(c.steps for c in chains):
                raise ExportError(f"{label}: an encoder must be the last step, after at most a SimpleImputer")
            return _encoder_features(step, chains, label)
        if isinstance(step, KBinsDiscretizer):
            if not last:
                raise ExportError(f"{label}: KBinsDiscretizer must be the last step of a column")
            if step.dtype not in (None, np.float64):
                raise ExportError(f"{label}: KBinsDiscretizer(dtype={step.dtype}) is not supported; leave dtype unset")
            encoding = "ordinal" if step.encode == "ordinal" else "onehot"
            return [_numeric_spec(c, bucketize={"boundaries": [float(e) for e in step.bin_edges_[j][1:-1]],
                                                "encoding": encoding})
                    for j, c in enumerate(chains)]
        for j, chain in enumerate(chains):
            op = _numeric_step(step, chain, j, label)
            if op is not None:
                chain.steps.append(op)
    return [_numeric_spec(c) for c in chains]


def _numeric_spec(chain: _Chain, bucketize: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": chain.column, "type": "numeric"}
    if chain.impute is not None:
        if isinstance(chain.impute, str):
            raise ExportError(f"column {chain.column!r}: a numeric column imputed with a string")
        spec["impute"] = float(chain.impute)
    if chain.steps:
        spec["steps"] = chain.steps
    if bucketize is not None:
        spec["bucketize"] = bucketize
    return spec


def translate(column_transformer: Any, sample: Any) -> list[dict[str, Any]]:
    """The fitted ColumnTransformer as `[[features]]` tables, in its output order."""
    features: list[dict[str, Any]] = []
    for name, transformer, selection in column_transformer.transformers_:
        columns = _columns(selection, sample)
        if transformer == "drop" or not columns:
            continue
        where = f"transformer {name!r}"
        if transformer == "passthrough":
            features.extend(_numeric_spec(_Chain(c)) for c in columns)
        else:
            features.extend(_translate(transformer, columns, where))
        expected = column_transformer.output_indices_[name].stop
        produced = sum(_width(f) for f in features)
        if produced != expected:
            raise ExportError(f"{where}: translated to {produced} output columns where scikit-learn has {expected}")
    seen: dict[str, int] = {}
    for i, f in enumerate(features):  # a field used by two transformers: the second feature gets a distinct name
        seen[f["name"]] = seen.get(f["name"], 0) + 1
        if seen[f["name"]] > 1:
            field = f.pop("name")
            features[i] = {"name": f"{field}_{seen[field]}", "field": field, **f}
    return features


def _width(spec: dict[str, Any]) -> int:
    if "bucketize" in spec:
        b = spec["bucketize"]
        return 1 if b["encoding"] == "ordinal" else len(b["boundaries"]) + 1
    if spec["type"] == "categorical" and spec.get("encoding") == "onehot":
        return int(spec["width"])
    return 1


def sample_records(frame: Any, fields: list[str]) -> list[dict[str, Any]]:
    """Rows of the sample as records (what a client sends): missing values left out, numpy scalars as Python's."""
    import pandas as pd

    records = []
    for row in frame[fields].itertuples(index=False, name=None):
        record = {}
        for name, value in zip(fields, row, strict=True):
            if not pd.isna(value):
                record[name] = value.item() if isinstance(value, np.generic) else value
        records.append(record)
    return records


def check_transform(features: list[dict[str, Any]], column_transformer: Any, sample: Any,
                    ) -> tuple[np.ndarray, np.ndarray, FeatureTransform]:
    """The spec's output on the sample, after checking it equals `column_transformer.transform` within 1e-6, with the
    sample's raw field codes (for the drift profile) and the compiled transform."""
    transform = FeatureTransform(list(parse_features(features, "exported spec")))
    records = sample_records(sample, list(transform.fields))
    ours = np.empty((len(records), transform.width), dtype=np.float64)
    raw = np.empty((len(records), len(transform.fields)), dtype=np.float64)
    transform.fill_records(records, ours, raw)
    theirs = column_transformer.transform(sample)
    theirs = np.asarray(theirs.toarray() if hasattr(theirs, "toarray") else theirs, dtype=np.float64)
    diff = np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs))
    diff[np.isnan(ours) & np.isnan(theirs)] = 0.0
    if not (diff <= TOLERANCE).all():
        column = int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)) % ours.shape[1])
        owner, end = "", 0
        for f in transform.features:
            end += f.width
            if column < end:
                owner = f.name
                break
        raise ExportError(f"the translated spec differs from ColumnTransformer.transform on the sample at output "
                          f"column {column} (feature {owner!r}): max relative difference {np.nanmax(diff):.3g} > "
                          f"{TOLERANCE}; this pipeline cannot be served without skew")
    return ours, raw, transform


def read_sample(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ExportError(f"reading {path.name} needs pyarrow: pip install pyarrow") from exc
    raise ExportError(f"sample {path.name}: expected a .csv or .parquet file")


def next_version(model_dir: Path) -> int:
    numbers = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() \
        else []
    return max(numbers, default=0) + 1


def export_pipeline(pipeline: Any, sample: Any, name: str, out: Path, *, version: int | None = None,
                    golden: int = 64, seed: int = 0, description: str = "",
                    holdout: tuple[Any, Any] | None = None) -> Path:
    """Write `out/name/version/` (model.onnx, features.toml, validation set, build.json) and return it. With
    `holdout` (records and their labels, data the pipeline was not fit on), also the version's reference quality
    (quality.json), which live quality is compared with."""
    from sklearn.base import is_classifier

    column_transformer, estimator = _pipeline_parts(pipeline)
    features = translate(column_transformer, sample)
    x, raw, transform = check_transform(features, column_transformer, sample)
    width = x.shape[1]
    classifier = is_classifier(estimator)
    onx = to_onnx(estimator, width, name, zipmap=False if classifier else None)
    if not classifier:
        onx = rename_outputs(onx, {onx.graph.output[0].name: "prediction"})

    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(sample), size=min(golden, len(sample)), replace=False))
    gold = sample.iloc[picked]
    fields = list(dict.fromkeys(f.get("field", f["name"]) for f in features))
    expected: dict[str, np.ndarray] = {"inputs": x[picked].astype(np.float32)}
    if classifier:
        expected["label"] = np.asarray(pipeline.predict(gold))
        expected["probabilities"] = np.asarray(pipeline.predict_proba(gold), dtype=np.float32)
    else:
        expected["prediction"] = np.asarray(pipeline.predict(gold), dtype=np.float32).reshape(-1, 1)
    if classifier:  # the ONNX label output is int64 for integer classes, strings otherwise
        kind = expected["label"].dtype.kind
        expected["label"] = expected["label"].astype(np.int64 if kind in "iub" else str)

    model_dir = out / name
    number = version if version is not None else next_version(model_dir)
    staging = model_dir / f".export-{number}"
    write_version(staging, onx, expected, {
        "exported_from": "scikit-learn Pipeline",
        "pipeline": [_name(s) for _, s in pipeline.steps],
        "estimator": _name(estimator),
        "features": fields,
        "sample_rows": len(sample),
        "golden_seed": seed,
    }, features=features, records=sample_records(gold, fields))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference_outputs = ({"label": np.asarray(pipeline.predict(sample)),
                              "probabilities": np.asarray(pipeline.predict_proba(sample))} if classifier
                             else {"prediction": np.asarray(pipeline.predict(sample)).reshape(-1, 1)})
    write_profile(staging, build_profile(x.astype(np.float32), input_names(transform.features, width),
                                         reference_outputs, transform, raw))
    if holdout is not None:
        write_quality(staging, holdout_quality(pipeline, *holdout, classifier))
    config = model_dir / "fastserve.toml"
    if not config.exists():
        text = f"[model]\ndescription = {json.dumps(description or f'{_name(estimator)} exported from scikit-learn')}\n"
        config.write_text(text, encoding="utf-8")
    final = model_dir / str(number)
    publish(staging, final)
    return final


def holdout_quality(pipeline: Any, records: Any, labels: Any, classifier: bool) -> dict[str, Any]:
    """The pipeline's quality on held-out records (quality.json)."""
    labels = np.asarray(labels)
    if len(labels) != len(records) or len(labels) == 0:
        raise ExportError(f"the holdout has {len(records)} records and {len(labels)} labels; give one label a record")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if classifier:
            classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
            unknown = sorted({str(v) for v in labels.tolist()} - {str(c) for c in classes})
            if unknown:
                raise ExportError(f"the holdout's labels include classes the pipeline does not know: {unknown[:5]}")
            outputs = {"label": np.asarray(pipeline.predict(records)),
                       "probabilities": np.asarray(pipeline.predict_proba(records))}
            return reference_quality(outputs, labels, classes)
        return reference_quality({"prediction": np.asarray(pipeline.predict(records)).reshape(-1, 1)}, labels)
