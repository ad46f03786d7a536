"""The tokenizer stand-in, the chat template, block hashes and the output text: all pure.

A token is a run of at most `TOKEN_CHARS` non-space characters together with the whitespace
before it (`"Hello  world"` -> `["Hello", "  world"]`); whitespace at the very end is dropped.
It is deterministic, costs one regular-expression pass, and joins back into the text, which is
all a cache-and-routing simulation needs from a tokenizer. Token ids (for `/tokenize` and
prompts given as ids) are a stable hash of the token text modulo `VOCAB_SIZE`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

TOKEN_CHARS = 8
VOCAB_SIZE = 151_936  # Qwen3's vocabulary size; only the range of the ids matters
_TOKEN = re.compile(rf"\s*\S{{1,{TOKEN_CHARS}}}")

# Words of the deterministic output; all at most TOKEN_CHARS long, so that an answer fed back
# as the next turn's history tokenizes into the same tokens it was generated as.
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
    "engines", "stream", "tokens", "to", "many", "clients", "and", "every", "pod", "keeps",
    "its", "cache", "warm", "so", "prefill", "stays", "short", "when", "prompts", "share",
    "long", "system", "texts", "across", "turns", "of", "one", "session",
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def token_id(token: str) -> int:
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % VOCAB_SIZE


def ids_as_tokens(ids: Sequence[int]) -> list[str]:
    """A prompt given as token ids, as tokens of this tokenizer (one per id)."""
    return [f" t{i}" for i in ids]


def render_chat(messages: Sequence[tuple[str, str]]) -> str:
    """The prompt of a chat request: every (role, content) in a fixed frame, then the
    assistant's generation prompt. Turn k's prompt is a prefix of turn k+1's."""
    parts = [f"<|{role}|>\n{content}\n" for role, content in messages]
    parts.append("<|assistant|>\n")
    return "".join(parts)


def block_hashes(tokens: Sequence[str], block_size: int, seed: str) -> list[bytes]:
    """Chained hashes of the full blocks of `tokens`, like vLLM's prefix cache keys: block i's
    hash covers block i's tokens and the hash of block i-1, so equal hashes mean equal
    prefixes. `seed` (model name and cache salt) starts the chain."""
    parent = hashlib.blake2b(seed.encode(), digest_size=16).digest()
    hashes = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = "\x00".join(tokens[start : start + block_size]).encode()
        parent = hashlib.blake2b(parent + block, digest_size=16).digest()
        hashes.append(parent)
    return hashes


def prompt_digest(tokens: Sequence[str], seed: str) -> bytes:
    h = hashlib.blake2b(seed.encode(), digest_size=16)
    for token in tokens:
        h.update(token.encode() + b"\x00")
    return h.digest()


def output_token(digest: bytes, index: int) -> str:
    """Token `index` of the answer to the prompt with `digest`: the same prompt always gets the
    same answer, on any pod and through any P/D split (equality tests rely on it)."""
    h = hashlib.blake2b(digest + index.to_bytes(4, "little"), digest_size=4).digest()
    return " " + _WORDS[int.from_bytes(h, "little") % len(_WORDS)]
