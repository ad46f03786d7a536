"""The runtime's command line (KServe's huggingfaceserver flags, same names and defaults) and
the decisions taken from it: which backend, which dtype, which context length, which flags
go to vLLM. Pure: nothing here imports torch, transformers or vllm.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wharf_model_server.runtimes.huggingface.task import MLTask, is_generative

# `modelFormat` names this runtime serves (KServe: `huggingface`; its vLLM runtime: `vLLM`).
MODEL_FORMATS = frozenset({"huggingface", "vllm"})
BACKENDS = ("auto", "huggingface", "vllm")
DTYPES = ("auto", "float16", "float32", "bfloat16", "float", "half")
DEFAULT_MODEL_DIR = "/mnt/models"
ALLOW_LONG_MAX_MODEL_LEN = "ALLOW_LONG_MAX_MODEL_LEN"
# When a config.json names no context length (KServe's and vLLM's fallback).
DEFAULT_MAX_MODEL_LEN = 2048


def _store_true(p: argparse._ActionsContainer, *names: str, help: str) -> None:
    p.add_argument(*names, action="store_true", default=False, help=help)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """KServe's huggingfaceserver flags, plus the vLLM engine flags KServe users set most."""
    g = p.add_argument_group("huggingface runtime (--model_format huggingface)")
    g.add_argument("--model_id", default=None, help="a Hugging Face model id (instead of a dir)")
    g.add_argument("--model_revision", default=None, help="the model's revision")
    g.add_argument("--tokenizer_revision", default=None, help="the tokenizer's revision")
    g.add_argument(
        "--max_model_len", "--max-model-len", "--max_length", dest="max_model_len", type=int,
        default=None, help="longest sequence in tokens (default: the model's own)",
    )  # fmt: skip
    _store_true(g, "--disable_lower_case", help="keep the tokenizer's case")
    _store_true(g, "--disable_special_tokens", help="tokenize without special tokens")
    _store_true(g, "--trust_remote_code", help="allow models and tokenizers with custom code")
    g.add_argument(
        "--tensor_input_names", default=None, type=lambda s: s.split(","),
        help="accepted (KServe: inputs sent to a predictor_host)",
    )  # fmt: skip
    g.add_argument("--backend", default="auto", choices=BACKENDS, help="engine to load with")
    g.add_argument(
        "--task", default=None,
        help="sequence_classification, token_classification, fill_mask, text_generation, "
        "text2text_generation or text_embedding (default: from the architecture)",
    )  # fmt: skip
    g.add_argument(
        "--dtype", default="auto", choices=DTYPES,
        help="weights' dtype (auto: the config's, else float32 on CPU, float16 on GPU)",
    )  # fmt: skip
    _store_true(g, "--return_token_type_ids", help="accepted (KServe: sent to predictor_host)")
    _store_true(g, "--return_offsets_mapping", help="token classification: character offsets")
    out = g.add_mutually_exclusive_group()
    _store_true(out, "--return_probabilities", help="classification: probabilities")
    _store_true(out, "--return_raw_logits", help="classification: raw logits")
    _store_true(g, "--disable_log_requests", help="do not log prompts")
    g.add_argument(
        "--max_log_len", "--max-log-len", dest="max_log_len", type=int, default=None,
        help="characters of a prompt logged (default: all)",
    )  # fmt: skip
    # vLLM's engine flags that KServe's manifests and docs use; every other vLLM engine flag
    # (`--enforce-eager`, `--max-num-seqs`, ...) is passed to vLLM as it is given.
    g.add_argument(
        "--tensor_parallel_size", "--tensor-parallel-size", dest="tensor_parallel_size",
        type=int, default=None, help="vLLM: tensor-parallel ranks",
    )  # fmt: skip
    g.add_argument(
        "--pipeline_parallel_size", "--pipeline-parallel-size", dest="pipeline_parallel_size",
        type=int, default=None, help="vLLM: pipeline stages",
    )  # fmt: skip
    g.add_argument(
        "--gpu_memory_utilization", "--gpu-memory-utilization", dest="gpu_memory_utilization",
        type=float, default=None, help="vLLM: fraction of GPU memory for the engine",
    )  # fmt: skip
    g.add_argument(
        "--served_model_name", "--served-model-name", dest="served_model_name", nargs="+",
        default=None, help="vLLM's name for the model (the first one replaces --model_name)",
    )  # fmt: skip


def model_source(args: argparse.Namespace) -> str:
    """`--model_id` when given (a hub id or a path), else `--model_dir` (KServe's order)."""
    if args.model_id:
        return str(args.model_id)
    return str(args.model_dir or DEFAULT_MODEL_DIR)


def served_name(args: argparse.Namespace) -> str:
    if args.served_model_name:
        return str(args.served_model_name[0])
    return str(args.model_name)


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "vllm" or "huggingface"
    reason: str


def choose_backend(
    flag: str,
    task: MLTask,
    architectures: Sequence[str],
    vllm_architectures: frozenset[str] | None,
) -> BackendChoice:
    """KServe's rule: vLLM when the flag allows it, vLLM imports (`vllm_architectures` is not
    None) and it supports every architecture of the model. One difference: only text generation
    goes to vLLM, because V1/V2 predict for classification, fill-mask and embeddings is served
    by the transformers backend alone (KServe's vLLM model answers OpenAI routes only)."""
    if flag == "huggingface":
        return BackendChoice("huggingface", "--backend huggingface")
    if flag == "vllm":
        if vllm_architectures is None:
            raise ValueError("--backend vllm, but vllm cannot be imported in this environment")
        if task is not MLTask.text_generation:
            raise ValueError(
                f"--backend vllm serves text_generation here, not {task.value}: "
                "use --backend huggingface (or auto)"
            )
        return BackendChoice("vllm", "--backend vllm")
    if task is not MLTask.text_generation:
        return BackendChoice("huggingface", f"{task.value} is served by transformers")
    if vllm_architectures is None:
        return BackendChoice("huggingface", "vllm is not installed")
    missing = [a for a in architectures if a not in vllm_architectures]
    if missing or not architectures:
        return BackendChoice("huggingface", f"vLLM does not support {missing or 'the model'}")
    return BackendChoice("vllm", f"vLLM supports {', '.join(architectures)}")


def hf_dtype_name(flag: str, config_dtype: str | None, cuda: bool) -> str:
    """The torch dtype name for transformers; `float` and `half` are aliases.

    `auto` on CPU: the config's dtype, else float32. `auto` on a GPU: float16 (KServe's GPU
    default, which vLLM also takes for a float32 checkpoint, so both backends compute alike),
    except that a checkpoint saved in bfloat16 or float16 keeps its own half type: casting a
    bfloat16 model to float16 can overflow."""
    aliases = {"float": "float32", "half": "float16"}
    if flag != "auto":
        return aliases.get(flag, flag)
    configured = (
        aliases.get(config_dtype, config_dtype).removeprefix("torch.") if config_dtype else None
    )
    if not cuda:
        return configured or "float32"
    return configured if configured in ("float16", "bfloat16") else "float16"


@dataclass(frozen=True)
class Placement:
    """Where the transformers backend puts a model: `device` is where inputs are made (the
    model's first device), `device_map` what `from_pretrained` gets (None: load on the CPU,
    then move the model to `device`)."""

    device: str
    device_map: str | None


def choose_placement(cuda: bool, gpus: int, accelerate: bool, splittable: bool) -> Placement:
    """KServe's rule, made explicit: the GPU when torch sees one, else the CPU.

    On several GPUs a model whose class names modules that must not be split
    (`_no_split_modules`: `splittable`) is spread over them with `device_map="auto"`, as KServe
    does. On one GPU the weights load straight onto it (`device_map="cuda"`): unlike KServe's
    `auto` there, a model larger than the GPU fails to load instead of running from CPU memory.
    `device_map` needs accelerate; without it the model loads on the CPU and is moved."""
    if not cuda or gpus < 1:
        return Placement("cpu", None)
    if not accelerate:
        return Placement("cuda", None)
    if gpus > 1 and splittable:
        return Placement("cuda", "auto")
    return Placement("cuda", "cuda")


_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)


def max_model_len(config: dict[str, Any], requested: int | None) -> int:
    """The context length: the smallest of the config's length keys (as vLLM and KServe
    derive it); a requested length above it is refused unless ALLOW_LONG_MAX_MODEL_LEN=1."""
    lengths = [int(config[k]) for k in _LENGTH_KEYS if isinstance(config.get(k), int | float)]
    derived = min(lengths) if lengths else None
    if requested is None:
        return derived or DEFAULT_MAX_MODEL_LEN
    if requested <= 0:
        raise ValueError(f"--max_model_len must be positive, got {requested}")
    too_long = derived is not None and requested > derived
    if too_long and os.environ.get(ALLOW_LONG_MAX_MODEL_LEN) != "1":
        raise ValueError(
            f"--max_model_len {requested} is above the model's {derived} (config.json); "
            f"set {ALLOW_LONG_MAX_MODEL_LEN}=1 to allow it"
        )
    return requested


def vllm_engine_argv(args: argparse.Namespace, source: str, extra: Sequence[str]) -> list[str]:
    """The vLLM engine command line: the model, the flags this runtime names, then the flags
    it does not know, passed on with `_` in their names turned into `-` (vLLM's spelling)."""
    argv = ["--model", source, "--served-model-name", served_name(args)]
    if args.model_revision:
        argv += ["--revision", args.model_revision]
    if args.tokenizer_revision:
        argv += ["--tokenizer-revision", args.tokenizer_revision]
    if args.dtype != "auto":
        argv += ["--dtype", args.dtype]
    if args.max_model_len is not None:
        argv += ["--max-model-len", str(args.max_model_len)]
    if args.trust_remote_code:
        argv.append("--trust-remote-code")
    for flag, value in (
        ("--tensor-parallel-size", args.tensor_parallel_size),
        ("--pipeline-parallel-size", args.pipeline_parallel_size),
        ("--gpu-memory-utilization", args.gpu_memory_utilization),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + [dashed(a) for a in extra]


def dashed(arg: str) -> str:
    """`--enforce_eager=x` -> `--enforce-eager=x`; values and short flags are left alone."""
    if not arg.startswith("--"):
        return arg
    name, sep, value = arg.partition("=")
    return name.replace("_", "-") + sep + value


def wants_huggingface(model_format: str | None) -> bool:
    return (model_format or "").strip().lower() in MODEL_FORMATS


def is_generative_task(task: MLTask) -> bool:
    return is_generative(task)
