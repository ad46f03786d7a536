"""The REST transport: FastAPI for metadata, health, repository, metrics and docs, with the
inference routes served first by :class:`InferenceFastPath`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wharf_model_server import metrics
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.rest import handlers
from wharf_model_server.rest.fast_path import ASGIApp, InferenceFastPath
from wharf_protocol import v2 as v2_models
from wharf_protocol.errors import ServerNotReady, WharfError


def _response(result: handlers.HttpResult) -> Response:
    return Response(
        content=result.body,
        status_code=result.status,
        media_type=result.content_type,
        headers=result.headers,
    )


def _json(obj: Any, status: int = 200) -> Response:
    return _response(handlers.json_result(obj, status))


def _request_headers(request: Request) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": v2_models.ErrorResponse} for code in (400, 404, 501, 503)
}


def _add_routes(app: FastAPI, dp: DataPlane) -> None:  # noqa: C901 (one closure per route)
    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return _json({"status": "alive"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(content=body, media_type=content_type)

    # -- V1 ----------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["V1"])
    async def v1_models() -> Response:
        return _json({"models": dp.model_names()})

    @app.get("/v1/models/{model_name}", tags=["V1"], responses=_ERROR_RESPONSES)
    async def v1_model_ready(model_name: str) -> Response:
        if not await dp.model_ready(model_name):
            raise ServerNotReady(f"model {model_name!r} is not ready")
        return _json({"name": model_name, "ready": True})

    @app.post("/v1/models/{model_name}:predict", tags=["V1"], responses=_ERROR_RESPONSES)
    async def v1_predict(model_name: str, request: Request) -> Response:
        body = await request.body()
        return _response(await handlers.v1_predict(dp, model_name, body, _request_headers(request)))

    @app.post("/v1/models/{model_name}:explain", tags=["V1"], responses=_ERROR_RESPONSES)
    async def v1_explain(model_name: str, request: Request) -> Response:
        body = await request.body()
        return _response(await handlers.v1_explain(dp, model_name, body, _request_headers(request)))

    # -- V2 / Open Inference Protocol --------------------------------------------------------
    @app.get("/v2", tags=["V2"], response_model=v2_models.ServerMetadataResponse)
    async def server_metadata() -> Response:
        return _json(dp.server_metadata())

    @app.get("/v2/health/live", tags=["V2"], response_model=v2_models.ServerLiveResponse)
    async def live() -> Response:
        return _json({"live": dp.live}, 200 if dp.live else 503)

    @app.get("/v2/health/ready", tags=["V2"], response_model=v2_models.ServerReadyResponse)
    async def ready() -> Response:
        is_ready = await dp.ready()
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2/models", tags=["V2"])
    async def v2_models_list() -> Response:
        return _json({"models": dp.model_names()})

    async def metadata(model_name: str, version: str | None) -> Response:
        return _json(dp.model_metadata(model_name, version))

    async def model_ready(model_name: str, version: str | None) -> Response:
        is_ready = await dp.model_ready(model_name, version)
        return _json({"name": model_name, "ready": is_ready}, 200 if is_ready else 503)

    async def infer(model_name: str, version: str | None, request: Request) -> Response:
        body = await request.body()
        result = await handlers.v2_infer(dp, model_name, version, body, _request_headers(request))
        return _response(result)

    meta_kw: dict[str, Any] = {
        "tags": ["V2"],
        "response_model": v2_models.ModelMetadataResponse,
        "responses": _ERROR_RESPONSES,
    }
    ready_kw: dict[str, Any] = {
        "tags": ["V2"],
        "response_model": v2_models.ModelReadyResponse,
        "responses": _ERROR_RESPONSES,
    }
    infer_kw: dict[str, Any] = {
        "tags": ["V2"],
        "response_model": v2_models.InferenceResponse,
        "responses": _ERROR_RESPONSES,
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/InferenceRequest"}
                    },
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    }

    @app.get("/v2/models/{model_name}", **meta_kw)
    async def model_metadata(model_name: str) -> Response:
        return await metadata(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}", **meta_kw)
    async def model_version_metadata(model_name: str, model_version: str) -> Response:
        return await metadata(model_name, model_version)

    @app.get("/v2/models/{model_name}/ready", **ready_kw)
    async def v2_model_ready(model_name: str) -> Response:
        return await model_ready(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready", **ready_kw)
    async def v2_model_version_ready(model_name: str, model_version: str) -> Response:
        return await model_ready(model_name, model_version)

    @app.post("/v2/models/{model_name}/infer", **infer_kw)
    async def v2_infer(model_name: str, request: Request) -> Response:
        return await infer(model_name, None, request)

    @app.post("/v2/models/{model_name}/versions/{model_version}/infer", **infer_kw)
    async def v2_version_infer(model_name: str, model_version: str, request: Request) -> Response:
        return await infer(model_name, model_version, request)

    # -- repository extension ----------------------------------------------------------------
    @app.post(
        "/v2/repository/models/{model_name}/load",
        tags=["V2"],
        response_model=v2_models.RepositoryLoadResponse,
        responses=_ERROR_RESPONSES,
    )
    async def load(model_name: str) -> Response:
        await dp.load(model_name)
        return _json({"name": model_name, "load": True})

    @app.post(
        "/v2/repository/models/{model_name}/unload",
        tags=["V2"],
        response_model=v2_models.RepositoryUnloadResponse,
        responses=_ERROR_RESPONSES,
    )
    async def unload(model_name: str) -> Response:
        await dp.unload(model_name)
        return _json({"name": model_name, "unload": True})


def _add_error_handlers(app: FastAPI) -> None:
    async def wharf_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WharfError)
        return _response(handlers.error_result(exc))

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


def build_fastapi_app(dataplane: DataPlane, enable_docs_url: bool = False) -> FastAPI:
    app = FastAPI(
        title="Wharf ModelServer",
        version="0.1.0",
        docs_url="/docs" if enable_docs_url else None,
        redoc_url=None,
    )
    _add_routes(app, dataplane)
    _add_error_handlers(app)
    _install_openapi(app)
    return app


def build_rest_app(dataplane: DataPlane, enable_docs_url: bool = False) -> tuple[ASGIApp, FastAPI]:
    """The ASGI app uvicorn serves, and the FastAPI app behind it (for users' middleware)."""
    app = build_fastapi_app(dataplane, enable_docs_url)
    return InferenceFastPath(dataplane, app), app
