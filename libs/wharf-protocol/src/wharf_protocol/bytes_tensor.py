"""The BYTES tensor wire format: each element is a 4-byte little-endian length, then the bytes."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from wharf_protocol.errors import InvalidInput

_LENGTH = struct.Struct("<I")


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview, np.bytes_)):
        return bytes(item)
    if isinstance(item, np.str_):
        return str(item).encode("utf-8")
    raise InvalidInput(f"BYTES element must be bytes or str, got {type(item).__name__}")


def serialize_bytes_tensor(arr: npt.ArrayLike) -> bytes:
    """Flatten `arr` (row-major) and write each element length-prefixed."""
    flat = np.asarray(arr, dtype=object).reshape(-1)
    parts: list[bytes] = []
    for item in flat:
        data = _as_bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(buf: bytes | bytearray | memoryview) -> npt.NDArray[Any]:
    """A flat object array of `bytes` elements; InvalidInput when a length runs past the end."""
    view = memoryview(buf).cast("B")
    end = len(view)
    items: list[bytes] = []
    offset = 0
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(
                f"BYTES tensor truncated: {end - offset} bytes left where a 4-byte length "
                f"prefix was expected at offset {offset}"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(
                f"BYTES tensor truncated: element of {length} bytes at offset {offset} "
                f"runs past the end ({end} bytes)"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
