"""REST codec of the Open Inference Protocol, with the binary tensor extension.

The hot path of the model server: bodies are parsed with orjson and validated by hand (no
pydantic round trip); tensors become numpy arrays once (`np.asarray` for JSON data,
zero-copy `np.frombuffer` for binary data). Malformed bodies raise `InvalidInput` only.

Binary extension (Triton-compatible): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by the tensors' raw bytes, in the order of
the tensors that carry `parameters.binary_data_size`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from wharf_protocol.datatypes import parse_datatype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)
from wharf_protocol.tensor_codec import (
    array_from_json,
    array_from_raw,
    array_to_json,
    array_to_raw,
    parse_parameters,
    parse_shape,
)

INFERENCE_HEADER_CONTENT_LENGTH = "inference-header-content-length"
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_WIRE_ONLY = frozenset((BINARY_DATA, BINARY_DATA_SIZE))

T = TypeVar("T", InferInput, InferOutput)


def parse_header_length(value: str | None) -> int | None:
    """The `Inference-Header-Content-Length` header as an int (None when absent)."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InvalidInput(
            f"{INFERENCE_HEADER_CONTENT_LENGTH} must be an integer, got {value!r}"
        ) from None
    if length < 0:
        raise InvalidInput(f"{INFERENCE_HEADER_CONTENT_LENGTH} must not be negative")
    return length


def _split(body: bytes, header_length: int | None) -> tuple[Any, memoryview | None]:
    if header_length is None:
        header: bytes | memoryview = body
        binary = None
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"{INFERENCE_HEADER_CONTENT_LENGTH} is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        header = view[:header_length]
        binary = view[header_length:]
    try:
        obj = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        hint = (
            f" (binary data needs the {INFERENCE_HEADER_CONTENT_LENGTH} header)"
            if header_length is None
            else ""
        )
        raise InvalidInput(f"Unrecognized request format: {e}{hint}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"the JSON body must be an object, got {type(obj).__name__}")
    return obj, binary


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"'{key}' must be a string, got {type(value).__name__}")


def _decode_tensors(items: object, binary: memoryview | None, kind: str, cls: type[T]) -> list[T]:
    plural = f"{kind}s"
    if not isinstance(items, list):
        raise InvalidInput(f"'{plural}' must be a list of tensors")
    tensors: list[T] = []
    offset = 0
    available = 0 if binary is None else len(binary)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"{plural}[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"{plural}[{index}]: 'name' must be a string")
        where = f"{kind} '{name}'"
        datatype = parse_datatype(item.get("datatype"), where)
        shape = parse_shape(item.get("shape"), where)
        params = parse_parameters(item.get("parameters"), where)
        size = params.get(BINARY_DATA_SIZE)
        if size is not None:
            if type(size) is not int or size < 0:
                raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
            if item.get("data") is not None:
                raise InvalidInput(f"{where}: has both 'data' and binary_data_size")
            if binary is None:
                raise InvalidInput(
                    f"{where}: has binary_data_size but the "
                    f"{INFERENCE_HEADER_CONTENT_LENGTH} header is missing"
                )
            if offset + size > available:
                raise InvalidInput(
                    f"{where}: binary_data_size {size} runs past the end of the binary data "
                    f"({available - offset} bytes left)"
                )
            arr = array_from_raw(binary[offset : offset + size], datatype, shape, where)
            offset += size
            tensor = cls(name, shape, datatype, arr, params)
        else:
            if "data" not in item:
                raise InvalidInput(f"{where}: 'data' is missing")
            data = item["data"]
            tensor = cls(name, shape, datatype, data, params)
            tensor._array = array_from_json(data, datatype, shape, where)
        tensors.append(tensor)
    if offset != available:
        raise InvalidInput(
            f"the binary data has {available} bytes but the {plural}' binary_data_size "
            f"add up to {offset}"
        )
    return tensors


def _decode_requested_outputs(items: object) -> list[RequestedOutput]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput("'outputs' must be a list")
    outputs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be an object with a string 'name'")
        name = item["name"]
        outputs.append(
            RequestedOutput(name, parse_parameters(item.get("parameters"), f"output '{name}'"))
        )
    return outputs


def decode_infer_request(body: bytes, model_name: str, header_length: int | None) -> InferRequest:
    """Decode a V2 inference request body (JSON, or JSON header + binary tensors)."""
    obj, binary = _split(body, header_length)
    if "inputs" not in obj:
        raise InvalidInput("'inputs' is missing")
    inputs = _decode_tensors(obj["inputs"], binary, "input", InferInput)
    return InferRequest(
        model_name,
        inputs,
        request_id=_optional_str(obj, "id"),
        parameters=parse_parameters(obj.get("parameters"), "request"),
        request_outputs=_decode_requested_outputs(obj.get("outputs")),
    )


def decode_infer_response(body: bytes, header_length: int | None) -> InferResponse:
    """Decode a V2 inference response body (client side)."""
    obj, binary = _split(body, header_length)
    model_name = obj.get("model_name")
    if not isinstance(model_name, str):
        raise InvalidInput("'model_name' must be a string")
    if "outputs" not in obj:
        raise InvalidInput("'outputs' is missing")
    outputs = _decode_tensors(obj["outputs"], binary, "output", InferOutput)
    return InferResponse(
        _optional_str(obj, "id"),
        model_name,
        outputs,
        model_version=_optional_str(obj, "model_version"),
        parameters=parse_parameters(obj.get("parameters"), "response"),
    )


def _encode_tensor(
    tensor: InferInput | InferOutput, binary: bool, chunks: list[bytes]
) -> dict[str, Any]:
    # the fields themselves for the library's own tensors; a subclass's properties may differ
    exact = type(tensor) is InferOutput or type(tensor) is InferInput
    params = tensor._parameters if exact else tensor.parameters
    if params and not _WIRE_ONLY.isdisjoint(params):
        params = {k: v for k, v in params.items() if k not in _WIRE_ONLY}
    datatype = tensor._datatype if exact else tensor.datatype
    entry: dict[str, Any] = {
        "name": tensor.name,
        "datatype": datatype,
        "shape": tensor._shape if exact else tensor.shape,
    }
    if binary:
        raw = array_to_raw(tensor.as_numpy(), tensor.datatype)
        chunks.append(raw)
        entry["parameters"] = {**params, BINARY_DATA_SIZE: len(raw)}
    else:
        if params:
            entry["parameters"] = params
        if tensor._array is None and isinstance(tensor.data, list):
            entry["data"] = tensor.data
        else:
            entry["data"] = array_to_json(tensor.as_numpy(), datatype)
    return entry


def _dumps(obj: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(obj, option=_DUMPS_OPTIONS, default=_default)
    except TypeError as e:
        raise InvalidInput(f"cannot encode as JSON: {e}") from None


def _default(value: object) -> Any:
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _join(header: bytes, chunks: list[bytes]) -> tuple[bytes, int | None]:
    if not chunks:
        return header, None
    return b"".join((header, *chunks)), len(header)


def encode_infer_response(resp: InferResponse) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when it carries binary tensors.

    When the length is not None, send it as `Inference-Header-Content-Length`.
    """
    chunks: list[bytes] = []
    if resp.requested_outputs or type(resp) is not InferResponse:
        outputs = [
            _encode_tensor(output, resp.output_is_binary(output), chunks)
            for output in resp.selected_outputs()
        ]
    else:  # all of them, each binary or not as the request asked by default
        binary = resp.use_binary_outputs
        outputs = [_encode_tensor(output, binary, chunks) for output in resp.outputs]
    obj: dict[str, Any] = {"model_name": resp.model_name}
    if resp.model_version is not None:
        obj["model_version"] = resp.model_version
    if resp.id is not None:
        obj["id"] = resp.id
    if resp.parameters:
        obj["parameters"] = resp.parameters
    obj["outputs"] = outputs
    return _join(_dumps(obj), chunks)


def encode_infer_request(req: InferRequest, binary: bool) -> tuple[bytes, int | None]:
    """The request body (client side); `binary` sends every input as binary data (an input
    whose parameters say `binary_data: true` is sent binary either way)."""
    chunks: list[bytes] = []
    inputs = [
        _encode_tensor(i, binary or bool(i.parameters.get(BINARY_DATA)), chunks) for i in req.inputs
    ]
    obj: dict[str, Any] = {}
    if req.id is not None:
        obj["id"] = req.id
    if req.parameters:
        obj["parameters"] = req.parameters
    obj["inputs"] = inputs
    if req.request_outputs:
        obj["outputs"] = [
            {"name": o.name, "parameters": o.parameters} if o.parameters else {"name": o.name}
            for o in req.request_outputs
        ]
    return _join(_dumps(obj), chunks)
