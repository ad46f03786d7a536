"""V2 / Open Inference Protocol over REST: server and model metadata, health, readiness and
``/infer`` (JSON or the binary tensor extension).

``infer`` is what the fast path calls; :func:`attach` declares every V2 route on the FastAPI
app, the inference routes included (for ``/docs`` and the OpenAPI schema).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from wharf_model_server.dataplane import DataPlane
from wharf_model_server.rest.handlers import HttpResult, run_inference
from wharf_model_server.rest.responses import (
    ERROR_RESPONSES,
    json_response,
    read_limited,
    request_headers,
    response,
)
from wharf_protocol import v2 as v2_models
from wharf_protocol.infer_types import InferRequest
from wharf_protocol.rest import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    decode_infer_request,
    parse_header_length,
)

PROTOCOL = "v2"


def _decoder(model_name: str) -> Any:
    def decode(body: bytes | bytearray, headers: dict[str, str]) -> tuple[InferRequest, None]:
        length = parse_header_length(headers.get(INFERENCE_HEADER_CONTENT_LENGTH))
        return decode_infer_request(body, model_name, length), None  # type: ignore[arg-type]

    return decode


def infer(
    dataplane: DataPlane,
    model_name: str,
    version: str | None,
    body: bytes | bytearray,
    headers: dict[str, str],
) -> Coroutine[Any, Any, HttpResult]:
    """run_inference's coroutine, not awaited here: only its frame holds the body."""
    return run_inference(
        dataplane, PROTOCOL, model_name, version, body, headers, _decoder(model_name)
    )


_META_KW: dict[str, Any] = {
    "tags": ["V2"],
    "response_model": v2_models.ModelMetadataResponse,
    "responses": ERROR_RESPONSES,
}
_READY_KW: dict[str, Any] = {
    "tags": ["V2"],
    "response_model": v2_models.ModelReadyResponse,
    "responses": ERROR_RESPONSES,
}
_INFER_KW: dict[str, Any] = {
    "tags": ["V2"],
    "response_model": v2_models.InferenceResponse,
    "responses": ERROR_RESPONSES,
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
}


def attach(app: FastAPI, dp: DataPlane, max_body_bytes: int) -> None:
    @app.get("/v2", tags=["V2"], response_model=v2_models.ServerMetadataResponse)
    async def server_metadata() -> Response:
        return json_response(dp.server_metadata())

    @app.get("/v2/health/live", tags=["V2"], response_model=v2_models.ServerLiveResponse)
    async def live() -> Response:
        return json_response({"live": dp.live}, 200 if dp.live else 503)

    @app.get("/v2/health/ready", tags=["V2"], response_model=v2_models.ServerReadyResponse)
    async def ready() -> Response:
        is_ready = await dp.ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2/models", tags=["V2"])
    async def v2_models_list() -> Response:
        return json_response({"models": dp.model_names()})

    async def metadata(model_name: str, version: str | None) -> Response:
        return json_response(dp.model_metadata(model_name, version))

    async def model_ready(model_name: str, version: str | None) -> Response:
        is_ready = await dp.model_ready(model_name, version)
        return json_response({"name": model_name, "ready": is_ready}, 200 if is_ready else 503)

    async def infer_route(model_name: str, version: str | None, request: Request) -> Response:
        headers = request_headers(request)
        body = read_limited(request, max_body_bytes)
        return response(await infer(dp, model_name, version, await body, headers))

    @app.get("/v2/models/{model_name}", **_META_KW)
    async def model_metadata(model_name: str) -> Response:
        return await metadata(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}", **_META_KW)
    async def model_version_metadata(model_name: str, model_version: str) -> Response:
        return await metadata(model_name, model_version)

    @app.get("/v2/models/{model_name}/ready", **_READY_KW)
    async def v2_model_ready(model_name: str) -> Response:
        return await model_ready(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready", **_READY_KW)
    async def v2_model_version_ready(model_name: str, model_version: str) -> Response:
        return await model_ready(model_name, model_version)

    @app.post("/v2/models/{model_name}/infer", **_INFER_KW)
    async def v2_infer(model_name: str, request: Request) -> Response:
        return await infer_route(model_name, None, request)

    @app.post("/v2/models/{model_name}/versions/{model_version}/infer", **_INFER_KW)
    async def v2_version_infer(model_name: str, model_version: str, request: Request) -> Response:
        return await infer_route(model_name, model_version, request)
