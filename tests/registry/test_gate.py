"""The validation gate alone (`registry/gate.py`), on a real scikit-learn model converted with skl2onnx: what
passes, and each reason a version is refused, in words an operator can act on."""

import numpy as np
import pytest

from fastserve.config import GateOptions, RuntimeOptions
from fastserve.registry.gate import check
from fastserve.runtime import ModelSession
from tests.conftest import write_tiny_model


@pytest.fixture
def version(tmp_path):
    """A version folder with its model, and its session; the golden set is the model's own outputs."""
    folder = tmp_path / "m" / "1"
    write_tiny_model(folder)
    session = ModelSession(folder / "model.onnx", RuntimeOptions(device="cpu"), "m v1")
    x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    outputs = session.run(x)
    return folder, session, x, outputs


def golden(folder, **arrays):
    np.savez(folder / "validation.npz", **arrays)


def gate(folder, session, options=None, slo_ms=None, warm_up=None):
    return check(folder, session, None, options or GateOptions(), slo_ms, warm_up or {})


def test_a_version_that_reproduces_its_golden_set_passes(version):
    folder, session, x, out = version
    golden(folder, inputs=x, label=out["label"], probabilities=out["probabilities"])
    assert gate(folder, session) is None
    near = out["probabilities"] + 5e-5  # within atol 1e-4
    golden(folder, inputs=x, label=out["label"], probabilities=near)
    assert gate(folder, session) is None


@pytest.mark.parametrize(("change", "why"), [
    (lambda x, out: {"probabilities": out["probabilities"] + 1e-3}, "output `probabilities` differs from the "
                                                                     "validation set: max abs diff 0.001 > atol"),
    (lambda x, out: {"label": 1 - out["label"]}, "output `label` differs from the validation set on 20 of 20 rows"),
    (lambda x, out: {"probabilities": out["probabilities"][:5]}, "output `probabilities` has shape [20, 2] on the "
                                                                 "validation set, expected [5, 2]"),
    (lambda x, out: {"score": out["probabilities"]}, "validation.npz has `score`, which is not an output of the "
                                                     "model (label, probabilities)"),
    (lambda x, out: {"inputs": None}, "validation.npz has no `inputs`"),
])
def test_each_reason_a_version_is_refused_is_named(version, change, why):
    folder, session, x, out = version
    arrays = {"inputs": x, "label": out["label"], "probabilities": out["probabilities"], **change(x, out)}
    golden(folder, **{k: v for k, v in arrays.items() if v is not None})
    assert why in gate(folder, session)


def test_non_finite_outputs_are_refused(version):
    folder, session, x, _ = version
    bad = x.copy()
    bad[0, 0] = np.nan  # a logistic regression gives NaN probabilities on it
    probabilities = session.run(bad)["probabilities"]
    assert not np.isfinite(probabilities).all()
    golden(folder, inputs=bad, probabilities=probabilities)
    assert gate(folder, session) == "output `probabilities` has NaN or Inf on the validation set"


def test_the_slo_no_validation_set_and_a_gate_turned_off(version):
    folder, session, x, out = version
    assert gate(folder, session) is None  # nothing to compare with
    why = gate(folder, session, slo_ms=1.0, warm_up={1: 0.002, 8: 0.003})
    assert why == "warm-up run of 1 row(s) took 2.00 ms, over latency_slo_ms 1.0"
    assert gate(folder, session, slo_ms=5.0, warm_up={1: 0.002}) is None
    golden(folder, inputs=x, label=1 - out["label"])
    assert gate(folder, session, options=GateOptions(enabled=False)) is None
    assert gate(folder, session) is not None
