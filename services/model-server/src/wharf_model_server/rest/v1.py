"""V1 (TF-Serving style) over REST: ``/v1/models``, ``/v1/models/{m}``, ``:predict``, ``:explain``.

``predict`` and ``explain`` are what the fast path calls; :func:`attach` declares the same
routes on the FastAPI app (they serve ``/docs`` and the OpenAPI schema, and any request the fast
path does not take).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from wharf_model_server.dataplane import DataPlane
from wharf_model_server.model import InferenceVerb
from wharf_model_server.rest import cloudevents_io
from wharf_model_server.rest.handlers import JSON, HttpResult, encode_result, run_inference
from wharf_model_server.rest.responses import (
    ERROR_RESPONSES,
    json_response,
    read_limited,
    request_headers,
    response,
)
from wharf_protocol.errors import InvalidInput, ServerNotReady

PROTOCOL = "v1"


def parse_v1_body(body: bytes | bytearray) -> Any:
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


def v1_payload(body: bytes | bytearray, content_type: str | None) -> Any:
    """JSON is parsed; a body of another content type that is not JSON (an image, text)
    reaches the model as bytes, as in KServe's V1 data plane."""
    if _is_json_type(content_type):
        return parse_v1_body(body)
    try:
        return parse_v1_body(body)
    except InvalidInput:
        return bytes(body)


def decode(body: bytes | bytearray, headers: dict[str, str]) -> tuple[Any, bool]:
    """The model's payload, and whether the request was a structured CloudEvent."""
    structured, payload = cloudevents_io.structured_data(
        v1_payload(body, headers.get("content-type"))
    )
    return payload, structured


def _encoder(model_name: str) -> Any:
    def encode(
        response: Any,
        response_headers: dict[str, str],
        structured: bool,
        headers: dict[str, str],
    ) -> HttpResult:
        result = encode_result(response, response_headers)
        if result.content_type == JSON:
            if structured:
                result.body = cloudevents_io.structured_response(model_name, result.body)
                result.content_type = "application/cloudevents+json"
            elif cloudevents_io.is_binary(headers):
                result.headers.update(cloudevents_io.binary_response_headers(model_name))
        return result

    return encode


# predict and explain hand back run_inference's coroutine rather than awaiting it, so no frame
# but run_inference's holds the body while the model runs (it lets go of it once decoded).


def predict(
    dataplane: DataPlane, model_name: str, body: bytes | bytearray, headers: dict[str, str]
) -> Coroutine[Any, Any, HttpResult]:
    return run_inference(
        dataplane, PROTOCOL, model_name, None, body, headers, decode,
        InferenceVerb.PREDICT, _encoder(model_name),
    )  # fmt: skip


def explain(
    dataplane: DataPlane, model_name: str, body: bytes | bytearray, headers: dict[str, str]
) -> Coroutine[Any, Any, HttpResult]:
    return run_inference(
        dataplane, PROTOCOL, model_name, None, body, headers, decode,
        InferenceVerb.EXPLAIN, _encoder(model_name),
    )  # fmt: skip


def attach(app: FastAPI, dp: DataPlane, max_body_bytes: int) -> None:
    @app.get("/v1/models", tags=["V1"])
    async def v1_models() -> Response:
        return json_response({"models": dp.model_names()})

    @app.get("/v1/models/{model_name}", tags=["V1"], responses=ERROR_RESPONSES)
    async def v1_model_ready(model_name: str) -> Response:
        if not await dp.model_ready(model_name):
            raise ServerNotReady(f"model {model_name!r} is not ready")
        return json_response({"name": model_name, "ready": True})

    @app.post("/v1/models/{model_name}:predict", tags=["V1"], responses=ERROR_RESPONSES)
    async def v1_predict(model_name: str, request: Request) -> Response:
        headers = request_headers(request)
        return response(
            await predict(dp, model_name, await read_limited(request, max_body_bytes), headers)
        )

    @app.post("/v1/models/{model_name}:explain", tags=["V1"], responses=ERROR_RESPONSES)
    async def v1_explain(model_name: str, request: Request) -> Response:
        headers = request_headers(request)
        return response(
            await explain(dp, model_name, await read_limited(request, max_body_bytes), headers)
        )
