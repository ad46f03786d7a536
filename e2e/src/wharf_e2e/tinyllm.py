"""A tiny Llama-architecture causal LM, built locally for tests: nothing is downloaded.

`build_tiny_llama(dest)` writes a Hugging Face model folder that vLLM (CPU build) and
transformers load: `config.json` (LlamaForCausalLM, 2 layers, hidden 128, 2 heads of 64), seeded
random weights in `model.safetensors`, and a byte-level BPE tokenizer trained on a small built-in
corpus, with a chat template, so `/v1/chat/completions` and `apply_chat_template` work.

It runs in the workspace environment, which has no torch: weights come from numpy. The output is
a function of the constants below only (same seed, same corpus), so two builds are identical.
vLLM's CPU attention needs a head size of at least 32 and a multiple of 16; 64 is what the
measurements in the vLLM reference used.

`build_tiny_llama(dest, SMALL)` writes a larger model of the same kind (8 layers, hidden 1024,
about 100M parameters, 400 MB): its decode step takes about 10 ms on one CPU core of the
benchmark machine, about what a model of a few billion parameters takes on a GPU, so a proxy's
cost can be measured on first-token times like a real model's (bench/llm_worker.py `--model`).
The tests use the tiny one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HIDDEN = 128
HEADS = 2
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 256
LAYERS = 2
MAX_POSITIONS = 2048
VOCAB_TARGET = 512
SEED = 1234


@dataclass(frozen=True, slots=True)
class LlamaShape:
    """The sizes of a built model (key and value heads as many as query heads)."""

    hidden: int
    heads: int
    intermediate: int
    layers: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def check(self) -> None:
        """Raise ValueError naming the size vLLM's CPU attention or the layout cannot take."""
        if min(self.hidden, self.heads, self.intermediate, self.layers) < 1:
            raise ValueError(f"{self}: every size must be at least 1")
        if self.hidden % self.heads:
            raise ValueError(f"{self}: hidden must be a multiple of heads")
        if self.head_dim < 32 or self.head_dim % 16:
            raise ValueError(
                f"{self}: hidden / heads is {self.head_dim}; vLLM's CPU attention needs a head "
                "size of at least 32 and a multiple of 16"
            )


TINY = LlamaShape(hidden=HIDDEN, heads=HEADS, intermediate=INTERMEDIATE, layers=LAYERS)
SMALL = LlamaShape(hidden=1024, heads=16, intermediate=2816, layers=8)

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_TOKENS)

# Each message is `<|role|>` newline content `<|end|>` newline; the generation prompt opens the
# assistant's turn. The template starts with BOS, as Llama 3's does: chat prompts are tokenized
# without special tokens, plain prompts get BOS from the tokenizer's post-processor.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_TEXT = (
    "the model serves tokens to every client that asks a question about ports queues and "
    "storage while the router sends requests to prefill and decode workers over a fast link "
    "a kernel computes attention for each layer then the cache keeps keys and values for later "
    "steps so decode reads them instead of computing the prompt again; wharf runs on one "
    "machine or on a cluster with the same manifests; hello world, how are you today? "
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and names alpha beta gamma delta epsilon"
)


def _corpus() -> list[str]:
    """Deterministic sentences over a small vocabulary: enough for ~500 BPE merges."""
    words = _TEXT.split()
    rng = np.random.default_rng(SEED)
    lines = [_TEXT]
    for _ in range(2000):
        count = int(rng.integers(4, 16))
        picks = rng.integers(0, len(words), size=count)
        lines.append(" ".join(words[int(i)] for i in picks).capitalize() + ".")
    return lines


def _train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    bos_id = _token_id(tokenizer, BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def bpe_tokenizer() -> Tokenizer:
    """The tiny model's byte-level BPE (the same vocabulary and ids every time), for other tiny
    models that need a tokenizer built offline; callers may replace its post-processor."""
    return _train_tokenizer()


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise RuntimeError(f"the tiny tokenizer lacks the special token {token}")
    return int(token_id)


def _weights(vocab: int, shape: LlamaShape) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    # Scales chosen so logits spread out (std ~2): greedy choices are not near-ties, so the same
    # prompt gives the same text whichever way the KV cache was produced (local or transferred).
    hidden, inter, attn = shape.hidden, shape.intermediate, shape.heads * shape.head_dim
    proj = 1.0 / np.sqrt(hidden)
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": normal((vocab, hidden), 1.0),
        "model.norm.weight": np.ones(hidden, dtype=np.float32),
        "lm_head.weight": normal((vocab, hidden), 0.2),
    }
    for layer in range(shape.layers):
        prefix = f"model.layers.{layer}"
        tensors.update(
            {
                f"{prefix}.input_layernorm.weight": np.ones(hidden, dtype=np.float32),
                f"{prefix}.post_attention_layernorm.weight": np.ones(hidden, dtype=np.float32),
                f"{prefix}.self_attn.q_proj.weight": normal((attn, hidden), proj),
                f"{prefix}.self_attn.k_proj.weight": normal((attn, hidden), proj),
                f"{prefix}.self_attn.v_proj.weight": normal((attn, hidden), proj),
                f"{prefix}.self_attn.o_proj.weight": normal((hidden, attn), proj),
                f"{prefix}.mlp.gate_proj.weight": normal((inter, hidden), proj),
                f"{prefix}.mlp.up_proj.weight": normal((inter, hidden), proj),
                f"{prefix}.mlp.down_proj.weight": normal((hidden, inter), 1.0 / np.sqrt(inter)),
            }
        )
    return tensors


def _config(vocab: int, bos_id: int, eos_id: int, shape: LlamaShape) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "vocab_size": vocab,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }


def build_tiny_llama(dest: Path, shape: LlamaShape = TINY) -> Path:
    """Write the tiny model (or one of another `shape`) into `dest` (created; must be empty or
    absent) and return it."""
    shape.check()
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"build_tiny_llama: {dest} is not empty")
    tokenizer = _train_tokenizer()
    vocab = tokenizer.get_vocab_size()
    bos_id = _token_id(tokenizer, BOS)
    eos_id = _token_id(tokenizer, EOS)
    tokenizer.save(str(dest / "tokenizer.json"))
    save_file(_weights(vocab, shape), str(dest / "model.safetensors"), metadata={"format": "pt"})
    files: dict[str, dict[str, Any]] = {
        "config.json": _config(vocab, bos_id, eos_id, shape),
        "generation_config.json": {"bos_token_id": bos_id, "eos_token_id": eos_id},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "add_bos_token": True,
            "model_max_length": MAX_POSITIONS,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
        "special_tokens_map.json": {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD},
    }
    for name, content in files.items():
        (dest / name).write_text(json.dumps(content, indent=2) + "\n")
    return dest


LORA_RANK = 8
LORA_TARGETS = ("q_proj", "v_proj")


def build_tiny_lora(dest: Path, base: Path, seed: int = 7) -> Path:
    """Write a PEFT LoRA adapter for the tiny model into `dest` (created; empty or absent): rank
    8 on the attention's q and v projections, seeded random A and B. B is not zero (PEFT
    initialises it to zero), so the adapter changes the model's answers."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"build_tiny_lora: {dest} is not empty")
    rng = np.random.default_rng(seed)
    out_features = {"q_proj": HEADS * HEAD_DIM, "v_proj": KV_HEADS * HEAD_DIM}
    tensors: dict[str, np.ndarray] = {}
    for layer in range(LAYERS):
        for target in LORA_TARGETS:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            tensors[f"{prefix}.lora_A.weight"] = (
                rng.standard_normal((LORA_RANK, HIDDEN)) / np.sqrt(HIDDEN)
            ).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal(
                (out_features[target], LORA_RANK)
            ).astype(np.float32)
    save_file(tensors, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base),
        "r": LORA_RANK,
        "lora_alpha": 2 * LORA_RANK,
        "lora_dropout": 0.0,
        "target_modules": list(LORA_TARGETS),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
    }
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest
