"""Servers and references for the client's tests: the real server, the bundled models, in-process onnxruntime."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from fastserve.client import Prediction
from tests.conftest import MODELS, Server, start_server
from tests.http.test_predict import local_outputs


@cache
def expected(model: str, key: bytes, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return local_outputs(model, np.frombuffer(key, dtype=np.float32).reshape(shape))


def reference(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """In-process onnxruntime's outputs for `x`, with the server's session options."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return expected(model, x32.tobytes(), x32.shape)


def assert_answer(answer: Prediction, model: str, x: np.ndarray, version: int = 1, exact: bool = True) -> None:
    """`answer` is `model` version `version`'s, with the outputs onnxruntime gives on `x`. A request batched with
    others may differ in the last bits of a dense model's floats, so those compare within 1e-5 unless `exact`."""
    assert answer.model == model and answer.version == version
    want = reference(model, x)
    assert set(answer.outputs) == set(want)
    for name, value in want.items():
        got = answer[name]
        assert got.shape == value.shape, (name, got.shape, value.shape)
        if exact or value.dtype.kind != "f":
            np.testing.assert_array_equal(got.astype(value.dtype), value)
        else:
            np.testing.assert_allclose(got.astype(value.dtype), value, rtol=1e-5, atol=1e-6)


def churn_records() -> tuple[list[dict[str, object]], np.ndarray]:
    """The churn model's golden raw records, and the input matrix its feature spec makes of them."""
    records = json.loads((MODELS / "churn" / "1" / "validation_records.json").read_text())
    return records, np.load(MODELS / "churn" / "1" / "validation.npz")["inputs"]


def as_columns(records: list[dict[str, object]]) -> dict[str, list[object]]:
    fields = sorted({f for r in records for f in r})
    return {f: [r.get(f) for r in records] for f in fields}


@pytest.fixture(scope="session")
def mlp_inputs() -> np.ndarray:
    x: np.ndarray = np.load(MODELS / "churn_mlp" / "1" / "validation.npz")["inputs"]
    return x


@pytest.fixture(scope="module")
def versions_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Model `m`: version 1 a copy of `spend` (output `prediction`), version 2 of `churn_mlp` (`label`,
    `probabilities`), both loaded; version 2, the newest, is the primary."""
    root = tmp_path_factory.mktemp("versions")
    shutil.copytree(MODELS / "spend" / "1", root / "m" / "1")
    shutil.copytree(MODELS / "churn_mlp" / "1", root / "m" / "2")
    (root / "m" / "fastserve.toml").write_text('[versions]\npolicy = "all"\n')
    srv = start_server(root)
    yield srv
    srv.stop()


def established_connections(port: int) -> int:
    """TCP connections from this machine to `port` that are open now (Linux /proc)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count
