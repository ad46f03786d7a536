"""OpenAI API wire models (completions, chat completions, embeddings, models, errors) and the
server-sent-event framing of streamed responses, as OpenAI and vLLM speak them.

Shared by the router, the LLM workers and the engine simulator. Every model keeps unknown
fields (engines add their own) and writes back only what it was given: `model.wire()`.
"""

from wharf_protocol.openai._base import OpenAIModel
from wharf_protocol.openai.chat import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ContentPart,
    Delta,
    DeltaToolCall,
    FunctionCall,
    FunctionDefinition,
    ImageURLPart,
    InputAudioPart,
    NamedToolChoice,
    OtherPart,
    ResponseFormat,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
)
from wharf_protocol.openai.common import (
    ChatLogprobs,
    CompletionLogprobs,
    KVTransferParams,
    PromptTokensDetails,
    StreamOptions,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from wharf_protocol.openai.completions import (
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
)
from wharf_protocol.openai.disagg import decode_body, prefill_body
from wharf_protocol.openai.embeddings import Embedding, EmbeddingRequest, EmbeddingResponse
from wharf_protocol.openai.errors import ErrorInfo, ErrorResponse, error_body, parse_error
from wharf_protocol.openai.models import ModelCard, ModelList
from wharf_protocol.openai.sse import (
    DONE,
    DONE_EVENT,
    SSEDecoder,
    aiter_events,
    encode_event,
    iter_events,
    parse_data,
)

__all__ = [
    "DONE",
    "DONE_EVENT",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatLogprobs",
    "ChatMessage",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "ContentPart",
    "Delta",
    "DeltaToolCall",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ErrorInfo",
    "ErrorResponse",
    "FunctionCall",
    "FunctionDefinition",
    "ImageURLPart",
    "InputAudioPart",
    "KVTransferParams",
    "ModelCard",
    "ModelList",
    "NamedToolChoice",
    "OpenAIModel",
    "OtherPart",
    "PromptTokensDetails",
    "ResponseFormat",
    "ResponseMessage",
    "SSEDecoder",
    "StreamOptions",
    "TextPart",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "TopLogprob",
    "Usage",
    "aiter_events",
    "decode_body",
    "encode_event",
    "error_body",
    "iter_events",
    "parse_data",
    "parse_error",
    "prefill_body",
]
