from typing import Any

import numpy as np
import numpy.typing as npt

_Matrix = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def murmurhash3(value: str) -> int: ...

class Feature:
    name: str
    field: str
    width: int
    kind_name: str
    lookup: dict[Any, int]
    def __init__(
        self,
        name: str,
        field: str,
        kind: str,
        *,
        impute: Any = None,
        ops: list[tuple[str, float, float]] | None = None,
        edges: Any = None,
        lookup: dict[Any, int] | None = None,
        values: Any = None,
        columns: Any = None,
        strings: bool = True,
        unknown: str = "error",
        unknown_column: int = -1,
        unknown_value: float = ...,
        buckets: int = 0,
        alternate_sign: bool = False,
        width: int = 1,
    ) -> None: ...

class FeatureTransform:
    features: tuple[Feature, ...]
    fields: tuple[str, ...]
    width: int
    strict: bool
    raw_features: tuple[Feature | None, ...]
    def __init__(self, features: list[Feature], strict: bool = False) -> None: ...
    def fill_records(self, records: list[Any], out: _Matrix, raw: npt.NDArray[np.float64] | None = None) -> int: ...
    def count_columns(self, columns: dict[str, Any]) -> int: ...
    def fill_columns(self, columns: dict[str, Any], out: _Matrix,
                     raw: npt.NDArray[np.float64] | None = None) -> int: ...
