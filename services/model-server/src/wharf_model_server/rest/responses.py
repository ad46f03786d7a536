"""FastAPI glue shared by the route modules: results to responses, headers, bodies."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from wharf_model_server.errors import RequestTooLarge
from wharf_model_server.rest import body
from wharf_model_server.rest.handlers import HttpResult, json_result
from wharf_protocol import v2 as v2_models

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": v2_models.ErrorResponse} for code in (400, 404, 413, 501, 503)
}


def response(result: HttpResult) -> Response:
    return Response(
        content=result.body,
        status_code=result.status,
        media_type=result.content_type,
        headers=result.headers,
    )


def json_response(obj: Any, status: int = 200) -> Response:
    return response(json_result(obj, status))


def request_headers(request: Request) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


async def read_limited(request: Request, limit: int) -> bytes | bytearray:
    """The request body, refused with 413 above ``limit`` (see :mod:`rest.body`)."""
    length = body.declared_length(request.scope["headers"])
    if length is not None and length > limit:
        raise RequestTooLarge(limit, length)
    chunks = request.stream()
    first = b""
    async for chunk in chunks:
        first = chunk
        break
    return await body.collect(first, chunks, limit, length)
