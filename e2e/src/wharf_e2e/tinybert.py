"""A tiny BERT written locally for tests: config, WordPiece vocabulary and seeded weights.

Nothing is downloaded and no ML framework is needed: the weights are drawn with numpy from a
fixed seed and written in the safetensors format (an 8-byte header length, a JSON header, the
raw little-endian tensors), so the same call always writes the same bytes. transformers loads
the folder with `AutoModelFor...from_pretrained` and `AutoTokenizer.from_pretrained`.

`build_tiny_bert(dest, head)` with `head` one of:
- `sequence_classification` (BertForSequenceClassification, 3 labels),
- `token_classification` (BertForTokenClassification, 3 labels),
- `fill_mask` (BertForMaskedLM),
- `embedding` (BertModel: the last hidden state, pooled by the server).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

HEADS = {
    "sequence_classification": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
    "fill_mask": "BertForMaskedLM",
    "embedding": "BertModel",
}

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the",
    "a",
    "an",
    "is",
    "was",
    "are",
    "be",
    "good",
    "bad",
    "great",
    "terrible",
    "movie",
    "film",
    "book",
    "day",
    "night",
    "cat",
    "dog",
    "paris",
    "london",
    "city",
    "river",
    "i",
    "you",
    "we",
    "they",
    "love",
    "hate",
    "like",
    "see",
    "ship",
    "port",
    "wharf",
    "model",
    "serve",
    "fast",
    "slow",
    "happy",
    "sad",
    "red",
    "blue",
    "green",
    ",",
    ".",
    "!",
    "?",
]
VOCAB = SPECIAL + WORDS

HIDDEN = 32
LAYERS = 2
HEADS_N = 2
INTERMEDIATE = 64
MAX_POSITIONS = 128
NUM_LABELS = 3
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def _config(head: str) -> dict[str, object]:
    config: dict[str, object] = {
        "architectures": [HEADS[head]],
        "model_type": "bert",
        "vocab_size": len(VOCAB),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS_N,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "torch_dtype": "float32",
    }
    if head in ("sequence_classification", "token_classification"):
        config["id2label"] = {str(k): v for k, v in LABELS.items()}
        config["label2id"] = {v: k for k, v in LABELS.items()}
    return config


def _tensors(head: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def normal(*shape: int) -> np.ndarray:
        # Larger than BERT's 0.02 so that a tiny random model still gives distinct answers.
        return rng.normal(0.0, 0.2, size=shape).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    prefix = "" if head == "embedding" else "bert."
    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": normal(len(VOCAB), HIDDEN),
        "embeddings.position_embeddings.weight": normal(MAX_POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": normal(2, HIDDEN),
        "embeddings.LayerNorm.weight": ones(HIDDEN),
        "embeddings.LayerNorm.bias": zeros(HIDDEN),
    }
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            t[f"{layer}attention.self.{part}.weight"] = normal(HIDDEN, HIDDEN)
            t[f"{layer}attention.self.{part}.bias"] = normal(HIDDEN)
        t[f"{layer}attention.output.dense.weight"] = normal(HIDDEN, HIDDEN)
        t[f"{layer}attention.output.dense.bias"] = normal(HIDDEN)
        t[f"{layer}attention.output.LayerNorm.weight"] = ones(HIDDEN)
        t[f"{layer}attention.output.LayerNorm.bias"] = zeros(HIDDEN)
        t[f"{layer}intermediate.dense.weight"] = normal(INTERMEDIATE, HIDDEN)
        t[f"{layer}intermediate.dense.bias"] = normal(INTERMEDIATE)
        t[f"{layer}output.dense.weight"] = normal(HIDDEN, INTERMEDIATE)
        t[f"{layer}output.dense.bias"] = normal(HIDDEN)
        t[f"{layer}output.LayerNorm.weight"] = ones(HIDDEN)
        t[f"{layer}output.LayerNorm.bias"] = zeros(HIDDEN)
    if head in ("embedding", "sequence_classification"):
        t["pooler.dense.weight"] = normal(HIDDEN, HIDDEN)
        t["pooler.dense.bias"] = normal(HIDDEN)
    out = {prefix + k: v for k, v in t.items()}
    if head in ("sequence_classification", "token_classification"):
        # Strong weights and no bias: the tiny model's answer then depends on the text.
        out["classifier.weight"] = normal(NUM_LABELS, HIDDEN) * 5.0
        out["classifier.bias"] = zeros(NUM_LABELS)
    if head == "fill_mask":
        out["cls.predictions.transform.dense.weight"] = normal(HIDDEN, HIDDEN)
        out["cls.predictions.transform.dense.bias"] = normal(HIDDEN)
        out["cls.predictions.transform.LayerNorm.weight"] = ones(HIDDEN)
        out["cls.predictions.transform.LayerNorm.bias"] = zeros(HIDDEN)
        out["cls.predictions.bias"] = normal(len(VOCAB))
        # Tied to the word embeddings in BERT; written out so every loader finds it.
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """float32 tensors in the safetensors layout (names sorted, offsets into one data block)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        data = array.tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data block starts 8-byte aligned
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def build_tiny_bert(dest: Path | str, head: str = "sequence_classification", seed: int = 0) -> Path:
    """Writes a tiny BERT with `head` into `dest` (created); returns `dest`."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(_config(head), indent=2))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": MAX_POSITIONS,
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special = {k: v for k, v in tokenizer_config.items() if k.endswith("_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    rng = np.random.default_rng(seed)
    write_safetensors(folder / "model.safetensors", _tensors(head, rng))
    return folder
