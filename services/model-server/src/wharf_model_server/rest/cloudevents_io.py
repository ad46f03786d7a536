"""V1 requests that arrive as CloudEvents, answered in the same mode (KServe's data plane).

Binary mode: ``ce-*`` headers, the body is the data. Structured mode: a JSON envelope with
``specversion``, ``id``, ``source``, ``type``, ``time`` and ``data``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import orjson

from wharf_model_server.utils import generate_uuid

STRUCTURED_KEYS = frozenset(("time", "type", "source", "id", "specversion", "data"))


def is_binary(headers: dict[str, str]) -> bool:
    return "ce-specversion" in headers


def structured_data(payload: Any) -> tuple[bool, Any]:
    """(True, data) for a structured CloudEvent body, else (False, payload)."""
    if isinstance(payload, dict) and payload.keys() >= STRUCTURED_KEYS:
        return True, payload["data"]
    return False, payload


def _attributes(model_name: str) -> dict[str, str]:
    return {
        "specversion": "1.0",
        "id": generate_uuid(),
        "type": os.environ.get("CE_TYPE", "io.kserve.inference.response"),
        "source": os.environ.get("CE_SOURCE", f"io.kserve.inference.{model_name}"),
        "time": datetime.now(UTC).isoformat(),
    }


def binary_response_headers(model_name: str) -> dict[str, str]:
    return {f"ce-{k}": v for k, v in _attributes(model_name).items()}


def structured_response(model_name: str, body: bytes) -> bytes:
    envelope = {
        **_attributes(model_name),
        "datacontenttype": "application/json",
        "data": orjson.loads(body),
    }
    return orjson.dumps(envelope)
