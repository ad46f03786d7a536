"""The tiny Llama builder: a complete, loadable model folder, the same bytes every time.

vLLM loading it is shown by services/llm-worker/tests/test_vllm_worker.py (marker `vllm`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from wharf_e2e.tinyllm import (
    HEAD_DIM,
    HIDDEN,
    LAYERS,
    LORA_RANK,
    SMALL,
    LlamaShape,
    build_tiny_llama,
    build_tiny_lora,
)


def test_folder_has_a_llama_config_weights_and_tokenizer(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == HEAD_DIM >= 32
    assert config["hidden_size"] == config["num_attention_heads"] * config["head_dim"]
    weights = load_file(str(model / "model.safetensors"))
    assert weights["model.embed_tokens.weight"].shape == (config["vocab_size"], HIDDEN)
    assert weights["lm_head.weight"].shape == (config["vocab_size"], HIDDEN)
    assert sum(".self_attn.q_proj.weight" in name for name in weights) == LAYERS
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == config["vocab_size"]
    assert tokenizer.token_to_id("<|begin_of_text|>") == config["bos_token_id"]


def test_tokenizer_round_trips_and_adds_bos(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m")
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    encoding = tokenizer.encode("hello world, the router sends requests")
    assert encoding.tokens[0] == "<|begin_of_text|>"
    assert tokenizer.decode(encoding.ids) == "hello world, the router sends requests"
    # Special tokens in a rendered chat prompt are single tokens, not spelled out.
    chat = tokenizer.encode("<|user|>\nhi<|end|>\n", add_special_tokens=False)
    assert "<|user|>" in chat.tokens and "<|end|>" in chat.tokens


def test_chat_template_is_declared_for_transformers(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m")
    config = json.loads((model / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "add_generation_prompt" in config["chat_template"]
    assert config["eos_token"] == "<|end_of_text|>"


def test_two_builds_are_identical(tmp_path: Path) -> None:
    first = build_tiny_llama(tmp_path / "a")
    second = build_tiny_llama(tmp_path / "b")
    for name in sorted(p.name for p in first.iterdir()):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_llama(tmp_path)


def test_lora_adapter_matches_the_models_shapes(tmp_path: Path) -> None:
    base = build_tiny_llama(tmp_path / "m")
    adapter = build_tiny_lora(tmp_path / "lora", base)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == LORA_RANK
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    a = weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    b = weights["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert a.shape == (LORA_RANK, HIDDEN)
    assert b.shape == (HIDDEN, LORA_RANK)
    assert float(abs(b).sum()) > 0  # unlike a fresh PEFT adapter, it changes the answers


def test_another_shape_sizes_the_config_and_every_weight(tmp_path: Path) -> None:
    shape = LlamaShape(hidden=256, heads=4, intermediate=384, layers=3)
    model = build_tiny_llama(tmp_path / "m", shape)
    config = json.loads((model / "config.json").read_text())
    assert config["hidden_size"] == 256 and config["num_attention_heads"] == 4
    assert config["head_dim"] == 64
    assert (config["intermediate_size"], config["num_hidden_layers"]) == (384, 3)
    assert config["num_key_value_heads"] == 4
    weights = load_file(str(model / "model.safetensors"))
    assert sum(".self_attn.q_proj.weight" in name for name in weights) == 3
    assert weights["model.layers.2.self_attn.k_proj.weight"].shape == (256, 256)
    assert weights["model.layers.2.mlp.down_proj.weight"].shape == (256, 384)
    assert weights["lm_head.weight"].shape == (config["vocab_size"], 256)
    # the same tokenizer as the tiny model's: the benchmark's prompts tokenize alike
    tiny = build_tiny_llama(tmp_path / "tiny")
    assert (model / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()


def test_the_small_shape_is_one_vllm_on_cpu_takes() -> None:
    SMALL.check()
    assert SMALL.head_dim == 64 and SMALL.layers > LAYERS


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        (LlamaShape(hidden=100, heads=4, intermediate=64, layers=1), "head size"),
        (LlamaShape(hidden=128, heads=3, intermediate=64, layers=1), "multiple of heads"),
        (LlamaShape(hidden=128, heads=2, intermediate=64, layers=0), "at least 1"),
    ],
)
def test_a_shape_vllm_cannot_load_is_refused_before_anything_is_written(
    tmp_path: Path, shape: LlamaShape, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        build_tiny_llama(tmp_path / "m", shape)
    assert not (tmp_path / "m").exists()
