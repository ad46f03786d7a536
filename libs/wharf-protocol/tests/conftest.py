"""Sample tensors for every Open Inference Protocol datatype.

A test that takes a `datatype` argument runs once per datatype; the `sample` fixture is a
(2, 3) array of that datatype with its extreme values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from wharf_protocol.datatypes import Datatype

ALL_DATATYPES = list(Datatype)


def sample_array(datatype: str, json_safe: bool = True) -> np.ndarray[Any, Any]:
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        values: list[object] = [b"", b"abc", "élan".encode(), b"x" * 300, b"0", b"\x00z"]
        if not json_safe:
            values[5] = b"\xff\xfe\x00"
        arr = np.empty(6, dtype=object)
        arr[:] = values
        return arr.reshape(2, 3)
    if datatype == "BF16":
        # Exactly representable in bfloat16, so every path round-trips them bit for bit.
        return np.array([[1.0, -2.5, 0.0], [3.140625, 65536.0, -0.0078125]], dtype=np.float32)
    dtype = np.dtype(datatype.lower().replace("fp", "float"))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max, 0], [1, info.max - 1, 7]], dtype=dtype)
    finfo = np.finfo(dtype)
    return np.array([[finfo.max, finfo.min, 0.0], [finfo.tiny, -1.5, 0.1]], dtype=dtype)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "datatype" in metafunc.fixturenames:
        metafunc.parametrize("datatype", [str(d) for d in ALL_DATATYPES])


@pytest.fixture
def sample(datatype: str) -> np.ndarray[Any, Any]:
    return sample_array(datatype)


def assert_same(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    """Equal values and shape; BYTES compared as bytes whether given as str or bytes."""
    assert actual.shape == expected.shape
    if expected.dtype == object:
        norm = [x.encode() if isinstance(x, str) else bytes(x) for x in actual.reshape(-1)]
        assert norm == [bytes(x) for x in expected.reshape(-1)]
    else:
        np.testing.assert_array_equal(actual, expected, strict=False)
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)


SampleFactory = Any


@pytest.fixture
def make_sample() -> SampleFactory:
    """`make_sample(datatype, json_safe=True)`: see `sample_array`."""
    return sample_array


@pytest.fixture
def same() -> Any:
    """`same(actual, expected)`: see `assert_same`."""
    return assert_same
