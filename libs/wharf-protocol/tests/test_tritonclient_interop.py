"""Interop with NVIDIA's real `tritonclient`: what its encoders write we decode, what we encode
its decoders read (HTTP JSON, HTTP binary, gRPC raw), for every datatype; plus a round trip
over a real gRPC server on loopback driven by `tritonclient.grpc.InferenceServerClient`."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor as triton_deserialize_bytes
from tritonclient.utils import serialize_byte_tensor as triton_serialize_bytes

from wharf_protocol.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor
from wharf_protocol.grpc import pb, pb_grpc
from wharf_protocol.grpc_codec import request_from_grpc, response_to_grpc
from wharf_protocol.infer_types import InferOutput, InferRequest, InferResponse
from wharf_protocol.rest import decode_infer_request, encode_infer_response

BINARY = [False, True]


def test_bytes_tensor_format_is_tritonclients() -> None:
    arr = np.array([b"a", b"", "\u00e9".encode(), b"\x00\xff", b"x" * 70000], dtype=object)
    theirs = triton_serialize_bytes(arr).item()
    assert serialize_bytes_tensor(arr) == theirs
    assert list(deserialize_bytes_tensor(theirs)) == list(arr)
    assert list(triton_deserialize_bytes(serialize_bytes_tensor(arr))) == list(arr)


def _client_array(datatype: str, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """tritonclient carries BF16 as ml_dtypes.bfloat16 arrays."""
    return arr.astype(ml_dtypes.bfloat16) if datatype == "BF16" else arr


def _comparable(datatype: str, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return arr.astype(np.float32) if datatype == "BF16" else arr


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
def test_we_decode_tritonclient_http_requests(
    datatype: str, binary: bool, make_sample: Any, same: Any
) -> None:
    arr = make_sample(datatype, json_safe=not binary)
    infer_input = triton_http.InferInput("x", list(arr.shape), datatype)
    if datatype == "BF16" and not binary:
        # tritonclient sends BF16 only as binary (our own JSON round trip covers BF16 JSON)
        with pytest.raises(Exception, match="BF16 inputs must be sent as binary"):
            infer_input.set_data_from_numpy(_client_array(datatype, arr), binary_data=False)
        return
    infer_input.set_data_from_numpy(_client_array(datatype, arr), binary_data=binary)
    outputs = [triton_http.InferRequestedOutput("y", binary_data=binary)]
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        [infer_input], outputs=outputs, request_id="abc"
    )
    req = decode_infer_request(body, "m", json_size)
    assert req.id == "abc"
    assert req.request_outputs[0].name == "y"
    assert req.request_outputs[0].binary_data == binary
    same(req.inputs[0].as_numpy(), arr)


@pytest.mark.parametrize("binary", BINARY, ids=["json", "binary"])
def test_tritonclient_http_reads_our_responses(
    datatype: str, binary: bool, make_sample: Any, same: Any
) -> None:
    arr = make_sample(datatype, json_safe=not binary)
    output = InferOutput("y", [], datatype)
    output.set_data_from_numpy(arr)
    body, header_length = encode_infer_response(
        InferResponse("abc", "m", [output], use_binary_outputs=binary)
    )
    result = triton_http.InferResult.from_response_body(body, header_length=header_length)
    assert result.get_response()["id"] == "abc"
    same(_comparable(datatype, result.as_numpy("y")), arr)


def test_we_decode_tritonclient_grpc_requests(datatype: str, make_sample: Any, same: Any) -> None:
    arr = make_sample(datatype, json_safe=False)
    infer_input = triton_grpc.InferInput("x", list(arr.shape), datatype)
    infer_input.set_data_from_numpy(_client_array(datatype, arr))
    message = _get_inference_request(
        model_name="m",
        inputs=[infer_input],
        model_version="",
        request_id="abc",
        outputs=[triton_grpc.InferRequestedOutput("y")],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters={"custom": "v"},
    )
    req = request_from_grpc(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert (req.model_name, req.id, req.parameters["custom"]) == ("m", "abc", "v")
    same(req.inputs[0].as_numpy(), arr)


def test_tritonclient_grpc_reads_our_responses(datatype: str, make_sample: Any, same: Any) -> None:
    arr = make_sample(datatype, json_safe=False)
    output = InferOutput("y", [], datatype)
    output.set_data_from_numpy(arr)
    message = response_to_grpc(InferResponse("abc", "m", [output]))
    triton_message = triton_pb.ModelInferResponse.FromString(message.SerializeToString())
    result = triton_grpc.InferResult(triton_message)
    assert result.get_response().id == "abc"
    same(_comparable(datatype, result.as_numpy("y")), arr)


class _EchoServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Returns every input as an output named `<input>_out`."""

    def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        req: InferRequest = request_from_grpc(request)
        outputs = []
        for infer_input in req.inputs:
            output = InferOutput(f"{infer_input.name}_out", [], infer_input.datatype)
            output.set_data_from_numpy(infer_input.as_numpy())
            outputs.append(output)
        return response_to_grpc(InferResponse(req.id, req.model_name, outputs))


@pytest.fixture(scope="module")
def grpc_address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_tritonclient_grpc_against_a_server_built_on_our_stubs(
    grpc_address: str, make_sample: Any, same: Any
) -> None:
    client = triton_grpc.InferenceServerClient(grpc_address)
    try:
        assert client.is_server_live()
        inputs = []
        samples = {}
        for datatype in ("BOOL", "INT8", "UINT64", "FP16", "FP32", "BF16", "BYTES"):
            arr = make_sample(datatype, json_safe=False)
            samples[datatype] = arr
            infer_input = triton_grpc.InferInput(datatype, list(arr.shape), datatype)
            infer_input.set_data_from_numpy(_client_array(datatype, arr))
            inputs.append(infer_input)
        result = client.infer("echo", inputs, request_id="r1")
        assert result.get_response().model_name == "echo"
        assert result.get_response().id == "r1"
        for datatype, arr in samples.items():
            same(_comparable(datatype, result.as_numpy(f"{datatype}_out")), arr)
    finally:
        client.close()


def _fields(descriptor: Any) -> dict[str, tuple[int, int, bool]]:
    return {
        f.name: (
            f.number,
            f.type,
            f.message_type is not None and f.message_type.GetOptions().map_entry,
        )
        for f in descriptor.fields
    }


def _messages(descriptor: Any) -> Iterator[Any]:
    for message in descriptor.message_types_by_name.values():
        yield message
        yield from message.nested_types


def test_every_message_field_matches_tritonclients_proto() -> None:
    """Our proto is wire-compatible with Triton's `grpc_service.proto` for every message the
    two share outside the repository rpcs (Triton's messages may have more fields; ours must
    not differ or be extra)."""
    theirs = {m.full_name: m for m in _messages(triton_pb.DESCRIPTOR)}
    shared = 0
    for message in _messages(pb.DESCRIPTOR):
        other = theirs.get(message.full_name)
        if other is None or message.GetOptions().map_entry:
            continue
        if message.name.startswith("Repository"):
            # KServe's repository messages differ from Triton's (repository_name is field 1
            # there); we follow KServe, whose clients call these rpcs.
            continue
        shared += 1
        ours, their_fields = _fields(message), _fields(other)
        for name, spec in ours.items():
            assert their_fields.get(name) == spec, f"{message.full_name}.{name}"
    assert shared >= 15
    service = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        if method.name.startswith("Repository"):
            continue  # Triton's repository rpcs take its own richer messages
        theirs_method = service.methods_by_name[method.name]
        assert theirs_method.input_type.full_name == method.input_type.full_name
        assert theirs_method.output_type.full_name == method.output_type.full_name
