"""`POST /v1/embeddings`."""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from wharf_protocol.openai._base import OpenAIModel
from wharf_protocol.openai.common import Usage

EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(OpenAIModel):
    model: str | None = None
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


class Embedding(OpenAIModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # A list of floats, or base64 of little-endian float32 with `encoding_format: base64`.
    embedding: list[float] | str

    wire_always: ClassVar[tuple[str, ...]] = ("object", "index", "embedding")


class EmbeddingResponse(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
    # vLLM adds these two.
    id: str | None = None
    created: int | None = Field(default_factory=lambda: int(time.time()))

    wire_always: ClassVar[tuple[str, ...]] = ("object", "data", "model", "usage")
