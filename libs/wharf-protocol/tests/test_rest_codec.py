"""REST JSON and binary-extension round trips, for every datatype, through our own codec."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)
from wharf_protocol.rest import (
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    parse_header_length,
)


def _request(datatype: str, arr: np.ndarray[Any, Any]) -> InferRequest:
    infer_input = InferInput("x", [], datatype)
    infer_input.set_data_from_numpy(arr, binary_data=False)
    return InferRequest(
        "m",
        [infer_input],
        request_id="r-1",
        parameters={"priority": 3},
        request_outputs=[RequestedOutput("y", {"binary_data": True})],
    )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_round_trip(datatype: str, binary: bool, make_sample: Any, same: Any) -> None:
    arr = make_sample(datatype, json_safe=not binary)
    body, header_length = encode_infer_request(_request(datatype, arr), binary=binary)
    assert (header_length is not None) == binary
    decoded = decode_infer_request(body, "m", header_length)
    assert decoded.model_name == "m"
    assert decoded.id == "r-1"
    assert decoded.parameters == {"priority": 3}
    assert decoded.request_outputs == [RequestedOutput("y", {"binary_data": True})]
    assert decoded.inputs[0].shape == [2, 3]
    assert decoded.inputs[0].datatype == datatype
    same(decoded.inputs[0].as_numpy(), arr)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_response_round_trip(datatype: str, binary: bool, make_sample: Any, same: Any) -> None:
    arr = make_sample(datatype, json_safe=not binary)
    output = InferOutput("y", [], datatype)
    output.set_data_from_numpy(arr)
    resp = InferResponse("r-1", "m", [output], model_version="2", use_binary_outputs=binary)
    body, header_length = encode_infer_response(resp)
    assert (header_length is not None) == binary
    decoded = decode_infer_response(body, header_length)
    assert (decoded.id, decoded.model_name, decoded.model_version) == ("r-1", "m", "2")
    same(decoded.outputs[0].as_numpy(), arr)


def test_json_request_with_nested_data_and_the_spec_example() -> None:
    body = orjson.dumps(
        {
            "id": "42",
            "inputs": [
                {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
                {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
                {"name": "n", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]},
            ],
            "outputs": [{"name": "output0"}],
        }
    )
    req = decode_infer_request(body, "mymodel", None)
    assert req.get_input_by_name("input0") is not None
    np.testing.assert_array_equal(req.inputs[0].as_numpy(), np.array([[1, 2], [3, 4]], np.uint32))
    assert req.inputs[1].as_numpy().dtype == np.bool_
    assert req.inputs[2].as_numpy().tolist() == [[1.0, 2.0], [3.0, 4.5]]
    assert req.inputs[0].data == [1, 2, 3, 4]
    assert req.request_outputs[0].name == "output0"
    assert not req.use_binary_outputs
    assert req.get_input_by_name("nope") is None


def test_mixed_json_and_binary_inputs_consume_binary_in_order() -> None:
    a = np.arange(3, dtype=np.int16)
    b = np.array([0.5, 1.5], dtype=np.float64)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "a", "shape": [3], "datatype": "INT16",
                 "parameters": {"binary_data_size": 6}},
                {"name": "j", "shape": [1], "datatype": "INT8", "data": [5]},
                {"name": "b", "shape": [2], "datatype": "FP64",
                 "parameters": {"binary_data_size": 16}},
            ],
            "parameters": {"binary_data_output": True},
        }
    )  # fmt: skip
    body = header + a.tobytes() + b.tobytes()
    req = decode_infer_request(body, "m", len(header))
    np.testing.assert_array_equal(req.inputs[0].as_numpy(), a)
    np.testing.assert_array_equal(req.inputs[1].as_numpy(), [5])
    np.testing.assert_array_equal(req.inputs[2].as_numpy(), b)
    assert req.use_binary_outputs


def test_binary_output_selection_follows_the_client() -> None:
    def output(name: str) -> InferOutput:
        out = InferOutput(name, [], "INT32")
        out.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
        return out

    requested = [RequestedOutput("a", {"binary_data": True}), RequestedOutput("b")]
    resp = InferResponse(None, "m", [output("a"), output("b")], requested_outputs=requested)
    body, header_length = encode_infer_response(resp)
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert "id" not in header
    a, b = header["outputs"]
    assert a["parameters"] == {"binary_data_size": 8} and "data" not in a
    assert b["data"] == [1, 2] and "parameters" not in b
    assert body[header_length:] == np.array([1, 2], dtype="<i4").tobytes()

    # binary_data_output on the request, overridden per output
    requested = [RequestedOutput("a"), RequestedOutput("b", {"binary_data": False})]
    resp = InferResponse(
        "i", "m", [output("a"), output("b")], use_binary_outputs=True, requested_outputs=requested
    )
    body, header_length = encode_infer_response(resp)
    assert header_length is not None
    a, b = orjson.loads(body[:header_length])["outputs"]
    assert "data" not in a and b["data"] == [1, 2]

    # nothing asked: JSON
    body, header_length = encode_infer_response(InferResponse("i", "m", [output("a")]))
    assert header_length is None


def test_outputs_given_as_lists_are_sent_as_given() -> None:
    resp = InferResponse("1", "m", [InferOutput("p", [2], "INT64", [1, 0])])
    body, header_length = encode_infer_response(resp)
    assert header_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == [1, 0]


def test_json_output_of_non_utf8_bytes_is_refused() -> None:
    out = InferOutput("b", [], "BYTES")
    out.set_data_from_numpy(np.array([b"\xff"], dtype=object))
    with pytest.raises(InvalidInput, match="UTF-8"):
        encode_infer_response(InferResponse("1", "m", [out]))


def test_header_length_parsing() -> None:
    assert parse_header_length(None) is None
    assert parse_header_length("12") == 12
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(InvalidInput, match="inference-header-content-length"):
            parse_header_length(bad)


def test_set_data_from_numpy_checks_the_dtype() -> None:
    infer_input = InferInput("x", [1], "INT32")
    with pytest.raises(InvalidInput, match="does not match"):
        infer_input.set_data_from_numpy(np.array([1.0]))
    bf16 = InferInput("h", [1], "BF16")
    bf16.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    assert bf16.shape == [1]


def test_tensors_built_by_hand_with_unknown_datatypes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unsupported datatype 'FP8'"):
        InferRequest("m", [InferInput("x", [1], "FP8")], raw_inputs=[b"\x00"])
    with pytest.raises(InvalidInput, match="unsupported datatype 'FP8'"):
        InferInput("x", [1], "FP8", [1.0]).as_numpy()
    out = InferOutput("y", [1], "FP8", np.array([1.0]))
    with pytest.raises(InvalidInput, match="FP8"):
        encode_infer_response(InferResponse("1", "m", [out], use_binary_outputs=True))


@pytest.mark.parametrize("float_type", ["FP16", "FP32", "FP64", "BF16"])
def test_nan_and_infinities_travel_as_binary(float_type: str) -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32 if float_type == "BF16"
                      else float_type.lower().replace("fp", "float"))  # fmt: skip
    output = InferOutput("y", [], float_type)
    output.set_data_from_numpy(values)
    body, header_length = encode_infer_response(
        InferResponse("1", "m", [output], use_binary_outputs=True)
    )
    decoded = decode_infer_response(body, header_length).outputs[0].as_numpy()
    np.testing.assert_array_equal(decoded, values)
    # JSON has no NaN or infinity: they are written as null, which a decoder refuses
    body, header_length = encode_infer_response(InferResponse("1", "m", [output]))
    assert orjson.loads(body)["outputs"][0]["data"][:3] == [None, None, None]
    with pytest.raises(InvalidInput, match="numbers"):
        decode_infer_response(body, header_length)


def _outputs() -> list[InferOutput]:
    return [
        InferOutput("a", [1], "INT32", np.array([1], dtype=np.int32)),
        InferOutput("b", [1], "INT32", np.array([2], dtype=np.int32)),
    ]


def test_only_requested_outputs_are_sent_in_the_order_asked() -> None:
    requested = [RequestedOutput("b"), RequestedOutput("a", {"binary_data": True})]
    body, header_length = encode_infer_response(
        InferResponse("1", "m", _outputs(), requested_outputs=requested)
    )
    assert header_length is not None
    names = [o["name"] for o in orjson.loads(body[:header_length])["outputs"]]
    assert names == ["b", "a"]
    only_b = InferResponse("1", "m", _outputs(), requested_outputs=[RequestedOutput("b")])
    assert [o["name"] for o in orjson.loads(encode_infer_response(only_b)[0])["outputs"]] == ["b"]
    everything = encode_infer_response(InferResponse("1", "m", _outputs()))[0]
    assert [o["name"] for o in orjson.loads(everything)["outputs"]] == ["a", "b"]


def test_a_requested_output_the_model_lacks_is_invalid_input() -> None:
    resp = InferResponse("1", "m", _outputs(), requested_outputs=[RequestedOutput("zzz")])
    with pytest.raises(InvalidInput, match="requested output 'zzz' is not produced by model 'm'"):
        encode_infer_response(resp)


def test_the_model_cannot_force_binary_on_a_json_client() -> None:
    output = InferOutput("a", [], "INT32")
    output.set_data_from_numpy(np.array([1], dtype=np.int32), binary_data=True)
    body, header_length = encode_infer_response(InferResponse("1", "m", [output]))
    assert header_length is None
    assert orjson.loads(body)["outputs"][0] == {
        "name": "a", "datatype": "INT32", "shape": [1], "data": [1]
    }  # fmt: skip


def test_a_tensor_subclass_is_encoded_through_its_own_properties() -> None:
    class Tagged(InferOutput):
        @property
        def parameters(self) -> dict[str, Any]:
            return {"unit": "cm"}

        @property
        def datatype(self) -> str:
            return "INT64"

    output = Tagged("y", [], "INT32")
    output.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    body, _ = encode_infer_response(InferResponse("r-1", "m", [output]))
    (encoded,) = orjson.loads(body)["outputs"]
    assert encoded["parameters"] == {"unit": "cm"} and encoded["datatype"] == "INT64"
    assert encoded["shape"] == [2] and encoded["data"] == [1, 2]
