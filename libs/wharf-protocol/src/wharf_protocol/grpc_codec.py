"""Conversions between the gRPC messages and the transport-free infer types.

Decoding accepts raw contents (`raw_input_contents` / `raw_output_contents`, zero-copy) and
typed contents (`InferTensorContents`); encoding writes raw contents by default, as Triton and
KServe do, or typed contents with `raw=False` (FP16 and BF16 have no typed field and always
travel raw). Malformed messages raise `InvalidInput` only.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

import numpy as np

from wharf_protocol.datatypes import parse_datatype, to_numpy_dtype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.grpc import pb
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)
from wharf_protocol.tensor_codec import (
    Array,
    array_from_raw,
    array_to_raw,
    element_count,
    parse_shape,
)

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_WIRE_ONLY = frozenset(("binary_data", "binary_data_size"))

# datatype -> (InferTensorContents field, numpy dtype of that field)
CONTENTS_FIELDS: dict[str, tuple[str, Any]] = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", object),
}

T = TypeVar("T", InferInput, InferOutput)


def parameters_from_grpc(params: Mapping[str, Any]) -> dict[str, Any]:
    """`map<string, InferParameter>` -> dict of bool/int/float/str."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = None if choice is None else getattr(value, choice)
    return out


def parameters_to_grpc(params: Mapping[str, Any], target: MutableMapping[str, Any]) -> None:
    """Fill a `map<string, InferParameter>` from a dict (wire-only REST keys are skipped)."""
    for key, value in params.items():
        if key in _WIRE_ONLY:
            continue
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                slot.int64_param = value
            elif 0 <= value <= _UINT64_MAX:
                slot.uint64_param = value
            else:
                raise InvalidInput(f"parameter '{key}': integer {value} does not fit 64 bits")
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            raise InvalidInput(
                f"parameter '{key}': gRPC parameters are bool, int, float or str, "
                f"got {type(value).__name__}"
            )


def _shape(dims: Sequence[int], where: str) -> list[int]:
    return parse_shape(list(dims), where)


def array_from_contents(contents: Any, datatype: str, shape: list[int], where: str) -> Array:
    """The array of typed `InferTensorContents`."""
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"{where}: {datatype} tensors must be sent as raw contents")
    name, field_dtype = field
    values = getattr(contents, name)
    expected = element_count(shape)
    if len(values) != expected:
        raise InvalidInput(
            f"{where}: shape {shape} has {expected} elements but {name} has {len(values)}"
        )
    if datatype == "BYTES":
        arr: Array = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    arr = np.array(values, dtype=field_dtype)
    target = to_numpy_dtype(datatype)
    if arr.dtype != target:
        info = np.iinfo(target)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise InvalidInput(f"{where}: value out of range for {datatype}")
        arr = arr.astype(target)
    return arr.reshape(shape)


def contents_from_array(arr: Array, datatype: str, contents: Any) -> None:
    """Fill typed `InferTensorContents` from an array."""
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(f"{datatype} tensors have no typed contents; use raw contents")
    name, field_dtype = field
    flat = np.asarray(arr).reshape(-1)
    if datatype == "BYTES":
        values: list[Any] = [
            item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in flat
        ]
    else:
        values = flat.astype(field_dtype).tolist()
    getattr(contents, name).extend(values)


def _decode_tensors(
    tensors: Sequence[Any], raw: Sequence[bytes], kind: str, cls: type[T]
) -> list[T]:
    if raw and len(raw) != len(tensors):
        raise InvalidInput(f"{len(raw)} raw contents given for {len(tensors)} {kind}s")
    out: list[T] = []
    for index, tensor in enumerate(tensors):
        where = f"{kind} '{tensor.name}'"
        datatype = parse_datatype(tensor.datatype, where)
        shape = _shape(tensor.shape, where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"{where}: has typed contents and raw contents")
            arr = array_from_raw(raw[index], datatype, shape, where)
        else:
            arr = array_from_contents(tensor.contents, datatype, shape, where)
        out.append(cls(tensor.name, shape, datatype, arr, parameters_from_grpc(tensor.parameters)))
    return out


def request_from_grpc(request: Any) -> InferRequest:
    """`ModelInferRequest` -> InferRequest."""
    inputs = _decode_tensors(request.inputs, request.raw_input_contents, "input", InferInput)
    outputs = [RequestedOutput(o.name, parameters_from_grpc(o.parameters)) for o in request.outputs]
    return InferRequest(
        request.model_name,
        inputs,
        request_id=request.id or None,
        from_grpc=True,
        parameters=parameters_from_grpc(request.parameters),
        request_outputs=outputs,
        model_version=request.model_version or None,
    )


def response_from_grpc(response: Any) -> InferResponse:
    """`ModelInferResponse` -> InferResponse (client side)."""
    outputs = _decode_tensors(response.outputs, response.raw_output_contents, "output", InferOutput)
    return InferResponse(
        response.id or None,
        response.model_name,
        outputs,
        model_version=response.model_version or None,
        from_grpc=True,
        parameters=parameters_from_grpc(response.parameters),
    )


def _fill_tensor(message: Any, tensor: InferInput | InferOutput, raw: list[bytes] | None) -> None:
    message.name = tensor.name
    message.datatype = tensor.datatype
    arr = tensor.as_numpy()
    message.shape.extend(tensor.shape)
    parameters_to_grpc(tensor.parameters, message.parameters)
    if raw is not None:
        raw.append(array_to_raw(arr, tensor.datatype))
    else:
        contents_from_array(arr, tensor.datatype, message.contents)


def response_to_grpc(resp: InferResponse, raw: bool = True) -> Any:
    """InferResponse -> `ModelInferResponse` (raw_output_contents unless `raw=False`)."""
    message = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version or "", id=resp.id or ""
    )
    parameters_to_grpc(resp.parameters, message.parameters)
    chunks: list[bytes] | None = [] if raw else None
    for output in resp.selected_outputs():
        _fill_tensor(message.outputs.add(), output, chunks)
    if chunks:
        message.raw_output_contents.extend(chunks)
    return message


def request_to_grpc(req: InferRequest, raw: bool = True) -> Any:
    """InferRequest -> `ModelInferRequest` (raw_input_contents unless `raw=False`)."""
    message = pb.ModelInferRequest(
        model_name=req.model_name, model_version=req.model_version or "", id=req.id or ""
    )
    parameters_to_grpc(req.parameters, message.parameters)
    chunks: list[bytes] | None = [] if raw else None
    for infer_input in req.inputs:
        _fill_tensor(message.inputs.add(), infer_input, chunks)
    if chunks:
        message.raw_input_contents.extend(chunks)
    for requested in req.request_outputs:
        out = message.outputs.add()
        out.name = requested.name
        parameters_to_grpc(requested.parameters, out.parameters)
    return message
