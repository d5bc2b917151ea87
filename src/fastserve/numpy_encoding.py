"""numpy values as plain Python, for the encoders: shared by the server's codecs and the client."""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_numpy(value: Any) -> Any:
    """An encoder's `default` hook: what msgpack never takes (arrays, numpy scalars) and orjson does not take
    natively (arrays of strings or objects), as lists and Python scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode a {type(value).__name__}; expected numbers, strings, None, lists, dicts or "
                    "numpy arrays and scalars")
