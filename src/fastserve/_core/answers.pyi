import numpy as np
import numpy.typing as npt

def msgpack_arrays(outputs: dict[str, npt.NDArray[np.generic]]) -> bytes | None: ...
