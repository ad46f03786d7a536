"""REST inference handlers over the data plane: bytes in, (status, headers, bytes) out.

Both the raw ASGI fast path and the FastAPI routes call these, so the two never disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from wharf_model_server import metrics
from wharf_model_server.dataplane import DataPlane, as_wharf_error
from wharf_model_server.model import InferenceVerb
from wharf_model_server.rest import cloudevents_io
from wharf_model_server.utils import generate_uuid
from wharf_protocol.errors import InvalidInput, WharfError
from wharf_protocol.infer_types import InferResponse
from wharf_protocol.rest import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    decode_infer_request,
    encode_infer_response,
    parse_header_length,
)

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class HttpResult:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error_result(error: WharfError) -> HttpResult:
    return HttpResult(error.http_status, orjson.dumps(error.body()))


def json_result(obj: Any, status: int = 200) -> HttpResult:
    return HttpResult(status, orjson.dumps(obj, option=_ORJSON_OPTIONS))


def encode_result(response: Any, response_headers: dict[str, str]) -> HttpResult:
    if isinstance(response, InferResponse):
        body, json_length = encode_infer_response(response)
        if json_length is None:
            return HttpResult(200, body, JSON, response_headers)
        headers = {**response_headers, INFERENCE_HEADER_CONTENT_LENGTH: str(json_length)}
        return HttpResult(200, body, OCTET_STREAM, headers)
    if isinstance(response, bytes):
        return HttpResult(200, response, OCTET_STREAM, response_headers)
    if isinstance(response, str):
        return HttpResult(200, response.encode(), "text/plain; charset=utf-8", response_headers)
    try:
        body = orjson.dumps(response, option=_ORJSON_OPTIONS)
    except TypeError as exc:
        raise TypeError(f"the model returned a value that is not JSON: {exc}") from exc
    return HttpResult(200, body, JSON, response_headers)


def parse_v1_body(body: bytes) -> Any:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("request body must be a JSON object")
    for key in ("instances", "inputs"):
        if key in payload and not isinstance(payload[key], list):
            raise InvalidInput(f'"{key}" must be a list')
    return payload


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def v1_payload(body: bytes, content_type: str | None) -> Any:
    """JSON is parsed; a body of another content type that is not JSON (an image, text)
    reaches the model as bytes, as in KServe's V1 data plane."""
    if _is_json_type(content_type):
        return parse_v1_body(body)
    try:
        return parse_v1_body(body)
    except InvalidInput:
        return body


def _event_id(headers: dict[str, str]) -> str:
    return headers.get("ce-id") or headers.get("x-request-id") or generate_uuid()


async def _run(
    dataplane: DataPlane,
    protocol: str,
    model_name: str,
    version: str | None,
    body: bytes,
    headers: dict[str, str],
    endpoint: str,
    verb: InferenceVerb,
) -> HttpResult:
    start = time.perf_counter()
    observed = False
    result: HttpResult
    try:
        model = dataplane.get_ready_model(model_name, version)
        observed = True
        structured = False
        if protocol == "v2":
            payload: Any = decode_infer_request(
                body, model_name, parse_header_length(headers.get(INFERENCE_HEADER_CONTENT_LENGTH))
            )
        else:
            payload = v1_payload(body, headers.get("content-type"))
            structured, payload = cloudevents_io.structured_data(payload)
        plog = dataplane.payload_logger
        event_id = _event_id(headers) if plog is not None else ""
        if plog is not None:
            plog.log_request(
                event_id, model_name, endpoint, body, headers.get("content-type", JSON)
            )
        response, response_headers = await dataplane.infer(model, payload, headers, verb)
        result = encode_result(response, response_headers)
        if protocol == "v1" and result.content_type == JSON:
            if structured:
                result.body = cloudevents_io.structured_response(model_name, result.body)
                result.content_type = "application/cloudevents+json"
            elif cloudevents_io.is_binary(headers):
                result.headers.update(cloudevents_io.binary_response_headers(model_name))
        if plog is not None:
            plog.log_response(event_id, model_name, endpoint, result.body, result.content_type)
    except WharfError as exc:
        result = error_result(exc)
    except Exception as exc:
        result = error_result(as_wharf_error(exc))
    if observed:
        metrics.observe_inference(model_name, protocol, result.status, time.perf_counter() - start)
    return result


async def v2_infer(
    dataplane: DataPlane,
    model_name: str,
    version: str | None,
    body: bytes,
    headers: dict[str, str],
) -> HttpResult:
    return await _run(
        dataplane, "v2", model_name, version, body, headers, "v2", InferenceVerb.PREDICT
    )


async def v1_predict(
    dataplane: DataPlane, model_name: str, body: bytes, headers: dict[str, str]
) -> HttpResult:
    return await _run(dataplane, "v1", model_name, None, body, headers, "v1", InferenceVerb.PREDICT)


async def v1_explain(
    dataplane: DataPlane, model_name: str, body: bytes, headers: dict[str, str]
) -> HttpResult:
    return await _run(dataplane, "v1", model_name, None, body, headers, "v1", InferenceVerb.EXPLAIN)
