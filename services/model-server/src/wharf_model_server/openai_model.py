"""What a model implements to answer the OpenAI routes (`/openai/v1/...`), shaped like KServe's
`OpenAIGenerativeModel` / `OpenAIEncoderModel`. Transport-free: the REST layer
(`rest/openai.py`) parses the wire models of `wharf_protocol.openai`, calls these and writes
the answer, or the stream of chunks as server-sent events.

Errors are the protocol's `WharfError`s (their status is the HTTP status); the REST layer
writes them in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from wharf_protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
)


class OpenAIGenerativeModel:
    """Completions and chat completions; a streamed request gets an async iterator of chunks."""

    async def create_completion(
        self, request: CompletionRequest
    ) -> CompletionResponse | AsyncIterator[CompletionChunk]:
        raise NotImplementedError("completions are not served by this model")

    async def create_chat_completion(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionChunk]:
        raise NotImplementedError("chat completions are not served by this model")


class OpenAIEncoderModel:
    """Embeddings."""

    async def create_embedding(self, request: EmbeddingRequest) -> EmbeddingResponse:
        raise NotImplementedError("embeddings are not served by this model")
