"""V2 (Open Inference protocol) tensors: datatypes, data in JSON or in the binary tensor data extension, and the
answer's output tensors.

Binary data is little-endian, row-major, with no padding; a BOOL element is one byte; a BYTES element is a 4-byte
little-endian length followed by that many bytes.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve._core.rows import type_name
from fastserve.exceptions import InvalidInput

# Datatypes a request may send, as numpy dtypes (little-endian whatever the machine).
NUMERIC: dict[str, np.dtype[Any]] = {name: np.dtype(code) for name, code in
                                     (("FP32", "<f4"), ("FP64", "<f8"), ("INT32", "<i4"), ("INT64", "<i8"))}
DATATYPES = (*NUMERIC, "BOOL", "BYTES")
# Every datatype the protocol names: the ones not in DATATYPES are refused as unsupported, not as unknown.
_PROTOCOL_DATATYPES = frozenset({*DATATYPES, "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "FP16", "BF16"})
# ONNX tensor element types (as runtime/session.py names them, and numpy dtype names) -> the protocol's datatypes.
_FROM_DTYPE = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
               "int8": "INT8", "uint8": "UINT8", "bool": "BOOL", "string": "BYTES", "object": "BYTES"}
# The same by numpy (kind, itemsize), for outputs: `dtype.name` alone costs microseconds.
_FROM_NUMPY = {(np.dtype(name).kind, np.dtype(name).itemsize): datatype for name, datatype in _FROM_DTYPE.items()
               if name not in ("string", "object")}
_INT_RANGE = {"INT32": (-2**31, 2**31 - 1), "INT64": (-2**63, 2**63 - 1)}
_LENGTH = struct.Struct("<I")
_LITTLE_ENDIAN = sys.byteorder == "little"


def datatype_of(dtype: str) -> str:
    """The protocol's datatype for an ONNX element type (`float32`, `string`...) or a numpy dtype name."""
    return _FROM_DTYPE.get(dtype, dtype.upper())


def fail(why: str, path: str, **detail: Any) -> InvalidInput:
    return InvalidInput(f"{why} - at `{path}`", detail={"path": path, **detail}, reason=why)


@dataclass(slots=True)
class Tensor:
    """One request input: `data` is the JSON array as sent (flat or nested), or bytes from the binary tail."""

    index: int
    name: str
    datatype: str
    shape: list[int]
    data: Any
    binary: bool

    @property
    def path(self) -> str:
        return f"inputs[{self.index}]"

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def array(self) -> np.ndarray:
        """A numeric tensor's binary data as a flat array (no copy), its byte count checked against the shape."""
        dtype = NUMERIC[self.datatype]
        expected = self.size * dtype.itemsize
        if len(self.data) != expected:
            raise fail(f"binary data has {len(self.data)} bytes; shape {self.shape} of {self.datatype} needs "
                       f"{expected}", f"{self.path}.parameters.binary_data_size", expected=expected,
                       got=len(self.data))
        return np.frombuffer(self.data, dtype=dtype)

    def first(self) -> Tensor:
        """This tensor's first element alone (shape [1]), the others left unread: JSON data's first value (of its
        first row when nested), binary data's first element's bytes."""
        data = self.data
        if not self.binary:
            while type(data) is list and data and type(data[0]) is list:
                data = data[0]
            return Tensor(self.index, self.name, self.datatype, [1], data[:1], False)
        if self.datatype == "BYTES":
            size = 4 + _LENGTH.unpack_from(data)[0] if len(data) >= 4 else 0
        else:
            size = 1 if self.datatype == "BOOL" else NUMERIC[self.datatype].itemsize
        return Tensor(self.index, self.name, self.datatype, [1], data[:size], True)

    def values(self) -> list[Any]:
        """The elements as a flat list of Python values, row-major: numbers, bools, or strings (BYTES)."""
        if not self.binary:
            return self._flat_json()
        if self.datatype == "BYTES":
            return self._bytes_elements()
        if self.datatype == "BOOL":
            if len(self.data) != self.size:
                raise fail(f"binary data has {len(self.data)} bytes; shape {self.shape} of BOOL needs {self.size}",
                           f"{self.path}.parameters.binary_data_size")
            return [b != 0 for b in self.data]
        values: list[Any] = self.array().tolist()
        return values

    def _flat_json(self) -> list[Any]:
        data, size = self.data, self.size
        flat: list[Any]
        if len(data) == size and (size == 0 or type(data[0]) is not list):
            flat = data
        else:
            flat = []
            _flatten(data, self.shape, 0, f"{self.path}.data", flat)
        check = _JSON_CHECKS.get(self.datatype)
        if check is not None:
            for i, value in enumerate(flat):
                why = check(self.datatype, value)
                if why is not None:
                    raise fail(why, f"{self.path}.data[{i}]", index=i)
        return flat

    def _bytes_elements(self) -> list[str]:
        """Length-prefixed elements, decoded as UTF-8 (the model's string inputs are text)."""
        data, offset = self.data, 0
        out: list[str] = []
        while offset < len(data):
            if offset + 4 > len(data):
                raise fail(f"BYTES element {len(out)} has a cut length prefix at byte {offset}",
                           f"{self.path}.parameters.binary_data_size")
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += 4
            if offset + length > len(data):
                raise fail(f"BYTES element {len(out)} says {length} bytes, {len(data) - offset} are left",
                           f"{self.path}.parameters.binary_data_size")
            try:
                out.append(bytes(data[offset:offset + length]).decode("utf-8"))
            except UnicodeDecodeError:
                raise fail("BYTES element is not valid UTF-8", f"{self.path}.data[{len(out)}]",
                           index=len(out)) from None
            offset += length
        if len(out) != self.size:
            raise fail(f"binary data holds {len(out)} BYTES elements; shape {self.shape} needs {self.size}",
                       f"{self.path}.parameters.binary_data_size")
        return out


def _flatten(data: Any, shape: list[int], depth: int, path: str, out: list[Any]) -> None:
    """Nested JSON arrays, checked against `shape` level by level, appended to `out` in row-major order."""
    if type(data) is not list or len(data) != shape[depth]:
        got = f"{len(data)} values" if type(data) is list else type_name(data)
        raise fail(f"expected an array of {shape[depth]} values (shape {shape}, flat or nested), got {got}", path)
    if depth == len(shape) - 1:
        out.extend(data)
        return
    for i, item in enumerate(data):
        _flatten(item, shape, depth + 1, f"{path}[{i}]", out)


def _check_int(datatype: str, value: Any) -> str | None:
    if type(value) is not int:
        return f"expected an integer ({datatype}), got {type_name(value)} {value!r}"
    low, high = _INT_RANGE[datatype]
    if not low <= value <= high:
        return f"value {value} is out of the {datatype} range"
    return None


def _check_bool(datatype: str, value: Any) -> str | None:
    return None if type(value) is bool else f"expected true or false (BOOL), got {type_name(value)} {value!r}"


def _check_bytes(datatype: str, value: Any) -> str | None:
    return None if type(value) is str or value is None else \
        f"expected a string (BYTES), got {type_name(value)} {value!r}"


# Element checks for JSON data; numbers of FP32 / FP64 are checked where they are converted (compiled, one pass).
_JSON_CHECKS = {"INT32": _check_int, "INT64": _check_int, "BOOL": _check_bool, "BYTES": _check_bytes}


def check_datatype(value: Any, path: str) -> str:
    if value in DATATYPES:
        return str(value)
    if value in _PROTOCOL_DATATYPES:
        raise fail(f"datatype {value} is not supported; send one of {', '.join(DATATYPES)}", path)
    raise fail(f"expected a datatype ({', '.join(DATATYPES)}), got {type_name(value)} {value!r}", path)


def encode_output(name: str, array: np.ndarray, binary: bool, blobs: list[bytes]) -> dict[str, Any]:
    """One `$response_output`; binary data is appended to `blobs` and sized in the output's parameters."""
    dtype = array.dtype
    kind = dtype.kind
    datatype = "BYTES" if kind in "OUS" else _FROM_NUMPY.get((kind, dtype.itemsize)) or datatype_of(dtype.name)
    out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        if datatype == "BYTES":
            blob = b"".join(_LENGTH.pack(len(b)) + b for b in map(_utf8, array.reshape(-1).tolist()))
        else:
            # tobytes writes row-major whatever the strides; only a big-endian machine needs a byte swap.
            blob = array.tobytes() if _LITTLE_ENDIAN else array.astype(dtype.newbyteorder("<")).tobytes()
        out["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    elif datatype == "BYTES":
        out["data"] = [v.decode("utf-8", "replace") if type(v) is bytes else str(v) for v in array.reshape(-1).tolist()]
    else:
        # orjson writes a C-contiguous array directly; reshape gives one (a view when the output already is).
        out["data"] = array if array.ndim == 1 and array.flags.c_contiguous else array.reshape(-1)
    return out


def _utf8(value: Any) -> bytes:
    return value if type(value) is bytes else str(value).encode("utf-8")
