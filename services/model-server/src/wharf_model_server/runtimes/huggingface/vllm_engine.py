"""Generation on vLLM, in this process: vLLM's `AsyncLLM` with continuous batching, fed token
ids (the prompt or the chat template's output, tokenized by this runtime) and driven by this
runtime's OpenAI layer (`generative.py`), so both backends answer alike.

The engine's arguments are vLLM's own command line (`options.vllm_engine_argv`): every vLLM
engine flag works as it does for `vllm serve`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from wharf_model_server.runtimes.huggingface.generative import SamplingOptions, Step

logger = logging.getLogger("wharf.huggingface")


def supported_architectures() -> frozenset[str] | None:
    """The architectures vLLM serves, or None when vllm does not import here."""
    try:
        from vllm.model_executor.models import ModelRegistry
    except ImportError:
        return None
    return frozenset(ModelRegistry.get_supported_archs())


def engine_args(argv: Sequence[str]) -> Any:
    """vLLM's AsyncEngineArgs from a command line; a flag vLLM does not know is an error that
    names it (a typo must not be ignored silently on the path that loads the model)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser(prog="vllm engine"))
    namespace, unknown = parser.parse_known_args(list(argv))
    if unknown:
        logger.warning("vLLM does not know these arguments; ignored: %s", unknown)
    return AsyncEngineArgs.from_cli_args(namespace)


class VLLMEngine:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.llm: Any = None

    async def start(self) -> None:
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        args = engine_args(self.argv)
        logger.info("starting vLLM: %s", " ".join(self.argv))
        self.llm = AsyncLLM.from_engine_args(args, usage_context=UsageContext.OPENAI_API_SERVER)

    def stop(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None

    @property
    def max_model_len(self) -> int | None:
        if self.llm is None:
            return None
        return int(self.llm.model_config.max_model_len)

    def _params(self, options: SamplingOptions) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {
            "n": 1,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "seed": options.seed,
            "stop": list(options.stop) or None,
            "ignore_eos": options.ignore_eos,
        }
        if options.top_k is not None:
            kwargs["top_k"] = options.top_k
        for key in ("presence_penalty", "frequency_penalty", "repetition_penalty"):
            value = getattr(options, key)
            if value is not None:
                kwargs[key] = value
        return SamplingParams(**kwargs)

    async def generate(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[Step]:
        if self.llm is None:
            raise RuntimeError("the vLLM engine is not started")
        from vllm.inputs import TokensPrompt

        sent = ""
        stream = self.llm.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), self._params(options), request_id
        )
        try:
            async for output in stream:
                completion = output.outputs[0]
                text = completion.text
                piece = text[len(sent) :] if text.startswith(sent) else ""
                sent = text if piece else sent
                reason = completion.finish_reason if output.finished else None
                if piece or reason is not None:
                    yield Step(piece, len(completion.token_ids), reason)
        finally:
            # Closing vLLM's generator aborts the request when it has not finished.
            await stream.aclose()
