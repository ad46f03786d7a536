"""Builds the model the command line asks for: reads the model's config, picks the task and the
backend (`options`, `task`), loads the tokenizer and weights. Called by `wharf-model-server
--model_format huggingface` (or `vllm`)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from wharf_model_server.model import BaseKServeModel
from wharf_model_server.runtimes.huggingface import options as opts
from wharf_model_server.runtimes.huggingface.task import MLTask, choose_task, is_generative

logger = logging.getLogger("wharf.huggingface")


def _check_source(source: str, from_hub: bool) -> None:
    if not from_hub and not os.path.isdir(source):
        what = "is not a directory" if os.path.exists(source) else "does not exist"
        raise ValueError(f"--model_dir {source} {what}")


def load_model(args: argparse.Namespace, extra: Sequence[str] = ()) -> BaseKServeModel:
    """The loaded model; `extra` are the flags the server does not know (vLLM's, passed on)."""
    source = opts.model_source(args)
    _check_source(source, from_hub=bool(args.model_id))
    try:
        import transformers
    except ImportError as exc:
        raise ValueError(
            f"the huggingface runtime needs torch and transformers ({exc}): run it with the "
            "LLM engine environment's python (scripts/install-llm-engine prints it)"
        ) from exc
    config = transformers.AutoConfig.from_pretrained(
        source, revision=args.model_revision, trust_remote_code=args.trust_remote_code
    )
    config_dict: dict[str, Any] = config.to_dict()
    architectures = list(config_dict.get("architectures") or [])
    task = choose_task(args.task, architectures)
    name = opts.served_name(args)
    vllm_archs = None
    if args.backend != "huggingface" and task is MLTask.text_generation:
        from wharf_model_server.runtimes.huggingface.vllm_engine import supported_architectures

        vllm_archs = supported_architectures()
    choice = opts.choose_backend(args.backend, task, architectures, vllm_archs)
    logger.info("model %s: task %s on %s (%s)", name, task.value, choice.backend, choice.reason)
    max_len = opts.max_model_len(config_dict, args.max_model_len)
    log_requests = not args.disable_log_requests
    if not is_generative(task):
        from wharf_model_server.runtimes.huggingface.encoder import HuggingfaceEncoderModel

        encoder = HuggingfaceEncoderModel(
            name, source, task, _dtype(args.dtype, config_dict), max_len,
            revision=args.model_revision, tokenizer_revision=args.tokenizer_revision,
            do_lower_case=not args.disable_lower_case,
            add_special_tokens=not args.disable_special_tokens,
            trust_remote_code=args.trust_remote_code,
            return_probabilities=args.return_probabilities,
            return_raw_logits=args.return_raw_logits,
            return_offsets_mapping=args.return_offsets_mapping,
            log_requests=log_requests, max_log_len=args.max_log_len,
        )  # fmt: skip
        encoder.load()
        return encoder
    from wharf_model_server.runtimes.huggingface.generative import HuggingfaceGenerativeModel

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        source, revision=args.tokenizer_revision, trust_remote_code=args.trust_remote_code
    )
    engine: Any
    if choice.backend == "vllm":
        from wharf_model_server.runtimes.huggingface.vllm_engine import VLLMEngine

        engine = VLLMEngine(opts.vllm_engine_argv(args, source, extra))
    else:
        if extra:
            logger.warning("ignoring arguments the transformers backend does not use: %s", extra)
        engine = _transformers_engine(args, source, task, config_dict, tokenizer)
    generative = HuggingfaceGenerativeModel(
        name, tokenizer, engine, max_len,
        encoder_decoder=task is MLTask.text2text_generation,
        log_requests=log_requests, max_log_len=args.max_log_len,
    )  # fmt: skip
    generative.load()
    return generative


def _dtype(flag: str, config: dict[str, Any]) -> str:
    import torch

    configured = config.get("dtype") or config.get("torch_dtype")
    return opts.hf_dtype_name(flag, str(configured) if configured else None,
                              torch.cuda.is_available())  # fmt: skip


def _transformers_engine(
    args: argparse.Namespace, source: str, task: MLTask, config: dict[str, Any], tokenizer: Any
) -> Any:
    import transformers

    from wharf_model_server.runtimes.huggingface.hf_engine import TransformersEngine
    from wharf_model_server.runtimes.huggingface.weights import detect_placement, load_weights

    cls = (
        transformers.AutoModelForSeq2SeqLM
        if task is MLTask.text2text_generation
        else transformers.AutoModelForCausalLM
    )
    model = load_weights(
        cls,
        source,
        dtype=_dtype(args.dtype, config),
        placement=detect_placement(cls, source, args.trust_remote_code),
        revision=args.model_revision,
        trust_remote_code=args.trust_remote_code,
    )
    return TransformersEngine(model, tokenizer, encoder_decoder=task is MLTask.text2text_generation)
