"""ONNX Runtime sessions: providers, options, metadata and warm-up, on real skl2onnx models."""

import logging

import numpy as np
import onnxruntime as ort
import pytest

from fastserve.config import RuntimeOptions
from fastserve.exceptions import DeviceUnavailable, ModelLoadError
from fastserve.runtime import ModelSession
from tests.conftest import MODELS, write_tiny_model

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_metadata_is_read_from_the_model():
    s = ModelSession(MODELS / "churn" / "1" / "model.onnx", RuntimeOptions(device="cpu"), "churn v1")
    assert (s.input.name, s.input.dtype, s.input.shape) == ("inputs", "float32", (None, 22))
    assert [(o.name, o.dtype) for o in s.outputs] == [("label", "int64"), ("probabilities", "float32")]
    assert s.n_features == 22 and s.fixed_batch is None
    assert s.providers == ["CPUExecutionProvider"]
    best = s.warm_up()
    assert set(best) == {1, 32} and all(t > 0 for t in best.values())


def test_float64_models_take_float64_rows(tmp_path):
    path = write_tiny_model(tmp_path, double=True)
    s = ModelSession(path, RuntimeOptions(device="cpu"), "tiny")
    assert s.input_dtype == np.float64
    out = s.run(np.zeros((3, 4), dtype=np.float64))
    assert out["label"].shape == (3,) and out["probabilities"].shape == (3, 2)


def test_zipmap_outputs_are_refused_with_a_fix(tmp_path):
    path = write_tiny_model(tmp_path, zipmap=True)
    with pytest.raises(ModelLoadError, match=r"ZipMap output: convert with skl2onnx options=\{id\(model\)"):
        ModelSession(path, RuntimeOptions(device="cpu"), "tiny")


def test_a_file_that_is_not_onnx_is_a_load_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="onnxruntime could not load"):
        ModelSession(tmp_path / "model.onnx", RuntimeOptions(device="cpu"), "broken")


def test_session_options_are_applied(tmp_path):
    opts = RuntimeOptions(device="cpu", intra_op_threads=2, graph_optimization="disabled", memory_arena=False)
    s = ModelSession(MODELS / "spend" / "1" / "model.onnx", opts, "spend v1")
    so = s._session.get_session_options()
    assert so.intra_op_num_threads == 2
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert so.enable_cpu_mem_arena is False


def test_auto_falls_back_to_cpu_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="fastserve.runtime"):
        s = ModelSession(MODELS / "spend" / "1" / "model.onnx", RuntimeOptions(device="auto"), "spend v1")
    assert s.providers[-1] == "CPUExecutionProvider"
    assert f"spend v1: providers {', '.join(s.providers)} (device=auto)" in caplog.text


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime build has CUDA; the refusal is for builds without it")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_explicit_gpu_device_without_gpu_build_is_refused(device):
    with pytest.raises(DeviceUnavailable, match=r"Install `fastserve\[gpu\]`"):
        ModelSession(MODELS / "spend" / "1" / "model.onnx", RuntimeOptions(device=device), "spend v1")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu (CUDAExecutionProvider) and an NVIDIA GPU")
def test_cuda_session_matches_cpu():
    x = np.asarray(np.load(MODELS / "churn_mlp" / "1" / "validation.npz")["inputs"], dtype=np.float32)
    path = MODELS / "churn_mlp" / "1" / "model.onnx"
    gpu = ModelSession(path, RuntimeOptions(device="cuda"), "churn_mlp v1")
    cpu = ModelSession(path, RuntimeOptions(device="cpu"), "churn_mlp v1")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(gpu.run(x)["probabilities"], cpu.run(x)["probabilities"], atol=1e-4)
