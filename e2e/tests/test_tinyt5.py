"""The tiny T5 builder: deterministic, T5's token conventions, shapes its config names.
(transformers loading it and generating is services/model-server/tests/test_huggingface_text2text.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from wharf_e2e.tinyt5 import D_MODEL, LAYERS, build_tiny_t5


def test_two_builds_are_identical(tmp_path: Path) -> None:
    first = build_tiny_t5(tmp_path / "a")
    second = build_tiny_t5(tmp_path / "b")
    for name in sorted(p.name for p in first.iterdir()):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_inputs_end_with_eos_and_the_pad_token_starts_the_decoder(tmp_path: Path) -> None:
    folder = build_tiny_t5(tmp_path / "t5")
    config = json.loads((folder / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tokenizer.encode("hello world").ids
    assert ids[-1] == config["eos_token_id"] and len(ids) > 1
    assert config["decoder_start_token_id"] == config["pad_token_id"] != config["eos_token_id"]
    weights = load_file(str(folder / "model.safetensors"))
    assert weights["shared.weight"].shape == (config["vocab_size"], D_MODEL)
    assert f"decoder.block.{LAYERS - 1}.layer.1.EncDecAttention.q.weight" in weights


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_t5(tmp_path)
