"""OpenAI over REST: `/openai/v1/models`, `/completions`, `/chat/completions` (streamed as
server-sent events when asked) and `/embeddings` (the three POST routes under `/v1/` too), for
the models that implement `openai_model.OpenAIGenerativeModel` / `OpenAIEncoderModel`.

Bodies pass the server's size limit like every other route; errors use OpenAI's shape
(`{"error": {"message", "type", "code"}}`), which the `openai` client reads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from wharf_model_server.dataplane import DataPlane, as_wharf_error
from wharf_model_server.openai_model import OpenAIEncoderModel, OpenAIGenerativeModel
from wharf_model_server.rest.responses import read_limited
from wharf_protocol.errors import InvalidInput, ModelNotFound, ModelNotReady, WharfError
from wharf_protocol.openai import (
    DONE_EVENT,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    OpenAIModel,
    encode_event,
    error_body,
)

logger = logging.getLogger("wharf.openai")

PREFIX = "/openai/v1"
LLM_PREFIX = "/v1"
M = TypeVar("M", bound=BaseModel)
Wanted = type[OpenAIGenerativeModel] | type[OpenAIEncoderModel]


def error_response(exc: BaseException) -> Response:
    error = as_wharf_error(exc)
    body = error_body(str(error), error.http_status)
    return Response(orjson.dumps(body), error.http_status, media_type="application/json")


def _parse(body: bytes | bytearray, model: type[M]) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise InvalidInput(f"invalid request: {problems}") from None


def _served(dataplane: DataPlane, kind: Wanted) -> dict[str, Any]:
    return {
        name: model
        for name, model in dataplane.repository.get_models().items()
        if isinstance(model, kind)
    }


async def _model_for(dataplane: DataPlane, name: str | None, kind: Wanted) -> Any:
    """The model a request names; a request without `model` goes to the only one served."""
    served = _served(dataplane, kind)
    if name is None:
        if len(served) != 1:
            raise InvalidInput(f"name the model: one of {sorted(served)}")
        name = next(iter(served))
    model = served.get(name)
    if model is None:
        raise ModelNotFound(name)
    if not await model.healthy():
        raise ModelNotReady(name)
    return model


async def _sse(chunks: AsyncIterator[OpenAIModel]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield encode_event(chunk)
    except Exception as exc:  # the status line is sent: the error goes in the stream
        error = as_wharf_error(exc)
        yield encode_event(error_body(str(error), error.http_status))
    yield DONE_EVENT


def _answer(result: Any) -> Response:
    if isinstance(result, OpenAIModel):
        return Response(result.wire_json(), media_type="application/json")
    return StreamingResponse(
        _sse(result),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def attach(app: FastAPI, dataplane: DataPlane, max_body_bytes: int) -> None:
    @app.get(f"{PREFIX}/models", tags=["openai"])
    async def models() -> Response:
        cards = []
        for name, model in dataplane.repository.get_models().items():
            if isinstance(model, OpenAIGenerativeModel | OpenAIEncoderModel):
                max_len = getattr(model, "max_model_len", None)
                cards.append(ModelCard(id=name, root=name, max_model_len=max_len))
        return Response(ModelList(data=cards).wire_json(), media_type="application/json")

    async def completions(request: Request) -> Response:
        try:
            body = _parse(await read_limited(request, max_body_bytes), CompletionRequest)
            if body.prompt is None:
                raise InvalidInput("prompt: a prompt is required")
            model = await _model_for(dataplane, body.model, OpenAIGenerativeModel)
            return _answer(await model.create_completion(body))
        except (WharfError, NotImplementedError) as exc:
            return error_response(exc)

    async def chat_completions(request: Request) -> Response:
        try:
            body = _parse(await read_limited(request, max_body_bytes), ChatCompletionRequest)
            if not body.messages:
                raise InvalidInput("messages: at least one message is required")
            model = await _model_for(dataplane, body.model, OpenAIGenerativeModel)
            return _answer(await model.create_chat_completion(body))
        except (WharfError, NotImplementedError) as exc:
            return error_response(exc)

    async def embeddings(request: Request) -> Response:
        try:
            body = _parse(await read_limited(request, max_body_bytes), EmbeddingRequest)
            model = await _model_for(dataplane, body.model, OpenAIEncoderModel)
            return _answer(await model.create_embedding(body))
        except (WharfError, NotImplementedError) as exc:
            return error_response(exc)

    # `/v1/...` too, where vLLM's own server answers them (KServe's vLLM runtime runs it);
    # `GET /v1/models` stays the V1 protocol's model list.
    for prefix in (PREFIX, LLM_PREFIX):
        app.post(f"{prefix}/completions", tags=["openai"])(completions)
        app.post(f"{prefix}/chat/completions", tags=["openai"])(chat_completions)
        app.post(f"{prefix}/embeddings", tags=["openai"])(embeddings)
