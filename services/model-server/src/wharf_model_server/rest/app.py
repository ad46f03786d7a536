"""The REST app: the root and ``/metrics`` routes, each protocol's routes (``v1``, ``v2``,
``repository``) attached to one FastAPI app over one data plane, error handlers and the OpenAPI
schema; in front of it, :class:`InferenceFastPath` serves the inference routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wharf_model_server import metrics
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.rest import openai, repository, v1, v2
from wharf_model_server.rest.fast_path import ASGIApp, InferenceFastPath
from wharf_model_server.rest.handlers import error_result
from wharf_model_server.rest.responses import json_response, response
from wharf_protocol import v2 as v2_models
from wharf_protocol.errors import WharfError
from wharf_protocol.limits import max_message_bytes


def _attach_root(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return json_response({"status": "alive"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(content=body, media_type=content_type)


def _add_error_handlers(app: FastAPI) -> None:
    async def wharf_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WharfError)
        return response(error_result(exc))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, 400)

    async def unexpected_error(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"{type(exc).__name__} : {exc}"}, 500)

    app.add_exception_handler(WharfError, wharf_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            request_schema = v2_models.InferenceRequest.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.update(request_schema.pop("$defs", {}))
            components["InferenceRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_fastapi_app(
    dataplane: DataPlane, enable_docs_url: bool = False, max_body_bytes: int | None = None
) -> FastAPI:
    limit = max_message_bytes() if max_body_bytes is None else max_body_bytes
    app = FastAPI(
        title="Wharf ModelServer",
        version="0.1.0",
        docs_url="/docs" if enable_docs_url else None,
        redoc_url=None,
    )
    _attach_root(app)
    v1.attach(app, dataplane, limit)
    v2.attach(app, dataplane, limit)
    repository.attach(app, dataplane)
    openai.attach(app, dataplane, limit)
    _add_error_handlers(app)
    _install_openapi(app)
    return app


def build_rest_app(
    dataplane: DataPlane, enable_docs_url: bool = False, max_body_bytes: int | None = None
) -> tuple[ASGIApp, FastAPI]:
    """The ASGI app uvicorn serves, and the FastAPI app behind it (for users' middleware)."""
    limit = max_message_bytes() if max_body_bytes is None else max_body_bytes
    app = build_fastapi_app(dataplane, enable_docs_url, limit)
    return InferenceFastPath(dataplane, app, limit), app
