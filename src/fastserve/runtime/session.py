"""One ONNX Runtime session for one model version: providers, options, metadata, warm-up."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fastserve.config import DEVICES, RuntimeOptions
from fastserve.exceptions import DeviceUnavailable, InferenceError, ModelLoadError

log = logging.getLogger("fastserve.runtime")

_GRAPH_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
# Input dtypes the row decoder writes directly.
_INPUT_DTYPES = {"float32": np.float32, "float64": np.float64}


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.dtype, "shape": [d if d is not None else -1 for d in self.shape]}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session's input and outputs and where it runs: its version's status shows them after the session goes."""

    input: TensorInfo
    outputs: list[TensorInfo]
    device: str
    providers: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"inputs": [self.input.as_dict()], "outputs": [o.as_dict() for o in self.outputs],
                "device": self.device, "providers": self.providers}


def _tensor_info(arg: Any, where: str) -> TensorInfo:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        hint = ""
        if arg.type.startswith("seq(map"):
            hint = " (a scikit-learn ZipMap output: convert with skl2onnx options={id(model): {'zipmap': False}})"
        raise ModelLoadError(f"{where}: `{arg.name}` has type {arg.type}, which fastserve does not serve{hint}")
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorInfo(arg.name, dtype, shape)


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _GRAPH_LEVELS[options.graph_optimization]
    so.enable_cpu_mem_arena = options.memory_arena
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if options.allow_spinning else "0")
    so.log_severity_level = 3  # errors only: provider fallbacks are reported by fastserve itself
    return so


def _requested_providers(device: str, label: str) -> list[str]:
    available = set(available_providers())
    wanted = DEVICES[device]
    if device == "auto":
        return [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available and p != "CPUExecutionProvider"]
    if missing:
        raise DeviceUnavailable(
            f"{label}: device={device} needs {', '.join(missing)}, which this onnxruntime build lacks "
            f"(available: {', '.join(sorted(available))}). Install `fastserve[gpu]` (onnxruntime-gpu) on a machine "
            "with an NVIDIA GPU, or use --device auto|cpu."
        )
    return list(wanted)


class ModelSession:
    """An `InferenceSession` with the metadata fastserve serves and validates against.

    fastserve serves models with one 2-D input `[batch, features]` of float32 or float64: the shape tabular
    models exported by skl2onnx have.
    """

    def __init__(self, path: Path, options: RuntimeOptions, label: str) -> None:
        self.path = path
        self.label = label
        self.device = options.device
        requested = _requested_providers(options.device, label)
        started = time.perf_counter()
        try:
            self._session = ort.InferenceSession(str(path), sess_options=_session_options(options),
                                                 providers=requested)
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ModelLoadError(f"{label}: onnxruntime could not load {path}: {exc}") from exc
        self.load_seconds = time.perf_counter() - started
        self.providers: list[str] = list(self._session.get_providers())
        self._check_providers(options.device, requested)

        inputs = [_tensor_info(a, label) for a in self._session.get_inputs()]
        self.outputs = [_tensor_info(a, label) for a in self._session.get_outputs()]
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or not isinstance(inputs[0].shape[1], int):
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
            raise ModelLoadError(f"{label}: expected one 2-D input [batch, features], got {shapes}")
        self.input = inputs[0]
        if self.input.dtype not in _INPUT_DTYPES:
            raise ModelLoadError(f"{label}: input `{self.input.name}` is {self.input.dtype}; "
                                 f"fastserve takes {' or '.join(_INPUT_DTYPES)} inputs")
        self.input_dtype = np.dtype(_INPUT_DTYPES[self.input.dtype])
        width = self.input.shape[1]
        assert isinstance(width, int)  # (checked above)
        self.n_features: int = width
        batch = self.input.shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None
        self.output_names = [o.name for o in self.outputs]

    def _check_providers(self, device: str, requested: list[str]) -> None:
        chosen = self.providers[0] if self.providers else "none"
        dropped = [p for p in requested if p not in self.providers]
        if device in ("cuda", "tensorrt") and requested[0] not in self.providers:
            raise DeviceUnavailable(
                f"{self.label}: device={device} asked for {requested[0]} but onnxruntime could not start it "
                "(no usable GPU or CUDA/cuDNN libraries?); use --device auto to fall back to the CPU"
            )
        if dropped:
            log.warning("%s: device=%s: %s could not start; running on %s", self.label, device,
                        ", ".join(dropped), chosen)
        elif device == "auto" and chosen == "CPUExecutionProvider":
            log.info("%s: device=auto: no GPU provider in this onnxruntime build; running on the CPU", self.label)
        log.info("%s: providers %s (device=%s)", self.label, ", ".join(self.providers), device)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run on a `[rows, n_features]` matrix of the input dtype. Blocking: call from a worker thread."""
        try:
            results = self._session.run(self.output_names, {self.input.name: x})  # releases the GIL
        except Exception as exc:
            raise InferenceError(f"{self.label}: onnxruntime failed on a batch of {len(x)} rows: {exc}") from exc
        return dict(zip(self.output_names, results, strict=True))

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 32), repeat: int = 3) -> dict[int, float]:
        """Run each batch size a few times so first requests do not pay for lazy allocation.

        Returns the fastest run of each size, in seconds (the batcher's first run-time estimates).
        """
        sizes = (self.fixed_batch,) if self.fixed_batch else batch_sizes
        best: dict[int, float] = {}
        for n in sizes:
            x = np.zeros((n, self.n_features), dtype=self.input_dtype)
            for _ in range(repeat):
                started = time.perf_counter()
                self.run(x)
                best[n] = min(best.get(n, float("inf")), time.perf_counter() - started)
        return best

    def info(self) -> SessionInfo:
        return SessionInfo(self.input, list(self.outputs), self.device, self.providers)
