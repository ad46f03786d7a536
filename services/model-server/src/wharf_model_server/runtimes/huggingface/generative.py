"""Text generation behind `/openai/v1/completions` and `/chat/completions`, over either engine
(vLLM in-process, or transformers): prompts and chat templates come from the model's tokenizer,
the engine streams text pieces, this module shapes them into OpenAI's answers and chunks.

Served: `max_tokens` / `max_completion_tokens`, `temperature` (0: greedy), `top_p`, `top_k`,
`seed`, `stop`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`, `ignore_eos`,
`stream` with `stream_options.include_usage`, `echo` (completions). Refused with a 400:
`n` > 1, `best_of` > 1, `logprobs`, and content parts other than text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from wharf_model_server.model import BaseKServeModel
from wharf_model_server.openai_model import OpenAIGenerativeModel
from wharf_model_server.runtimes.huggingface.stops import StopScanner, stop_list
from wharf_model_server.utils import generate_uuid
from wharf_protocol.errors import InvalidInput
from wharf_protocol.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    Delta,
    ResponseMessage,
    TextPart,
    Usage,
)

logger = logging.getLogger("wharf.huggingface")

# OpenAI's default for the legacy completions API (vLLM's too).
DEFAULT_COMPLETION_TOKENS = 16
MAX_PROMPTS = 64


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class Step:
    """New text since the last step, completion tokens so far, and why it ended (last step)."""

    text: str
    tokens: int
    finish_reason: str | None = None


class GenerationEngine(Protocol):
    async def start(self) -> None: ...

    def stop(self) -> None: ...

    def generate(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[Step]: ...


@dataclass
class _Outcome:
    text: str = ""
    tokens: int = 0
    finish_reason: str = "stop"


def _number(extra: dict[str, Any], key: str) -> float | None:
    value = extra.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{key}: expected a number")
    return float(value)


class HuggingfaceGenerativeModel(BaseKServeModel, OpenAIGenerativeModel):
    def __init__(
        self,
        name: str,
        tokenizer: Any,
        engine: GenerationEngine,
        max_model_len: int,
        *,
        encoder_decoder: bool = False,
        log_requests: bool = True,
        max_log_len: int | None = None,
    ) -> None:
        super().__init__(name)
        self.tokenizer = tokenizer
        self.generation_engine = engine
        self.max_model_len: int = max_model_len
        self.encoder_decoder = encoder_decoder
        self.log_requests = log_requests
        self.max_log_len = max_log_len
        self.engine = True  # the server awaits start_engine() before it listens
        self.engine_started = False

    def load(self) -> bool:
        # Registered as ready; requests are answered once the engine has started (healthy).
        self.ready = True
        return self.ready

    async def healthy(self) -> bool:
        return self.ready and self.engine_started

    async def start_engine(self) -> None:
        await self.generation_engine.start()
        # vLLM may settle on a shorter context than the config's (its own checks, KV space).
        engine_len = getattr(self.generation_engine, "max_model_len", None)
        if isinstance(engine_len, int) and engine_len > 0:
            self.max_model_len = engine_len
        self.engine_started = True

    def stop_engine(self) -> None:
        self.engine_started = False
        self.generation_engine.stop()

    # -- requests -> engine inputs -----------------------------------------------------------

    def _options(self, request: CompletionRequest | ChatCompletionRequest, prompt_len: int,
                 max_tokens: int | None, default_max: int | None) -> SamplingOptions:  # fmt: skip
        if request.n is not None and request.n != 1:
            raise InvalidInput("n: only 1 is supported")
        if request.logprobs:
            raise InvalidInput("logprobs: not supported by this model")
        room = self.max_model_len - prompt_len
        if room <= 0:
            raise InvalidInput(
                f"the prompt has {prompt_len} tokens; this model's context is "
                f"{self.max_model_len} tokens"
            )
        wanted = max_tokens if max_tokens is not None else (default_max or room)
        if wanted <= 0:
            raise InvalidInput("max_tokens: must be at least 1")
        if wanted > room:
            raise InvalidInput(
                f"max_tokens: {wanted} plus the prompt's {prompt_len} tokens is more than "
                f"this model's context of {self.max_model_len} tokens"
            )
        extra = request.extra_fields
        try:
            stops = stop_list(request.stop)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        top_k = _number(extra, "top_k")
        repetition = _number(extra, "repetition_penalty")
        temperature = 1.0 if request.temperature is None else request.temperature
        if temperature < 0:
            raise InvalidInput("temperature: must be 0 or more")
        top_p = 1.0 if request.top_p is None else request.top_p
        if not 0 < top_p <= 1:
            raise InvalidInput("top_p: must be in (0, 1]")
        return SamplingOptions(
            max_tokens=wanted,
            temperature=temperature,
            top_p=top_p,
            top_k=int(top_k) if top_k is not None and top_k > 0 else None,
            seed=request.seed,
            stop=stops,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            repetition_penalty=repetition,
            ignore_eos=bool(extra.get("ignore_eos", False)),
        )

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _chat_prompt(self, request: ChatCompletionRequest) -> list[int]:
        messages: list[dict[str, Any]] = []
        for i, message in enumerate(request.messages):
            if isinstance(message.content, list) and not all(
                isinstance(p, TextPart) for p in message.content
            ):
                raise InvalidInput(f"messages.{i}.content: only text parts are supported")
            entry: dict[str, Any] = {"role": message.role, "content": message.text()}
            if message.name:
                entry["name"] = message.name
            if message.tool_calls:
                entry["tool_calls"] = [c.wire() for c in message.tool_calls]
            if message.tool_call_id:
                entry["tool_call_id"] = message.tool_call_id
            messages.append(entry)
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidInput(f"model {self.name!r} has no chat template: use /completions")
        kwargs = dict(request.extra_fields.get("chat_template_kwargs") or {})
        tools = [t.wire() for t in request.tools] if request.tools else None
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False, **kwargs
            )
        except Exception as exc:  # the template refuses the conversation (roles, order)
            raise InvalidInput(f"messages: the chat template refused them: {exc}") from exc
        # The template already wrote the special tokens it wants (vLLM tokenizes it this way).
        return self._tokenize(str(text), special=False)

    def _completion_prompts(self, request: CompletionRequest) -> list[tuple[str, list[int]]]:
        prompt: Any = request.prompt
        prompts: list[Any]
        if isinstance(prompt, str):
            prompts = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            prompts = [[int(p) for p in prompt]]
        elif isinstance(prompt, list):
            prompts = list(prompt)
        else:
            raise InvalidInput("prompt: text, a list of texts, or token ids")
        if not prompts or len(prompts) > MAX_PROMPTS:
            raise InvalidInput(f"prompt: 1 to {MAX_PROMPTS} prompts")
        out: list[tuple[str, list[int]]] = []
        vocab = len(self.tokenizer)
        for p in prompts:
            if isinstance(p, str):
                out.append((p, self._tokenize(p, special=True)))
            elif all(isinstance(t, int) and 0 <= t < vocab for t in p):
                out.append((self.tokenizer.decode(p), list(p)))
            else:
                raise InvalidInput(f"prompt: token ids must be in [0, {vocab})")
        return out

    def _log(self, request_id: str, prompt_ids: list[int]) -> None:
        if self.log_requests:
            text = self.tokenizer.decode(prompt_ids)
            if self.max_log_len is not None:
                text = text[: self.max_log_len]
            logger.info("request %s: %d prompt tokens: %r", request_id, len(prompt_ids), text)

    # -- engine output -> text ---------------------------------------------------------------

    async def _pieces(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[Step]:
        """The engine's steps with stop strings applied (the last step has the reason)."""
        scanner = StopScanner(options.stop)
        steps = self.generation_engine.generate(prompt_ids, options, request_id)
        tokens, reason, text = 0, "stop", ""
        try:
            async for step in steps:
                tokens = step.tokens
                text = scanner.feed(step.text)
                if scanner.stopped:
                    yield Step(text, tokens, "stop")
                    return
                if step.finish_reason is not None:
                    reason = step.finish_reason
                    break
                if text:
                    yield Step(text, tokens)
                text = ""
            yield Step(text + scanner.flush(), tokens, reason)
        finally:
            await steps.aclose()  # type: ignore[attr-defined]

    async def _run(self, prompt_ids: list[int], options: SamplingOptions, rid: str) -> _Outcome:
        outcome = _Outcome()
        parts: list[str] = []
        async for step in self._pieces(prompt_ids, options, rid):
            parts.append(step.text)
            outcome.tokens = step.tokens
            if step.finish_reason is not None:
                outcome.finish_reason = step.finish_reason
        outcome.text = "".join(parts)
        return outcome

    # -- completions -------------------------------------------------------------------------

    async def create_completion(
        self, request: CompletionRequest
    ) -> CompletionResponse | AsyncIterator[CompletionChunk]:
        if request.best_of is not None and request.best_of != 1:
            raise InvalidInput("best_of: only 1 is supported")
        if request.echo and self.encoder_decoder:
            raise InvalidInput("echo: not supported by encoder-decoder models")
        prompts = self._completion_prompts(request)
        rid = f"cmpl-{generate_uuid()}"
        model = request.model or self.name
        jobs = [
            (
                text,
                ids,
                self._options(request, len(ids), request.max_tokens, DEFAULT_COMPLETION_TOKENS),
            )
            for text, ids in prompts
        ]
        for _, ids, _ in jobs:
            self._log(rid, ids)
        if request.stream:
            if len(jobs) != 1:
                raise InvalidInput("prompt: a streamed completion takes one prompt")
            text, ids, options = jobs[0]
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return self._stream_completion(rid, model, text if request.echo else "", ids,
                                           options, include_usage)  # fmt: skip
        outcomes = await asyncio.gather(
            *(self._run(ids, options, f"{rid}-{i}") for i, (_, ids, options) in enumerate(jobs))
        )
        prompt_tokens = sum(len(ids) for _, ids, _ in jobs)
        completion_tokens = sum(o.tokens for o in outcomes)
        choices = [
            CompletionChoice(
                index=i,
                text=(jobs[i][0] if request.echo else "") + o.text,
                finish_reason=o.finish_reason,
            )
            for i, o in enumerate(outcomes)
        ]
        return CompletionResponse(
            id=rid,
            model=model,
            choices=choices,
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

    async def _stream_completion(
        self, rid: str, model: str, echo: str, ids: list[int], options: SamplingOptions,
        include_usage: bool,
    ) -> AsyncIterator[CompletionChunk]:  # fmt: skip
        created = int(time.time())
        tokens = 0
        if echo:
            yield CompletionChunk(id=rid, model=model, created=created,
                                  choices=[CompletionChoice(index=0, text=echo)])  # fmt: skip
        async for step in self._pieces(ids, options, rid):
            tokens = step.tokens
            choice = CompletionChoice(index=0, text=step.text, finish_reason=step.finish_reason)
            yield CompletionChunk(id=rid, model=model, created=created, choices=[choice])
        if include_usage:
            usage = Usage(prompt_tokens=len(ids), completion_tokens=tokens,
                          total_tokens=len(ids) + tokens)  # fmt: skip
            yield CompletionChunk.usage_only(rid, model, usage, created)

    # -- chat --------------------------------------------------------------------------------

    async def create_chat_completion(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionChunk]:
        ids = self._chat_prompt(request)
        max_tokens = request.max_completion_tokens or request.max_tokens
        options = self._options(request, len(ids), max_tokens, None)
        rid = f"chatcmpl-{generate_uuid()}"
        model = request.model or self.name
        self._log(rid, ids)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return self._stream_chat(rid, model, ids, options, include_usage)
        outcome = await self._run(ids, options, rid)
        return ChatCompletionResponse(
            id=rid,
            model=model,
            choices=[
                ChatChoice(
                    index=0,
                    message=ResponseMessage(content=outcome.text),
                    finish_reason=outcome.finish_reason,
                )
            ],
            usage=Usage(
                prompt_tokens=len(ids),
                completion_tokens=outcome.tokens,
                total_tokens=len(ids) + outcome.tokens,
            ),
        )

    async def _stream_chat(
        self, rid: str, model: str, ids: list[int], options: SamplingOptions, include_usage: bool
    ) -> AsyncIterator[ChatCompletionChunk]:
        created = int(time.time())

        def chunk(delta: Delta, finish_reason: str | None = None) -> ChatCompletionChunk:
            choice = ChatChunkChoice(index=0, delta=delta, finish_reason=finish_reason)
            return ChatCompletionChunk(id=rid, model=model, created=created, choices=[choice])

        # The first chunk names the role, as OpenAI and vLLM send it.
        yield chunk(Delta(role="assistant", content=""))
        tokens = 0
        async for step in self._pieces(ids, options, rid):
            tokens = step.tokens
            if step.text or step.finish_reason is None:
                yield chunk(Delta(content=step.text))
            if step.finish_reason is not None:
                yield chunk(Delta(), step.finish_reason)
        if include_usage:
            usage = Usage(prompt_tokens=len(ids), completion_tokens=tokens,
                          total_tokens=len(ids) + tokens)  # fmt: skip
            yield ChatCompletionChunk.usage_only(rid, model, usage, created)
