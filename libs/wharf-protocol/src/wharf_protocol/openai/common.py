"""Pieces shared by several endpoints: usage, stream options, logprobs, the P/D hand-off."""

from __future__ import annotations

from typing import Any, ClassVar

from wharf_protocol.openai._base import OpenAIModel


class PromptTokensDetails(OpenAIModel):
    cached_tokens: int | None = None


class CompletionTokensDetails(OpenAIModel):
    reasoning_tokens: int | None = None


class Usage(OpenAIModel):
    """Token counts. Embeddings report no `completion_tokens`; vLLM then sends 0."""

    prompt_tokens: int = 0
    completion_tokens: int | None = None
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    wire_always: ClassVar[tuple[str, ...]] = ("prompt_tokens", "total_tokens")


class StreamOptions(OpenAIModel):
    include_usage: bool | None = None
    # vLLM: also put usage on every chunk, not only on the final one.
    continuous_usage_stats: bool | None = None


class KVTransferParams(OpenAIModel):
    """vLLM's prefill/decode hand-off (`kv_transfer_params`, as NixlConnector reads it).

    The request to the prefill engine carries `do_remote_decode: true`; its response carries
    where the KV blocks are (`remote_engine_id`, `remote_block_ids`, `remote_host`,
    `remote_port`, plus connector-specific fields, kept as unknown fields); the decode request
    carries those back with `do_remote_prefill: true`.
    """

    do_remote_decode: bool | None = None
    do_remote_prefill: bool | None = None
    remote_engine_id: str | None = None
    remote_block_ids: list[int] | None = None
    remote_host: str | None = None
    remote_port: int | None = None

    @classmethod
    def for_prefill(cls) -> KVTransferParams:
        """What the request to a prefill engine carries (every field present, as vLLM's own
        proxy and llm-d's sidecar send it)."""
        return cls(
            do_remote_decode=True,
            do_remote_prefill=False,
            remote_engine_id=None,
            remote_block_ids=None,
            remote_host=None,
            remote_port=None,
        )


class TopLogprob(OpenAIModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(OpenAIModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


class ChatLogprobs(OpenAIModel):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class CompletionLogprobs(OpenAIModel):
    """The legacy completions API's logprobs: parallel lists, one entry per token."""

    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


JSONObject = dict[str, Any]
