"""The parts of vLLM's OpenAI requests that the simulator reads, parsed and checked (pure).
Errors name the field; unknown fields are ignored, as vLLM ignores them by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wharf_e2e.enginesim import tokens as tok

MAX_PROMPT_CHARS = 4 * 1024 * 1024
MAX_MESSAGES = 4096


class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    model: str | None
    prompt: list[str]
    max_tokens: int | None  # None: the endpoint's default
    stream: bool
    include_usage: bool
    continuous_usage: bool
    kv_transfer_params: dict[str, Any] | None
    cache_salt: str


def _int_field(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be an integer >= 1, got {value!r}", name)
        return value
    return None


def _common(
    body: dict[str, Any], prompt: list[str], token_fields: tuple[str, ...]
) -> GenerationRequest:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model must be a string", "model")
    n = body.get("n", 1)
    if n != 1:
        raise BadRequest(f"n must be 1 in the engine simulator, got {n!r}", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", "stream_options")
    if options and not stream:
        raise BadRequest("stream_options can only be set when stream is true", "stream_options")
    kv = body.get("kv_transfer_params")
    if kv is not None and not isinstance(kv, dict):
        raise BadRequest("kv_transfer_params must be an object", "kv_transfer_params")
    salt = body.get("cache_salt") or ""
    if not isinstance(salt, str):
        raise BadRequest("cache_salt must be a string", "cache_salt")
    return GenerationRequest(
        model=model,
        prompt=prompt,
        max_tokens=_int_field(body, *token_fields),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("continuous_usage_stats")),
        kv_transfer_params=kv,
        cache_salt=salt,
    )


def parse_completion(body: dict[str, Any]) -> GenerationRequest:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if len(prompt) > MAX_PROMPT_CHARS:
            raise BadRequest(f"prompt is longer than {MAX_PROMPT_CHARS} characters", "prompt")
        tokens = tok.tokenize(prompt)
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in prompt)
    ):
        tokens = tok.ids_as_tokens(prompt)
    else:
        raise BadRequest("prompt must be a string, a list of one string or a list of token ids",
                         "prompt")  # fmt: skip
    if not tokens:
        raise BadRequest("prompt is empty", "prompt")
    return _common(body, tokens, ("max_tokens",))


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest(f"messages[{index}].content: only text parts are simulated",
                                 "messages")  # fmt: skip
            parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    raise BadRequest(f"messages[{index}].content must be a string or a list of parts", "messages")


def parse_chat(body: dict[str, Any]) -> GenerationRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", "messages")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"messages has more than {MAX_MESSAGES} entries", "messages")
    pairs = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a role", "messages")
        pairs.append((m["role"], _content(m, i)))
    text = tok.render_chat(pairs)
    if len(text) > MAX_PROMPT_CHARS:
        raise BadRequest(f"messages are longer than {MAX_PROMPT_CHARS} characters", "messages")
    return _common(body, tok.tokenize(text), ("max_completion_tokens", "max_tokens"))
