from __future__ import annotations

import numpy as np
import pytest

from wharf_protocol.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor
from wharf_protocol.datatypes import (
    Datatype,
    bf16_to_float32,
    element_size,
    float32_to_bf16,
    from_numpy_dtype,
    to_numpy_dtype,
)
from wharf_protocol.errors import InvalidInput


def test_numpy_dtype_round_trips_except_bf16(datatype: str) -> None:
    dtype = to_numpy_dtype(datatype)
    expected = Datatype.FP32 if datatype == "BF16" else datatype
    assert from_numpy_dtype(dtype) == expected


def test_string_arrays_are_bytes() -> None:
    assert from_numpy_dtype(np.array(["a"]).dtype) == Datatype.BYTES
    assert from_numpy_dtype(np.array([b"a"]).dtype) == Datatype.BYTES


def test_unknown_datatypes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="FP8"):
        to_numpy_dtype("FP8")
    with pytest.raises(InvalidInput, match="complex"):
        from_numpy_dtype(np.complex64)


def test_element_sizes() -> None:
    assert element_size("BF16") == 2
    assert element_size("FP16") == 2
    assert element_size("UINT64") == 8
    assert element_size("BOOL") == 1
    assert element_size("BYTES") is None


def test_bf16_rounds_to_nearest_even_and_keeps_nan() -> None:
    values = np.array([1.0, 1.00390625, 1.01171875, np.inf, -np.inf, np.nan], dtype=np.float32)
    bits = float32_to_bf16(values)
    # 1 + 2**-8 is a tie between 1.0 and 1.0078125 and goes to the even 1.0; 1 + 3*2**-8 goes up.
    assert list(bits[:5]) == [0x3F80, 0x3F80, 0x3F82, 0x7F80, 0xFF80]
    back = bf16_to_float32(bits)
    assert np.isnan(back[5])
    assert list(back[:3]) == [1.0, 1.0, 1.015625]


def test_bytes_tensor_format_matches_the_spec() -> None:
    arr = np.array([b"ab", "c", b""], dtype=object)
    buf = serialize_bytes_tensor(arr)
    assert buf == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c\x00\x00\x00\x00"
    assert list(deserialize_bytes_tensor(buf)) == [b"ab", b"c", b""]


@pytest.mark.parametrize(
    "buf", [b"\x01", b"\x05\x00\x00\x00abc", b"\x00\x00\x00\x00\x01\x00"], ids=repr
)
def test_truncated_bytes_tensors_are_invalid_input(buf: bytes) -> None:
    with pytest.raises(InvalidInput, match="truncated"):
        deserialize_bytes_tensor(buf)
