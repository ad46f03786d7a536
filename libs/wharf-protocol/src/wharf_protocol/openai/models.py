"""`GET /v1/models`: the served models, as OpenAI lists them (vLLM adds `root`, `parent`,
`max_model_len` and `permission`, kept as they come)."""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from wharf_protocol.openai._base import OpenAIModel


class ModelCard(OpenAIModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "wharf"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("id", "object", "created", "owned_by")


class ModelList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)

    wire_always: ClassVar[tuple[str, ...]] = ("object", "data")
