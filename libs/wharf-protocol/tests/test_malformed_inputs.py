"""Malformed request bodies raise InvalidInput, with a message naming the problem, and nothing
else: hand-picked cases plus hypothesis-generated bodies (random JSON shaped like requests,
random bytes, random header lengths)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wharf_protocol.datatypes import Datatype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.grpc import pb
from wharf_protocol.grpc_codec import request_from_grpc
from wharf_protocol.rest import decode_infer_request, decode_infer_response
from wharf_protocol.v1 import decode_v1_request


def _dumps(value: Any) -> bytes:
    # stdlib json: orjson refuses integers beyond 64 bits, which these tests want to send
    return json.dumps(value).encode()


def _one(input_: dict[str, Any]) -> bytes:
    return _dumps({"inputs": [input_]})


def _fp32(**changes: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0], **changes}


CASES: list[tuple[str, bytes, int | None, str]] = [
    ("bad json", b"{", None, "Unrecognized request format"),
    ("not an object", b"[1]", None, "must be an object"),
    ("no inputs", b"{}", None, "'inputs' is missing"),
    ("inputs not a list", b'{"inputs": {}}', None, "'inputs' must be a list"),
    ("input not an object", b'{"inputs": [1]}', None, r"inputs\[0\] must be an object"),
    ("no name", _one({"shape": [1], "datatype": "FP32", "data": [1]}), None, "'name'"),
    ("unknown datatype", _one(_fp32(datatype="FP8")), None, "unsupported datatype 'FP8'"),
    ("no shape", _one(_fp32(shape=None)), None, "shape must be a list"),
    ("negative dim", _one(_fp32(shape=[-1])), None, "non-negative"),
    ("float dim", _one(_fp32(shape=[2.0])), None, "non-negative integers"),
    ("bool dim", _one(_fp32(shape=[True])), None, "non-negative integers"),
    ("count mismatch", _one(_fp32(shape=[3])), None, "has 3 elements but 2 FP32"),
    ("no data", _one({"name": "x", "shape": [1], "datatype": "FP32"}), None, "'data' is missing"),
    ("data not list", _one(_fp32(data=1.0)), None, "data must be a list"),
    ("ragged", _one(_fp32(shape=[3], data=[[1], [2, 3]])), None, "regular"),
    ("string in FP32", _one(_fp32(data=["a", "b"])), None, "FP32 data must hold numbers"),
    ("null in FP32", _one(_fp32(data=[None, 1])), None, "must hold numbers"),
    ("float in INT32", _one(_fp32(datatype="INT32", data=[1.5, 2])), None, "must hold integers"),
    ("out of range", _one(_fp32(datatype="UINT8", data=[256, 0])), None, "out of range"),
    ("negative uint", _one(_fp32(datatype="UINT64", data=[-1, 0])), None, "out of range"),
    ("huge int", _one(_fp32(datatype="INT64", data=[2**64, 0])), None, "INT64"),
    ("number in BOOL", _one(_fp32(datatype="BOOL", data=[1, 0])), None, "true/false"),
    ("number in BYTES", _one(_fp32(datatype="BYTES", data=[1, 2])), None, "must hold strings"),
    ("bad parameters", _one(_fp32(parameters=[1])), None, "parameters must be an object"),
    ("bad id", _dumps({"id": 5, "inputs": []}), None, "'id' must be a string"),
    ("bad outputs", _dumps({"inputs": [], "outputs": [{}]}), None, r"outputs\[0\]"),
    (
        "binary without header",
        _one(_fp32(data=None) | {"parameters": {"binary_data_size": 8}}),
        None,
        "header is missing",
    ),
    ("header past body", b"{}", 10, "body has 2 bytes"),
    ("header negative", b"{}", -1, "is -1"),
    ("trailing binary without header", _one(_fp32()) + b"\x00\x00", None, "header"),
]


def _binary_case(size: Any, extra: bytes, shape: list[int] | None = None) -> tuple[bytes, int]:
    header = _dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape or [2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + extra, len(header)


for _name, (_size, _extra, _match) in {
    "size past body": (16, b"\x00" * 8, "runs past the end"),
    "size vs shape": (4, b"\x00" * 4, "needs 8 bytes"),
    "size negative": (-8, b"\x00" * 8, "non-negative integer"),
    "size float": (8.0, b"\x00" * 8, "non-negative integer"),
}.items():
    CASES.append((_name, *_binary_case(_size, _extra), _match))

CASES.append(
    ("size short of body", *_binary_case(4, b"\x00" * 8, [1]), "binary data has 8 bytes but")
)
_both = _dumps({"inputs": [_fp32(parameters={"binary_data_size": 8})]})
CASES.append(("data and binary", _both + b"\x00" * 8, len(_both), "both 'data' and"))
_bytes_header = _dumps(
    {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                 "parameters": {"binary_data_size": 6}}]}
)  # fmt: skip
CASES.append(("bytes element past end", _bytes_header + b"\x09\x00\x00\x00ab", 
              len(_bytes_header), "truncated"))  # fmt: skip


@pytest.mark.parametrize(("body", "header_length", "match"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_malformed_requests_are_invalid_input(
    body: bytes, header_length: int | None, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode_infer_request(body, "m", header_length)


def test_v1_bodies() -> None:
    assert decode_v1_request(b'{"instances": [[1, 2]]}') == {"instances": [[1, 2]]}
    assert decode_v1_request(b'{"inputs": []}') == {"inputs": []}
    for body, match in [
        (b"nope", "Unrecognized request format"),
        (b"[]", "must be a JSON object"),
        (b"{}", "instances"),
        (b'{"instances": 1}', "to be a list"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            decode_v1_request(body)


# --- generated bodies -------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_datatypes = st.one_of(st.sampled_from([str(d) for d in Datatype]), _json)
_dims = st.one_of(st.integers(min_value=-2, max_value=5), st.integers(0, 2**64))
_shapes = st.one_of(st.lists(_dims, max_size=3), _json)
_params = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 40)}),
    _json,
)
_tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=3), _scalars),
        "datatype": _datatypes,
        "shape": _shapes,
        "data": _json,
        "parameters": _params,
    },
)
_request = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(st.lists(_tensor, max_size=3), _json),
        "outputs": st.one_of(st.lists(_tensor, max_size=2), _json),
        "id": _scalars,
        "parameters": _params,
        "model_name": _scalars,
    },
)


def _only_invalid_input(call: Any) -> None:
    try:
        call()
    except InvalidInput as e:
        assert e.message
        assert e.http_status == 400


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(request=_request, tail=st.binary(max_size=40), cut=st.integers(-3, 400))
def test_generated_request_bodies_only_raise_invalid_input(
    request: dict[str, Any], tail: bytes, cut: int
) -> None:
    header = _dumps(request)
    _only_invalid_input(lambda: decode_infer_request(header, "m", None))
    _only_invalid_input(lambda: decode_infer_request(header + tail, "m", len(header)))
    _only_invalid_input(lambda: decode_infer_request(header + tail, "m", cut))
    _only_invalid_input(lambda: decode_infer_response(header + tail, len(header)))


@SETTINGS
@given(body=st.binary(max_size=200), cut=st.one_of(st.none(), st.integers(-1, 220)))
def test_random_bytes_only_raise_invalid_input(body: bytes, cut: int | None) -> None:
    _only_invalid_input(lambda: decode_infer_request(body, "m", cut))
    _only_invalid_input(lambda: decode_v1_request(body))


@SETTINGS
@given(
    datatype=st.one_of(st.sampled_from([str(d) for d in Datatype]), st.text(max_size=4)),
    shape=st.lists(st.integers(0, 2**62), max_size=3),
    raw=st.lists(st.binary(max_size=24), max_size=2),
    ints=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
    data=st.binary(max_size=40),
)
def test_generated_grpc_requests_only_raise_invalid_input(
    datatype: str, shape: list[int], raw: list[bytes], ints: list[int], data: bytes
) -> None:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=raw)
    tensor = message.inputs.add(name="x", datatype=datatype, shape=shape)
    if not raw:
        tensor.contents.int_contents.extend(ints)
    _only_invalid_input(lambda: request_from_grpc(message))
    # random bytes that happen to parse as a message
    try:
        parsed = pb.ModelInferRequest.FromString(data)
    except Exception:  # protobuf's DecodeError: not the code under test
        return
    _only_invalid_input(lambda: request_from_grpc(parsed))
