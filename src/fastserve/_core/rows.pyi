import numpy as np
import numpy.typing as npt

def fill_rows(
    rows: list[list[float]],
    out: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    allow_non_finite: bool,
    path: str,
) -> int: ...

def first_non_finite(x: npt.NDArray[np.float32] | npt.NDArray[np.float64]) -> int: ...

def shown(value: object) -> str: ...
def type_name(value: object) -> str: ...

def msgpack_tensor(
    body: bytes, width: int, max_rows: int, float32: bool
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64] | None: ...

def json_rows(
    body: bytes, width: int, max_rows: int, float32: bool
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64] | None: ...

def v2_tensor(
    request: object, tail: object, input_name: str, width: int, max_rows: int, float32: bool
) -> tuple[npt.NDArray[np.float32] | npt.NDArray[np.float64], str | None, bool, float | None] | None: ...
