"""fastserve: a high-performance inference server for ONNX models of tabular data."""

__version__ = "0.1.0"
