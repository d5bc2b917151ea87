"""The compiled core. No I/O, no asyncio, no onnxruntime: pure data work on buffers."""

try:
    from fastserve._core.rows import fill_rows, first_non_finite
    from fastserve._core.transforms import Feature, FeatureTransform, murmurhash3
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "fastserve's compiled core (fastserve._core) is not built. Install the package with `pip install .` "
        "(a C compiler and the Python headers are needed); there is no pure-Python fallback."
    ) from exc

__all__ = ["Feature", "FeatureTransform", "fill_rows", "first_non_finite", "murmurhash3"]
