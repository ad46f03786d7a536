"""A tiny T5 (encoder-decoder, `T5ForConditionalGeneration`) built locally for tests.

`build_tiny_t5(dest)` writes a model folder that transformers loads with
`AutoModelForSeq2SeqLM` / `AutoTokenizer`: `config.json` (2 encoder and 2 decoder blocks,
d_model 64, 2 heads of 32, T5 v1.1's gated-GELU feed-forward), seeded random weights in `model.safetensors`, and the tiny Llama's
byte-level BPE tokenizer (`wharf_e2e.tinyllm`) with T5's conventions: no BOS, EOS appended to
every input, the pad token starts the decoder. Nothing is downloaded, no torch is needed, and
the same call always writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import processors

from wharf_e2e.tinyllm import EOS, PAD, bpe_tokenizer

D_MODEL = 64
D_KV = 32
HEADS = 2
D_FF = 128
LAYERS = 2
BUCKETS = 32
MAX_POSITIONS = 512
SEED = 4321
# Output scales of the sublayers (times 1/sqrt(fan-in)), found by trying: a random T5 with
# even scales falls into repeating one token, because the tied LM head favours whatever the
# residual stream holds most. A strong gated feed-forward (its product of two projections has no
# constant direction, unlike ReLU's) and a stronger cross-attention make the answers vary with
# the prompt and from token to token.
EMBED_STD = 2.0
SELF_ATTENTION_SCALE = 1.0
CROSS_ATTENTION_SCALE = 2.0
FEED_FORWARD_SCALE = 16.0


def _weights(vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    inner = HEADS * D_KV
    # T5 ties the embeddings and the LM head (transformers 5 always does), and scales the
    # decoder's output by d_model**-0.5 before it.
    shared = normal((vocab, D_MODEL), EMBED_STD)
    tensors: dict[str, np.ndarray] = {
        "shared.weight": shared,
        # the tied copies, written out so every loader version finds them
        "encoder.embed_tokens.weight": shared,
        "decoder.embed_tokens.weight": shared,
        "lm_head.weight": shared,
        "encoder.final_layer_norm.weight": np.ones(D_MODEL, dtype=np.float32),
        "decoder.final_layer_norm.weight": np.ones(D_MODEL, dtype=np.float32),
    }

    def attention(prefix: str, relative: bool, out_scale: float = SELF_ATTENTION_SCALE) -> None:
        for name in ("q", "k", "v"):
            tensors[f"{prefix}.{name}.weight"] = normal((inner, D_MODEL), 1.0 / np.sqrt(D_MODEL))
        tensors[f"{prefix}.o.weight"] = normal((D_MODEL, inner), out_scale / np.sqrt(inner))
        if relative:  # only the first block of each stack has the position buckets
            tensors[f"{prefix}.relative_attention_bias.weight"] = normal((BUCKETS, HEADS), 0.5)

    def feed_forward(prefix: str) -> None:
        for gate in ("wi_0", "wi_1"):
            tensors[f"{prefix}.DenseReluDense.{gate}.weight"] = normal(
                (D_FF, D_MODEL), 1 / np.sqrt(D_MODEL)
            )
        tensors[f"{prefix}.DenseReluDense.wo.weight"] = normal(
            (D_MODEL, D_FF), FEED_FORWARD_SCALE / np.sqrt(D_FF)
        )
        tensors[f"{prefix}.layer_norm.weight"] = np.ones(D_MODEL, dtype=np.float32)

    for i in range(LAYERS):
        block = f"encoder.block.{i}.layer"
        attention(f"{block}.0.SelfAttention", relative=i == 0)
        tensors[f"{block}.0.layer_norm.weight"] = np.ones(D_MODEL, dtype=np.float32)
        feed_forward(f"{block}.1")
        block = f"decoder.block.{i}.layer"
        attention(f"{block}.0.SelfAttention", relative=i == 0)
        tensors[f"{block}.0.layer_norm.weight"] = np.ones(D_MODEL, dtype=np.float32)
        attention(f"{block}.1.EncDecAttention", relative=False, out_scale=CROSS_ATTENTION_SCALE)
        tensors[f"{block}.1.layer_norm.weight"] = np.ones(D_MODEL, dtype=np.float32)
        feed_forward(f"{block}.2")
    return tensors


def _config(vocab: int, pad_id: int, eos_id: int) -> dict[str, Any]:
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": vocab,
        "d_model": D_MODEL,
        "d_kv": D_KV,
        "d_ff": D_FF,
        "num_layers": LAYERS,
        "num_decoder_layers": LAYERS,
        "num_heads": HEADS,
        "relative_attention_num_buckets": BUCKETS,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.0,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True,
        "n_positions": MAX_POSITIONS,
        "pad_token_id": pad_id,
        "eos_token_id": eos_id,
        "decoder_start_token_id": pad_id,
        "torch_dtype": "float32",
    }


def build_tiny_t5(dest: Path) -> Path:
    """Write the tiny T5 into `dest` (created; must be empty or absent) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"build_tiny_t5: {dest} is not empty")
    tokenizer = bpe_tokenizer()
    eos_id = tokenizer.token_to_id(EOS)
    pad_id = tokenizer.token_to_id(PAD)
    if eos_id is None or pad_id is None:
        raise RuntimeError("the tiny tokenizer lacks its EOS or pad token")
    # T5's inputs end with EOS and have no BOS.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    tokenizer.save(str(dest / "tokenizer.json"))
    vocab = tokenizer.get_vocab_size()
    save_file(_weights(vocab), str(dest / "model.safetensors"), metadata={"format": "pt"})
    files: dict[str, dict[str, Any]] = {
        "config.json": _config(vocab, pad_id, eos_id),
        "generation_config.json": {
            "decoder_start_token_id": pad_id,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
        },
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": EOS,
            "pad_token": PAD,
            "model_max_length": MAX_POSITIONS,
            "clean_up_tokenization_spaces": False,
        },
        "special_tokens_map.json": {"eos_token": EOS, "pad_token": PAD},
    }
    for name, content in files.items():
        (dest / name).write_text(json.dumps(content, indent=2) + "\n")
    return dest
