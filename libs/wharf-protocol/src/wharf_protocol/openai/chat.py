"""`POST /v1/chat/completions`: messages (text or content parts), tools, responses, chunks."""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag

from wharf_protocol.openai._base import OpenAIModel
from wharf_protocol.openai.common import (
    ChatLogprobs,
    KVTransferParams,
    StreamOptions,
    Usage,
)


def _now() -> int:
    return int(time.time())


# --- content parts ----------------------------------------------------------------------------


class TextPart(OpenAIModel):
    type: Literal["text"] = "text"
    text: str


class ImageURL(OpenAIModel):
    url: str
    detail: str | None = None


class ImageURLPart(OpenAIModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(OpenAIModel):
    data: str
    format: str


class InputAudioPart(OpenAIModel):
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class OtherPart(OpenAIModel):
    """A part this library does not model (vLLM's `video_url`, `audio_url`, `file`,
    `refusal`, ...): its fields are kept as they came."""

    type: str


def _part_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("text", "image_url", "input_audio") else "other"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImageURLPart, Tag("image_url")]
    | Annotated[InputAudioPart, Tag("input_audio")]
    | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_tag),
]


# --- tools ------------------------------------------------------------------------------------


class FunctionDefinition(OpenAIModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(OpenAIModel):
    name: str | None = None
    arguments: str | None = None


class ToolCall(OpenAIModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    wire_always: ClassVar[tuple[str, ...]] = ("type",)


class DeltaToolCall(OpenAIModel):
    """A piece of a tool call in a stream: the first piece names it, later ones add arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall | None = None


# --- messages ---------------------------------------------------------------------------------


class ChatMessage(OpenAIModel):
    """One message of the conversation: `system`, `developer`, `user`, `assistant` or `tool`.

    `content` is text or a list of parts; an assistant message that only calls tools has none.
    """

    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def text(self) -> str:
        """The message's text: the content string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class ResponseFormat(OpenAIModel):
    type: str
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(OpenAIModel):
    """Engine-specific fields (vLLM's `top_k`, `chat_template_kwargs`, `guided_json`, ...) are
    kept as unknown fields and passed on."""

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    kv_transfer_params: KVTransferParams | None = None


# --- responses --------------------------------------------------------------------------------


class ResponseMessage(OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("role", "content")


class ChatChoice(OpenAIModel):
    index: int = 0
    message: ResponseMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("index", "message", "logprobs", "finish_reason")


class ChatCompletionResponse(OpenAIModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    # vLLM: where a prefill engine left the KV blocks for the decode engine.
    kv_transfer_params: KVTransferParams | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("id", "object", "created", "model", "choices")


# --- streaming --------------------------------------------------------------------------------


class Delta(OpenAIModel):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(OpenAIModel):
    index: int = 0
    delta: Delta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("index", "delta", "logprobs", "finish_reason")


class ChatCompletionChunk(OpenAIModel):
    """One server-sent event of a streamed chat completion. With
    `stream_options.include_usage`, the last chunk has empty `choices` and the usage."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("id", "object", "created", "model", "choices")

    @classmethod
    def usage_only(
        cls, id: str, model: str, usage: Usage, created: int | None = None
    ) -> ChatCompletionChunk:
        """The final chunk that `stream_options.include_usage` asks for."""
        return cls(
            id=id,
            model=model,
            created=_now() if created is None else created,
            choices=[],
            usage=usage,
        )
