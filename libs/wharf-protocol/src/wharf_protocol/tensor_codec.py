"""numpy <-> wire conversions of one tensor, shared by the REST and gRPC codecs.

Every function that reads client data raises `InvalidInput` (naming `where`) and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from wharf_protocol.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor
from wharf_protocol.datatypes import (
    WIRE_DTYPES,
    bf16_to_float32,
    float32_to_bf16,
    to_numpy_dtype,
)
from wharf_protocol.errors import InvalidInput

Array = npt.NDArray[Any]

# Largest element count of a shape; far beyond any real tensor, and safely below numpy's
# limit on array sizes in bytes.
_MAX_ELEMENTS = 2**59
_INT_KINDS = frozenset("iu")
_NUMBER_KINDS = frozenset("iuf")
_FLOAT_TYPES = frozenset(("FP16", "FP32", "FP64", "BF16"))


def parse_shape(value: object, where: str) -> list[int]:
    """A list of non-negative ints, or InvalidInput."""
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: shape must be a list of non-negative integers, got {value!r}")
    # Even a zero-size tensor must have a shape numpy can hold: the product of the non-zero
    # dimensions (times the item size) has to fit in an index.
    nonzero = 1
    for dim in value:
        if type(dim) is not int or dim < 0:
            raise InvalidInput(
                f"{where}: shape must be a list of non-negative integers, got {value!r}"
            )
        if dim:
            nonzero *= dim
            if nonzero > _MAX_ELEMENTS:
                raise InvalidInput(f"{where}: shape {value} is too large")
    return value


def element_count(shape: list[int]) -> int:
    return math.prod(shape)


def _check_count(arr: Array, shape: list[int], datatype: str, where: str) -> None:
    expected = element_count(shape)
    if arr.size != expected:
        raise InvalidInput(
            f"{where}: shape {shape} has {expected} elements but {arr.size} {datatype} "
            f"values were given"
        )


def _flatten_strings(data: object, out: list[object], where: str) -> None:
    if isinstance(data, list):
        for item in data:
            _flatten_strings(item, out, where)
    elif isinstance(data, (str, bytes)):
        out.append(data)
    else:
        raise InvalidInput(f"{where}: BYTES data must hold strings, got {type(data).__name__}")


def array_from_json(data: object, datatype: str, shape: list[int], where: str) -> Array:
    """The array of a JSON `data` field (flat or nested, row-major)."""
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: data must be a list, got {type(data).__name__}")
    if datatype == "BYTES":
        flat: list[object] = []
        _flatten_strings(data, flat, where)
        arr: Array = np.empty(len(flat), dtype=object)
        arr[:] = flat
        _check_count(arr, shape, datatype, where)
        return arr.reshape(shape)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"{where}: data must be a regular (non-ragged) nested list of {datatype} values"
        ) from None
    kind = arr.dtype.kind
    if arr.size:
        if datatype == "BOOL":
            if kind != "b":
                raise InvalidInput(f"{where}: BOOL data must hold true/false values")
        elif datatype in _FLOAT_TYPES:
            if kind not in _NUMBER_KINDS:
                raise InvalidInput(f"{where}: {datatype} data must hold numbers")
        elif kind not in _INT_KINDS:
            # numpy turns ints beyond int64 (e.g. UINT64 max next to small ints) into
            # float64; look at the Python values instead of losing precision.
            arr = _exact_ints(data, datatype, where)
    _check_count(arr, shape, datatype, where)
    return _cast(arr, datatype, where).reshape(shape)


def _exact_ints(data: list[Any], datatype: str, where: str) -> Array:
    try:
        objects = np.array(data, dtype=object)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: {datatype} data must hold integers") from None
    flat = objects.reshape(-1).tolist()
    info = np.iinfo(to_numpy_dtype(datatype))
    for value in flat:
        if type(value) is not int:
            raise InvalidInput(f"{where}: {datatype} data must hold integers")
        if not info.min <= value <= info.max:
            raise InvalidInput(f"{where}: value out of range for {datatype}")
    return np.array(flat, dtype=to_numpy_dtype(datatype)).reshape(objects.shape)


def _cast(arr: Array, datatype: str, where: str) -> Array:
    target = to_numpy_dtype(datatype)
    if arr.dtype == target:
        return arr
    if arr.size and target.kind in _INT_KINDS:
        info = np.iinfo(target)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise InvalidInput(f"{where}: value out of range for {datatype}")
    if datatype in _FLOAT_TYPES:
        # Values beyond the type's range become inf, as with any float cast.
        out = _astype_ignoring_overflow(arr, target)
        if datatype == "BF16":
            out = bf16_to_float32(float32_to_bf16(out))
        return out
    return arr.astype(target)


def _astype(arr: Array, target: np.dtype[Any]) -> Array:
    return arr.astype(target)


def _astype_in_errstate(arr: Array, target: np.dtype[Any]) -> Array:
    with np.errstate(over="ignore"):
        return arr.astype(target)


# numpy 2's errstate as a decorator sets the state per call (as its context manager does, but
# without building and entering a new one per call: half the cost of a small cast); numpy 1's
# keeps the state it replaced on the one instance, which threads would share.
_astype_ignoring_overflow = (
    np.errstate(over="ignore")(_astype)
    if int(np.__version__.split(".")[0]) >= 2
    else _astype_in_errstate
)


def _wire_dtype(datatype: str) -> np.dtype[Any]:
    wire = WIRE_DTYPES.get(datatype)
    if wire is None:
        raise InvalidInput(f"unsupported datatype {datatype!r}")
    return wire


def array_from_raw(buf: bytes | memoryview, datatype: str, shape: list[int], where: str) -> Array:
    """The array of raw tensor bytes (binary extension or gRPC raw contents); zero-copy."""
    if datatype == "BYTES":
        arr = deserialize_bytes_tensor(buf)
        _check_count(arr, shape, datatype, where)
        return arr.reshape(shape)
    wire = _wire_dtype(datatype)
    expected = element_count(shape) * wire.itemsize
    if len(buf) != expected:
        raise InvalidInput(
            f"{where}: {len(buf)} bytes of raw data, but shape {shape} of {datatype} "
            f"needs {expected} bytes"
        )
    arr = np.frombuffer(buf, dtype=wire)
    if datatype == "BF16":
        arr = bf16_to_float32(arr)
    elif datatype == "BOOL":
        # Any non-zero byte is true; normalize so numpy never sees other bool bit patterns.
        arr = np.frombuffer(buf, dtype=np.uint8) != 0
    return arr.reshape(shape)


def array_to_raw(arr: npt.ArrayLike, datatype: str) -> bytes:
    """The raw little-endian bytes of a tensor (length-prefixed elements for BYTES)."""
    if datatype == "BYTES":
        return serialize_bytes_tensor(arr)
    if datatype == "BF16":
        return float32_to_bf16(arr).tobytes()
    return np.ascontiguousarray(arr, dtype=_wire_dtype(datatype)).tobytes()


def _bytes_to_str(item: object) -> object:
    if isinstance(item, (bytes, np.bytes_)):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                "BYTES element is not valid UTF-8 and cannot travel as JSON; use binary data"
            ) from None
    return item if isinstance(item, str) else str(item)


def array_to_json(arr: npt.ArrayLike, datatype: str) -> Any:
    """A flat, orjson-serializable value for the `data` field (numpy arrays pass through)."""
    if datatype == "BYTES":
        flat = np.asarray(arr, dtype=object).reshape(-1)
        return [_bytes_to_str(item) for item in flat]
    target = to_numpy_dtype(datatype)
    if datatype == "BF16":
        return bf16_to_float32(float32_to_bf16(arr)).reshape(-1)
    if isinstance(arr, np.ndarray) and arr.dtype == target and arr.flags.c_contiguous:
        return arr.reshape(-1)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=target).reshape(-1)


def parse_parameters(value: object, where: str) -> dict[str, Any]:
    """A parameters object (None -> {}), or InvalidInput."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: parameters must be an object, got {type(value).__name__}")
    return value


def copy_parameters(params: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in drop}
