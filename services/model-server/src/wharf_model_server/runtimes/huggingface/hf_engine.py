"""Generation on transformers, for models vLLM does not serve (or `--backend huggingface`).

As in KServe's huggingfaceserver, one background thread runs `model.generate` for one request
at a time (no continuous batching); requests wait their turn in order. Tokens come back through
a streamer as they are made, are decoded incrementally on the event loop, and a request whose
client went away (or that hit a stop string) stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wharf_model_server.runtimes.huggingface.generative import SamplingOptions, Step

logger = logging.getLogger("wharf.huggingface")

_END = object()


class _Streamer:
    """transformers' streamer interface: `put(token ids)`, `end()`; hands them to the loop.
    The first `put` is the prompt (or the decoder's start token) and is skipped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.loop = loop
        self.queue = queue
        self.first = True

    def put(self, value: Any) -> None:
        if self.first:
            self.first = False
            return
        ids = [int(i) for i in value.reshape(-1).cpu().tolist()]
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ids)

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, _END)


class TransformersEngine:
    def __init__(self, model: Any, tokenizer: Any, encoder_decoder: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.encoder_decoder = encoder_decoder
        self._pool: ThreadPoolExecutor | None = None
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hf-generate")

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _generate(self, prompt_ids: list[int], options: SamplingOptions, streamer: _Streamer,
                  cancelled: threading.Event) -> None:  # fmt: skip
        import torch
        import transformers

        class Cancelled(transformers.StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                # On the ids' device: generate ORs this into a tensor there (a GPU's, on one).
                return torch.full(
                    (input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool,
                    device=input_ids.device,
                )  # fmt: skip

        sample = options.temperature > 0
        config: dict[str, Any] = {
            "max_new_tokens": options.max_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else next(iter(self.eos_ids), 0),
        }
        if sample:
            config.update(temperature=options.temperature, top_p=options.top_p)
            if options.top_k is not None:
                config["top_k"] = options.top_k
        else:
            config.update(temperature=None, top_p=None, top_k=None)
        if options.repetition_penalty is not None:
            config["repetition_penalty"] = options.repetition_penalty
        if options.ignore_eos:
            config["eos_token_id"] = None
        if options.seed is not None:
            transformers.set_seed(options.seed)
        inputs = torch.tensor([prompt_ids], device=self.model.device)
        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    generation_config=transformers.GenerationConfig(**config),
                    streamer=streamer,
                    stopping_criteria=transformers.StoppingCriteriaList([Cancelled()]),
                )
        finally:
            streamer.end()

    async def generate(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[Step]:
        if self._pool is None:
            raise RuntimeError("the generation engine is not started")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        streamer = _Streamer(loop, queue)
        future = loop.run_in_executor(
            self._pool, self._generate, prompt_ids, options, streamer, cancelled
        )
        ids: list[int] = []
        sent = ""
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                ids.extend(item)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                # A character cut in half by a token boundary waits for the next token.
                if text.endswith("\ufffd") or not text.startswith(sent):
                    continue
                if len(text) > len(sent):
                    piece, sent = text[len(sent) :], text
                    yield Step(piece, len(ids))
            await future  # raises what generate raised
            finished = True
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            rest = text[len(sent) :] if text.startswith(sent) else ""
            ended_on_eos = bool(ids) and ids[-1] in self.eos_ids and not options.ignore_eos
            reason = "length" if len(ids) >= options.max_tokens and not ended_on_eos else "stop"
            yield Step(rest, len(ids), reason)
        finally:
            if not finished:
                cancelled.set()
