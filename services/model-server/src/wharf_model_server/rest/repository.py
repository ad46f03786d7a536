"""The model repository extension over REST: ``/v2/repository/models/{m}/load`` and
``/unload`` (Triton's and KServe's shape)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from wharf_model_server.dataplane import DataPlane
from wharf_model_server.rest.responses import ERROR_RESPONSES, json_response
from wharf_protocol import v2 as v2_models


def attach(app: FastAPI, dp: DataPlane) -> None:
    @app.post(
        "/v2/repository/models/{model_name}/load",
        tags=["V2"],
        response_model=v2_models.RepositoryLoadResponse,
        responses=ERROR_RESPONSES,
    )
    async def load(model_name: str) -> Response:
        await dp.load(model_name)
        return json_response({"name": model_name, "load": True})

    @app.post(
        "/v2/repository/models/{model_name}/unload",
        tags=["V2"],
        response_model=v2_models.RepositoryUnloadResponse,
        responses=ERROR_RESPONSES,
    )
    async def unload(model_name: str) -> Response:
        await dp.unload(model_name)
        return json_response({"name": model_name, "unload": True})
