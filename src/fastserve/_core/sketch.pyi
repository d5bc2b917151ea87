from typing import Any

import numpy as np
import numpy.typing as npt

MAX_BINS: int

class BinnedSketch:
    n_columns: int
    rows: int
    nan: Any
    inf: Any
    below: Any
    above: Any
    sum: Any
    sum_sq: Any
    def __init__(self, edges: list[Any], low: npt.NDArray[np.float64], high: npt.NDArray[np.float64]) -> None: ...
    def update(self, x: npt.NDArray[np.float32]) -> None: ...
    def merge(self, other: BinnedSketch) -> None: ...
    def reset(self) -> None: ...
    def copy(self) -> BinnedSketch: ...
    def bin_counts(self, j: int) -> npt.NDArray[np.int64]: ...
    @property
    def nbytes(self) -> int: ...
