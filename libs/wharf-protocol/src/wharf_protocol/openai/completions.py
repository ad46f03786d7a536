"""`POST /v1/completions`: the legacy text completions API, as OpenAI and vLLM speak it."""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from wharf_protocol.openai._base import OpenAIModel
from wharf_protocol.openai.common import (
    CompletionLogprobs,
    KVTransferParams,
    StreamOptions,
    Usage,
)

# A prompt is text, a batch of texts, token ids, or a batch of token-id lists.
Prompt = str | list[str] | list[int] | list[list[int]]


def _now() -> int:
    return int(time.time())


class CompletionRequest(OpenAIModel):
    """Engine-specific sampling fields (vLLM's `top_k`, `min_p`, `repetition_penalty`, ...) are
    kept as unknown fields and passed on."""

    model: str | None = None
    prompt: Prompt | None = None
    suffix: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    best_of: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: int | None = None
    echo: bool | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    kv_transfer_params: KVTransferParams | None = None


class CompletionChoice(OpenAIModel):
    index: int = 0
    text: str = ""
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("index", "text", "logprobs", "finish_reason")


class CompletionResponse(OpenAIModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    # vLLM: where a prefill engine left the KV blocks for the decode engine.
    kv_transfer_params: KVTransferParams | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("id", "object", "created", "model", "choices")


class CompletionChunk(OpenAIModel):
    """One server-sent event of a streamed completion (`object` is `text_completion` too).
    With `stream_options.include_usage`, the last chunk has empty `choices` and the usage."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("id", "object", "created", "model", "choices")

    @classmethod
    def usage_only(
        cls, id: str, model: str, usage: Usage, created: int | None = None
    ) -> CompletionChunk:
        """The final chunk that `stream_options.include_usage` asks for."""
        return cls(
            id=id,
            model=model,
            created=_now() if created is None else created,
            choices=[],
            usage=usage,
        )
