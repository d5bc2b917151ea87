"""ONNX Runtime: sessions, execution providers, and the threads that run them."""

from fastserve.runtime.runner import Runner
from fastserve.runtime.session import ModelSession, TensorInfo, available_providers

__all__ = ["ModelSession", "Runner", "TensorInfo", "available_providers"]
