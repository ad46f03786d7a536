"""gRPC round trips for every datatype, with raw and typed contents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from wharf_protocol.errors import InvalidInput
from wharf_protocol.grpc import SERVICE_NAME, pb, pb_grpc
from wharf_protocol.grpc_codec import (
    parameters_from_grpc,
    request_from_grpc,
    request_to_grpc,
    response_from_grpc,
    response_to_grpc,
)
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

TYPED = ["raw", "typed"]


def _typed_ok(datatype: str, raw: str) -> bool:
    return raw == "raw" or datatype not in ("FP16", "BF16")


def test_fp16_and_bf16_have_no_typed_contents() -> None:
    for datatype in ("FP16", "BF16"):
        infer_input = InferInput("x", [1], datatype, [1.0])
        with pytest.raises(InvalidInput, match="raw contents"):
            request_to_grpc(InferRequest("m", [infer_input]), raw=False)


@pytest.mark.parametrize("raw", TYPED)
def test_request_round_trip(datatype: str, raw: str, make_sample: Any, same: Any) -> None:
    if not _typed_ok(datatype, raw):
        return  # no typed field: see test_fp16_and_bf16_have_no_typed_contents
    arr = make_sample(datatype, json_safe=False)
    infer_input = InferInput("x", [], datatype)
    infer_input.set_data_from_numpy(arr)
    params = {"flag": True, "n": -3, "big": 2**63, "f": 0.25, "s": "v"}
    req = InferRequest(
        "m",
        [infer_input],
        request_id="id-9",
        parameters=params,
        request_outputs=[RequestedOutput("y", {"classification": 2})],
        model_version="1",
    )
    message = request_to_grpc(req, raw=raw == "raw")
    assert bool(message.raw_input_contents) == (raw == "raw")
    decoded = request_from_grpc(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert decoded.from_grpc
    assert (decoded.model_name, decoded.id, decoded.model_version) == ("m", "id-9", "1")
    assert decoded.parameters == params
    assert decoded.request_outputs == [RequestedOutput("y", {"classification": 2})]
    same(decoded.inputs[0].as_numpy(), arr)
    assert decoded == req


@pytest.mark.parametrize("raw", TYPED)
def test_response_round_trip(datatype: str, raw: str, make_sample: Any, same: Any) -> None:
    if not _typed_ok(datatype, raw):
        return  # no typed field: see test_fp16_and_bf16_have_no_typed_contents
    arr = make_sample(datatype, json_safe=False)
    output = InferOutput("y", [], datatype)
    output.set_data_from_numpy(arr)
    resp = InferResponse("id", "m", [output], model_version="3")
    message = response_to_grpc(resp, raw=raw == "raw")
    decoded = response_from_grpc(pb.ModelInferResponse.FromString(message.SerializeToString()))
    assert (decoded.id, decoded.model_name, decoded.model_version) == ("id", "m", "3")
    same(decoded.outputs[0].as_numpy(), arr)


def _tensor_request(datatype: str, shape: list[int], raw: list[bytes]) -> Any:
    message = pb.ModelInferRequest(model_name="m", raw_input_contents=raw)
    message.inputs.add(name="x", datatype=datatype, shape=shape)
    return message


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (_tensor_request("FP32", [2], [b"\x00" * 7]), "needs 8 bytes"),
        (_tensor_request("FP32", [2], [b"\x00" * 8, b""]), "2 raw contents given for 1"),
        (_tensor_request("FP8", [1], [b"\x00"]), "unsupported datatype"),
        (_tensor_request("BYTES", [2], [b"\x01\x00\x00\x00a"]), "has 2 elements"),
        (_tensor_request("FP16", [1], []), "raw contents"),
        (_tensor_request("INT32", [3], []), "has 3 elements but int_contents has 0"),
        (_tensor_request("INT32", [-1], []), "non-negative"),
        (_tensor_request("BOOL", [0, 2**40, 2**40], [b""]), "too large"),
    ],
    ids=["short-raw", "extra-raw", "datatype", "bytes-count", "fp16-typed", "count", "neg", "huge"],
)
def test_malformed_messages_are_invalid_input(message: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        request_from_grpc(message)


def test_typed_contents_out_of_range_for_int8() -> None:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype="INT8", shape=[1])
    tensor.contents.int_contents.append(300)
    with pytest.raises(InvalidInput, match="out of range for INT8"):
        request_from_grpc(message)


def test_raw_and_typed_together_are_invalid_input() -> None:
    message = _tensor_request("INT32", [1], [b"\x01\x00\x00\x00"])
    message.inputs[0].contents.int_contents.append(1)
    with pytest.raises(InvalidInput, match="typed contents and raw contents"):
        request_from_grpc(message)


def test_parameters_that_grpc_cannot_carry_are_invalid_input() -> None:
    req = InferRequest("m", [], parameters={"bad": [1]})
    with pytest.raises(InvalidInput, match="parameter 'bad'"):
        request_to_grpc(req)
    assert parameters_from_grpc(pb.ModelInferRequest().parameters) == {}


def test_service_has_every_rpc_of_the_protocol() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == SERVICE_NAME
    assert {m.name for m in service.methods} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
    assert hasattr(pb_grpc, "add_GRPCInferenceServiceServicer_to_server")
    assert hasattr(pb_grpc, "GRPCInferenceServiceStub")


def test_grpc_response_holds_only_the_requested_outputs() -> None:
    outputs = [
        InferOutput("a", [1], "INT32", np.array([1], dtype=np.int32)),
        InferOutput("b", [1], "INT32", np.array([2], dtype=np.int32)),
    ]
    resp = InferResponse("1", "m", outputs, requested_outputs=[RequestedOutput("b")])
    message = response_to_grpc(resp)
    assert [o.name for o in message.outputs] == ["b"]
    assert len(message.raw_output_contents) == 1
