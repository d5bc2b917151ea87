"""ONNX Runtime: sessions, execution providers, metadata, warm-up."""

from fastserve.runtime.session import ModelSession, TensorInfo, available_providers

__all__ = ["ModelSession", "TensorInfo", "available_providers"]
