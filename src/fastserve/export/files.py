"""Writing a version folder: the ONNX graph, the validation set, the feature spec and the build record, with bytes
that depend only on their content (no timestamps, no hash-seed order), so an export can be reproduced and compared."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fastserve.export.toml_writer import dumps_tables
from fastserve.registry.repository import GOLDEN_RECORDS_FILE, VALIDATION_FILE

BUILD_FILE = "build.json"


def to_onnx(estimator: Any, n_features: int, name: str, *, zipmap: bool | None = None) -> Any:
    """A scikit-learn estimator as an ONNX graph taking `inputs` of shape [N, n_features] in float32."""
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": zipmap}} if zipmap is not None else None
    onx = skl_to_onnx(
        estimator,
        initial_types=[("inputs", FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
        naming=name,
    )
    onx.doc_string = ""
    # skl2onnx collects opset domains in a set: their order follows the process's string hash seed.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    return onx


def rename_outputs(onx: Any, names: dict[str, str]) -> Any:
    """Give outputs readable names (what clients read in the answer)."""
    for node in onx.graph.node:
        for i, out in enumerate(node.output):
            if out in names:
                node.output[i] = names[out]
    for out in onx.graph.output:
        if out.name in names:
            out.name = names[out.name]
    return onx


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez stamps the current time into the zip; a fixed one keeps the bytes reproducible.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def library_versions() -> dict[str, str]:
    import onnx
    import skl2onnx
    import sklearn

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__}


def write_version(folder: Path, onx: Any, golden: dict[str, np.ndarray], info: dict[str, Any], *,
                  features: list[dict[str, Any]] | None = None, records: list[dict[str, Any]] | None = None) -> None:
    """Write a version folder in place: model.onnx, validation.npz, build.json, and for a model with a feature
    spec, features.toml and the golden records the validation inputs were computed from."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    write_npz(folder / VALIDATION_FILE, golden)
    if features is not None:
        header = ("# The feature spec of this version, written by `fastserve export`: raw record fields in,\n"
                  "# the model's input columns out, in this order, with the numbers the training pipeline fitted.\n")
        (folder / "features.toml").write_text(dumps_tables("features", features, header), encoding="utf-8")
    if records is not None:
        lines = ",\n".join(json.dumps(r, allow_nan=False) for r in records)  # one record per line
        (folder / GOLDEN_RECORDS_FILE).write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    (folder / BUILD_FILE).write_text(json.dumps({**info, "versions": library_versions()}, indent=2) + "\n")


def publish(staging: Path, final: Path) -> None:
    """Make a fully written version folder visible with one rename, so a watching server never sees half of it."""
    if final.exists():
        shutil.rmtree(staging)
        raise FileExistsError(f"{final} already exists; pass another --version")
    os.replace(staging, final)
