"""Where `fastserve bench` takes its rows from: random numbers of the model's width and dtype, a file of real data
(`--data`: CSV, JSON lines, parquet), or a model version's golden inputs (`--from-validation`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastserve.exceptions import BenchError

SUFFIXES = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Data:
    """Rows of model inputs, or raw records (dicts of field -> value, for a model with a feature spec)."""

    source: str
    rows: np.ndarray | None = None
    records: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.records or ())


def random_rows(width: int, dtype: str, n: int, seed: int) -> Data:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        return Data("random", rows=rng.integers(0, 10, size=(n, width)).astype(dtype))
    return Data("random", rows=rng.normal(size=(n, width)).astype(dtype))


def read_file(path: Path) -> Data:
    """A table whose columns are all numbers becomes rows (in its column order); any other table, or JSON lines of
    objects, becomes records. JSON lines of arrays are rows."""
    if not path.is_file():
        raise BenchError(f"--data {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix not in SUFFIXES:
        raise BenchError(f"--data {str(path)!r}: expected a .csv, .jsonl or .parquet file")
    try:
        import pandas as pd
    except ImportError as exc:
        raise BenchError(f"--data {suffix} needs pandas: pip install 'fastserve[bench]' ({exc})") from exc
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except ImportError as exc:
        raise BenchError(f"--data .parquet needs pyarrow: pip install pyarrow ({exc})") from exc
    except (ValueError, OSError) as exc:
        raise BenchError(f"--data {str(path)!r}: cannot read it: {exc}") from exc
    if frame.empty:
        raise BenchError(f"--data {str(path)!r}: no rows")
    if all(dtype.kind in "fiub" for dtype in frame.dtypes):
        return Data(str(path), rows=frame.to_numpy(dtype=np.float64))
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    return Data(str(path), records=records)


def _read_jsonl(path: Path) -> Data:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            raise BenchError(f"--data {str(path)!r} line {number}: not JSON ({exc})") from None
    if not items:
        raise BenchError(f"--data {str(path)!r}: no rows")
    if all(isinstance(i, dict) for i in items):
        return Data(str(path), records=items)
    if all(isinstance(i, list) for i in items):
        try:
            return Data(str(path), rows=np.array(items, dtype=np.float64))
        except ValueError:
            raise BenchError(f"--data {str(path)!r}: rows of different lengths or not numbers") from None
    raise BenchError(f"--data {str(path)!r}: expected every line to be an array of numbers (a row) or every line "
                     "an object (a record)")


def read_validation(models_dir: Path, model: str, version: str | None) -> Data:
    """`<dir>/<model>/<version>/validation.npz`'s `inputs` (the highest version when none is named)."""
    folder = models_dir / model
    if version is None:
        numbers = sorted((int(p.name) for p in folder.glob("*") if p.name.isdigit() and p.is_dir()), reverse=True)
        version = next((str(n) for n in numbers if (folder / str(n) / "validation.npz").is_file()), "1")
    path = folder / version / "validation.npz"
    if not path.is_file():
        raise BenchError(f"--from-validation: no {path} (expected <dir>/<model>/<version>/validation.npz)")
    with np.load(path) as npz:
        if "inputs" not in npz:
            raise BenchError(f"--from-validation: {path} has no `inputs` array (it has {', '.join(npz.files)})")
        return Data(str(path), rows=np.asarray(npz["inputs"]))


def fit(data: Data, width: int, dtype: str, model: str) -> Data:
    """Rows checked against the model's width and cast to its dtype; records as they are."""
    if data.rows is None:
        return data
    rows = data.rows.reshape(len(data.rows), -1)
    if width > 0 and rows.shape[1] != width:
        raise BenchError(f"{data.source}: rows of {rows.shape[1]} values, but model {model!r} takes {width} "
                         "features per row")
    if not np.isfinite(rows).all():
        raise BenchError(f"{data.source}: rows hold NaN or Inf, which the server refuses")
    return Data(data.source, rows=rows.astype(dtype))
