"""V1 (TensorFlow-Serving style) prediction bodies: `{"instances": [...]}` or
`{"inputs": [...]}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from wharf_protocol.errors import InvalidInput


def decode_v1_request(body: bytes) -> dict[str, Any]:
    """The parsed V1 body; InvalidInput unless it is an object with a list `instances`
    or `inputs`."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"Unrecognized request format: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"the V1 body must be a JSON object, got {type(obj).__name__}")
    key = "instances" if "instances" in obj else "inputs" if "inputs" in obj else None
    if key is None:
        raise InvalidInput('Expected "instances" or "inputs" in the V1 request')
    if not isinstance(obj[key], list):
        raise InvalidInput(f'Expected "{key}" to be a list')
    return obj


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    instances: list[Any] | None = None
    inputs: list[Any] | None = None


class PredictResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    predictions: list[Any]
