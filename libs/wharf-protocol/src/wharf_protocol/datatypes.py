"""The Open Inference Protocol tensor datatypes and their numpy counterparts.

BF16 has no numpy dtype: it is carried as float32 in numpy and as the upper 16 bits of the
float32 pattern on the wire (`bf16_to_float32` / `float32_to_bf16`). BYTES is an object array
whose elements are `bytes` (binary/raw) or `str` (JSON).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from wharf_protocol.errors import InvalidInput


class Datatype(StrEnum):
    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BF16 = "BF16"
    BYTES = "BYTES"


_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.float32),
    "BYTES": np.dtype(np.object_),
}

# Little-endian wire dtypes of the fixed-size datatypes (the protocol is little-endian).
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    name: dtype.newbyteorder("<")
    for name, dtype in _TO_NUMPY.items()
    if name not in ("BYTES", "BF16")
}
WIRE_DTYPES["BF16"] = np.dtype("<u2")

_FROM_KIND_SIZE: dict[tuple[str, int], Datatype] = {
    ("b", 1): Datatype.BOOL,
    ("u", 1): Datatype.UINT8,
    ("u", 2): Datatype.UINT16,
    ("u", 4): Datatype.UINT32,
    ("u", 8): Datatype.UINT64,
    ("i", 1): Datatype.INT8,
    ("i", 2): Datatype.INT16,
    ("i", 4): Datatype.INT32,
    ("i", 8): Datatype.INT64,
    ("f", 2): Datatype.FP16,
    ("f", 4): Datatype.FP32,
    ("f", 8): Datatype.FP64,
}

DATATYPES: frozenset[str] = frozenset(_TO_NUMPY)
# Enum construction by value is slow; this is on every tensor's path.
_BY_NAME: dict[str, Datatype] = {d.value: d for d in Datatype}


def parse_datatype(value: object, where: str) -> Datatype:
    """The Datatype named by `value`, or InvalidInput naming `where`."""
    if isinstance(value, str):
        found = _BY_NAME.get(value)
        if found is not None:
            return found
    raise InvalidInput(
        f"{where}: unsupported datatype {value!r}; expected one of {', '.join(Datatype)}"
    )


def to_numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype an array of this datatype has (BF16 -> float32, BYTES -> object)."""
    try:
        return _TO_NUMPY[datatype]
    except KeyError:
        raise InvalidInput(f"unsupported datatype {datatype!r}") from None


def from_numpy_dtype(dtype: npt.DTypeLike) -> Datatype:
    """The datatype of a numpy dtype; str/bytes/object arrays are BYTES."""
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    cached = _FROM_DTYPE.get(dt)
    if cached is not None:
        return cached
    found = _from_numpy_dtype(dt)
    _FROM_DTYPE[dt] = found
    return found


# Per-dtype memo: this is on every response's path and `np.dtype.name` is slow.
_FROM_DTYPE: dict[np.dtype[Any], Datatype] = {}


def _from_numpy_dtype(dt: np.dtype[Any]) -> Datatype:
    if dt.kind in ("O", "S", "U", "T"):
        return Datatype.BYTES
    if dt.name == "bfloat16":  # ml_dtypes.bfloat16, as tritonclient uses
        return Datatype.BF16
    found = _FROM_KIND_SIZE.get((dt.kind, dt.itemsize))
    if found is None:
        raise InvalidInput(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return found


def element_size(datatype: str) -> int | None:
    """Bytes per element on the wire, None for BYTES (variable length)."""
    wire = WIRE_DTYPES.get(datatype)
    return None if wire is None else wire.itemsize


def bf16_to_float32(bits: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """Widen BF16 bit patterns to float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Round float32 values to BF16 bit patterns (round to nearest even, NaN stays NaN)."""
    arr = np.ascontiguousarray(values, dtype=np.float32)
    bits = arr.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(arr)
    if nan.any():
        rounded[nan] = np.uint16(0x7FC0)
    return rounded
