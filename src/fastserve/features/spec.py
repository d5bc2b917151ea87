"""The feature spec: `[[features]]` tables (in a version's `features.toml` or the model's `fastserve.toml`) into the
compiled transform's features, validated with the file, the feature and the key named.

The spec fixes the model input's column order: each feature writes its columns after the previous one's.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path
from typing import Any

from fastserve._core import Feature, FeatureTransform
from fastserve.exceptions import ConfigError
from fastserve.toml_table import TomlTable

FEATURES_FILE = "features.toml"
TYPES = ("numeric", "categorical", "hashed")
STEPS = ("log1p", "clip", "standardize", "min_max")
ENCODINGS = ("onehot", "ordinal")
_EPS = 2.220446049250313e-16  # numpy.finfo(float64).eps


def _number(table: TomlTable, key: str, default: Any = None, *, required: bool = False, finite: bool = True) -> Any:
    value = table.need(key, (int, float)) if required else table.take(key, (int, float), default)
    if value is not None and finite and not math.isfinite(value):
        raise table.fail(f"`{key}` must be a finite number, got {value!r}")
    return float(value) if value is not None else None


def min_max_affine(data_min: float, data_max: float, low: float, high: float) -> tuple[float, float]:
    """scikit-learn's MinMaxScaler as x * scale + offset, with its arithmetic (a near-zero range counts as 1)."""
    data_range = data_max - data_min
    if data_range < 10 * _EPS:
        data_range = 1.0
    scale = (high - low) / data_range
    return scale, low - data_min * scale


def _step(item: Any, where: str) -> list[tuple[str, float, float]]:
    if type(item) is not dict:
        raise ConfigError(f"{where}: a step is a table like {{ op = \"log1p\" }}, got {item!r}")
    t = TomlTable(item, where)
    op = t.choice("op", STEPS, "")
    ops: list[tuple[str, float, float]]
    if op == "log1p":
        ops = [("log1p", 0.0, 0.0)]
    elif op == "clip":
        low, high = _number(t, "min", -math.inf, finite=False), _number(t, "max", math.inf, finite=False)
        if not low <= high:
            raise t.fail(f"clip needs min <= max, got {low} > {high}")
        ops = [("clip", low, high)]
    elif op == "standardize":
        mean, std = _number(t, "mean", required=True), _number(t, "std", required=True)
        if std == 0:
            raise t.fail("`std` must not be 0 (scikit-learn stores 1 for a constant feature)")
        ops = [("standardize", mean, std)]
    else:
        data_min, data_max = _number(t, "min", required=True), _number(t, "max", required=True)
        bounds = t.take("range", list, [0.0, 1.0])
        if len(bounds) != 2 or any(type(b) not in (int, float) for b in bounds) or not bounds[0] < bounds[1]:
            raise t.fail(f"`range` must be [low, high] with low < high, got {bounds!r}")
        low, high = float(bounds[0]), float(bounds[1])
        ops = [("affine", *min_max_affine(data_min, data_max, low, high))]
        if t.take("clip", bool, False):
            ops.append(("clip", low, high))
    t.done()
    return ops


def _numeric(t: TomlTable, name: str, field: str, where: str) -> Feature:
    impute = _number(t, "impute")
    ops = [op for i, step in enumerate(t.take("steps", list, [])) for op in _step(step, f"{where} steps[{i}]")]
    bucketize = t.take("bucketize", dict, None)
    if bucketize is None:
        return Feature(name, field, "number", impute=impute, ops=ops)
    b = TomlTable(bucketize, f"{where} bucketize")
    edges = b.need("boundaries", list)
    if not edges or any(type(e) not in (int, float) or not math.isfinite(e) for e in edges) \
            or any(x > y for x, y in itertools.pairwise(edges)):
        raise b.fail(f"`boundaries` must be a non-empty, non-decreasing list of finite numbers, got {edges!r}")
    encoding = b.choice("encoding", ENCODINGS, "ordinal")
    b.done()
    if encoding == "ordinal":
        return Feature(name, field, "bucket_ordinal", impute=impute, ops=ops, edges=edges)
    return Feature(name, field, "bucket_onehot", impute=impute, ops=ops, edges=edges, width=len(edges) + 1)


def _categorical(t: TomlTable, name: str, field: str) -> Feature:
    vocabulary = t.need("vocabulary", list)
    strings = all(type(v) is str for v in vocabulary)
    if not vocabulary or not (strings or all(type(v) is int for v in vocabulary)):
        raise t.fail(f"`vocabulary` must be a non-empty list of strings or of integers, got {vocabulary!r}")
    if len(set(vocabulary)) != len(vocabulary):
        raise t.fail("`vocabulary` has a category twice")
    impute = t.take("impute", str if strings else int, None)
    lookup = {v: i for i, v in enumerate(vocabulary)}
    encoding = t.choice("encoding", ENCODINGS, "onehot")
    if encoding == "ordinal":
        unknown = t.choice("unknown", ("error", "value"), "error")
        values = [float(v) for v in t.take("values", list, list(range(len(vocabulary))))]
        if len(values) != len(vocabulary):
            raise t.fail(f"`values` has {len(values)} entries for {len(vocabulary)} categories")
        unknown_value = _number(t, "unknown_value", required=unknown == "value", finite=False)
        return Feature(name, field, "category_ordinal", impute=impute, lookup=lookup, values=values, strings=strings,
                       unknown="ignore" if unknown == "value" else "error",
                       unknown_value=unknown_value if unknown_value is not None else math.nan)
    unknown = t.choice("unknown", ("error", "ignore", "slot"), "error")
    columns = t.take("columns", list, list(range(len(vocabulary))))
    if len(columns) != len(vocabulary) or any(type(c) is not int or c < -1 for c in columns):
        raise t.fail(f"`columns` needs one column index (or -1 for none) per category, got {columns!r}")
    used = max(columns) + 1
    unknown_column = t.take("unknown_column", int, used if unknown == "slot" else -1)
    width = t.take("width", int, max(used, unknown_column + 1))
    if width < max(used, unknown_column + 1) or width < 1:
        raise t.fail(f"`width` {width} is too small for the columns used")
    return Feature(name, field, "category_onehot", impute=impute, lookup=lookup, columns=columns, strings=strings,
                   unknown=unknown, unknown_column=unknown_column, width=width)


def _hashed(t: TomlTable, name: str, field: str) -> Feature:
    buckets = t.positive("buckets", 0)
    encoding = t.choice("encoding", ENCODINGS, "onehot")
    alternate_sign = t.take("alternate_sign", bool, False)
    if alternate_sign and encoding != "onehot":
        raise t.fail("`alternate_sign` applies to one-hot hashing only")
    impute = t.take("impute", str, None)
    kind = "hash_onehot" if encoding == "onehot" else "hash_ordinal"
    return Feature(name, field, kind, impute=impute, buckets=buckets, alternate_sign=alternate_sign,
                   width=buckets if encoding == "onehot" else 1)


def parse_features(items: Any, where: str) -> tuple[Feature, ...]:
    """The `[[features]]` array of tables, in order."""
    if type(items) is not list or not items or any(type(item) is not dict for item in items):
        raise ConfigError(f"{where}: `features` must be a non-empty array of tables ([[features]])")
    features: list[Feature] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        label = f"{where} features[{i}]"
        t = TomlTable(item, label)
        name = t.need("name", str)
        label = f"{where} feature {name!r}"
        t = TomlTable({k: v for k, v in item.items() if k != "name"}, label)
        if not name or name in names:
            raise t.fail("`name` must be non-empty and unique among the features")
        names.add(name)
        field = t.take("field", str, name)
        kind = t.choice("type", TYPES, "")
        try:
            if kind == "numeric":
                feature = _numeric(t, name, field, label)
            elif kind == "categorical":
                feature = _categorical(t, name, field)
            else:
                feature = _hashed(t, name, field)
        except ValueError as exc:  # the core's own consistency checks
            raise t.fail(str(exc)) from None
        t.done()
        features.append(feature)
    return tuple(features)


def read_features_file(path: Path) -> tuple[Feature, ...]:
    """A version's `features.toml`: a `[[features]]` array and nothing else."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    unknown = sorted(data.keys() - {"features"})
    if unknown:
        raise ConfigError(f"{path}: unknown key `{unknown[0]}`; a features file holds [[features]] tables only")
    return parse_features(data.get("features"), str(path))


def describe(transform: FeatureTransform) -> list[dict[str, Any]]:
    """The features as `GET /v1/models/{name}` shows them."""
    return [{"name": f.name, "field": f.field, "kind": f.kind_name, "width": f.width} for f in transform.features]


def load_transform(version_dir: Path, model_features: tuple[Feature, ...] | None,
                   strict: bool) -> FeatureTransform | None:
    """The version's own `features.toml` when it has one (its fitted numbers travel with it), else the model's
    `[[features]]` from fastserve.toml, else None (the model takes rows of numbers only)."""
    path = version_dir / FEATURES_FILE
    features = read_features_file(path) if path.is_file() else model_features
    return FeatureTransform(list(features), strict) if features else None
