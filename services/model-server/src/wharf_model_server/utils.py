"""Helpers custom models use, named like ``kserve.utils.utils``: payload <-> numpy."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from wharf_protocol.datatypes import from_numpy_dtype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferOutput, InferRequest, InferResponse

# The version (4) and variant (RFC 4122) bits of a version-4 UUID, as ``uuid.UUID`` sets them.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def generate_uuid() -> str:
    """A version-4 UUID for response ids. Ids need uniqueness, not secrecy, so this skips
    ``uuid4()``'s ``os.urandom`` system call on every request; and it formats the 128 random
    bits itself, as ``str(uuid.UUID(int=..., version=4))`` would, without building the object
    (less than half the time)."""
    hex_digits = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return (
        f"{hex_digits[:8]}-{hex_digits[8:12]}-{hex_digits[12:16]}-"
        f"{hex_digits[16:20]}-{hex_digits[20:]}"
    )


def get_predict_input(payload: dict[str, Any] | InferRequest) -> Any:
    """V1 ``instances``/``inputs`` as a numpy array; V2 the first input as numpy."""
    if isinstance(payload, InferRequest):
        if not payload.inputs:
            raise InvalidInput("the request has no inputs")
        return payload.inputs[0].as_numpy()
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    instances = payload.get("instances", payload.get("inputs"))
    if not isinstance(instances, list):
        raise InvalidInput('expected "instances" (or "inputs") to be a list')
    if instances and all(isinstance(row, str) for row in instances):
        return instances
    try:
        array = np.asarray(instances)
    except ValueError as exc:
        raise InvalidInput(f"instances are not a rectangular array: {exc}") from exc
    if array.dtype == object:
        raise InvalidInput("instances must be numbers or lists of numbers of equal length")
    return array


def as_numpy_output(result: Any) -> np.ndarray:
    array = np.asarray(result)
    if array.dtype.kind in ("U", "S"):
        array = array.astype(object)
    return array


def get_predict_response(
    payload: dict[str, Any] | InferRequest, result: Any, model_name: str
) -> dict[str, Any] | InferResponse:
    if isinstance(payload, InferRequest):
        array = as_numpy_output(result)
        # the array and its own datatype and shape: what set_data_from_numpy(array,
        # binary_data=False) leaves in a new output, without checking that they agree
        output = InferOutput("output-0", list(array.shape), from_numpy_dtype(array.dtype), array)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=model_name,
            infer_outputs=[output],
            from_grpc=payload.from_grpc,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )
    if isinstance(result, np.ndarray):
        return {"predictions": result.tolist()}
    return {"predictions": result}
