from typing import final

import numpy as np
import numpy.typing as npt

LABEL_NOT_INTEGER: int

@final
class AnswerRing:
    versions: npt.NDArray[np.int32]
    times: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    rows: npt.NDArray[np.int32]
    ids: list[str | None]
    where: dict[str, int]
    size: int
    capacity: int
    width: int
    next: int
    longest: int
    fell_out: int
    filter_bits: int
    filter_capacity: int
    def __new__(cls, capacity: int, width: int, filter_bytes: int) -> AnswerRing: ...
    @property
    def filter_bytes(self) -> int: ...
    def fell_out_recently(self, key: str) -> bool: ...
    def put(self, key: str, version: int, label: npt.NDArray[np.generic] | None,
            scores: npt.NDArray[np.generic] | None, now: float) -> int: ...
    def keep(self, key: str, version: int, outputs: dict[str, npt.NDArray[np.generic]], now: float) -> int: ...
