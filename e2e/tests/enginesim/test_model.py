"""The simulator's pure parts: tokenizer stand-in, block hashes, cost model, prefix cache."""

from __future__ import annotations

import pytest

from wharf_e2e.enginesim import tokens as tok
from wharf_e2e.enginesim.costmodel import CostModel
from wharf_e2e.enginesim.prefix_cache import PrefixCache


def test_tokens_join_back_into_the_text() -> None:
    text = "Hello  world, a_very_long_identifier\nnext"
    tokens = tok.tokenize(text)
    assert "".join(tokens) == text
    assert all(len(t.strip()) <= tok.TOKEN_CHARS for t in tokens)
    assert tokens[:2] == ["Hello", "  world,"]


def test_chat_turns_are_prefixes_of_the_next_turn() -> None:
    turn1 = tok.render_chat([("system", "be brief"), ("user", "hi")])
    turn2 = tok.render_chat(
        [("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "more")]
    )
    assert turn2.startswith(turn1)


def test_block_hashes_are_chained_and_seeded() -> None:
    a = [f" w{i}" for i in range(40)]
    b = [*a[:16], " other", *a[17:]]
    ha, hb = tok.block_hashes(a, 16, "m"), tok.block_hashes(b, 16, "m")
    assert len(ha) == 2  # the partial third block has no hash
    assert ha[0] == hb[0] and ha[1] != hb[1]
    assert tok.block_hashes(a, 16, "other-model")[0] != ha[0]


def test_output_is_a_function_of_the_prompt() -> None:
    d1 = tok.prompt_digest(tok.tokenize("one prompt"), "m")
    d2 = tok.prompt_digest(tok.tokenize("another prompt"), "m")
    first = [tok.output_token(d1, i) for i in range(8)]
    assert first == [tok.output_token(d1, i) for i in range(8)]
    assert first != [tok.output_token(d2, i) for i in range(8)]
    # Output words survive being fed back as history: each is exactly one token.
    assert all(tok.tokenize(w) == [w] for w in first)


def test_cost_model_prefill_scales_with_uncached_tokens_and_decode_with_batch() -> None:
    m = CostModel(step_base_s=0.01, decode_per_seq_s=0.001, prefill_per_token_s=0.0001)
    assert m.step_seconds(0, 0) == 0.0
    assert m.step_seconds(0, 1000) == pytest.approx(0.01 + 0.1)
    assert m.step_seconds(0, 100) < m.step_seconds(0, 1000)
    assert m.step_seconds(64, 0) > m.step_seconds(1, 0)
    assert m.step_seconds(64, 0) == pytest.approx(0.01 + 0.064)
    assert CostModel.instant().step_seconds(100, 10_000) == 0.0
    with pytest.raises(ValueError, match="negative"):
        m.step_seconds(-1, 0)


def test_prefix_cache_matches_leading_blocks_and_evicts_least_recent() -> None:
    cache = PrefixCache(capacity_blocks=3)
    cache.insert([b"a", b"b"])
    assert cache.match([b"a", b"b", b"c"]) == 2
    assert cache.match([b"x", b"a"]) == 0  # chained: a miss ends the match
    cache.insert([b"c"])
    assert cache.peek([b"a", b"b"]) == 2  # peeking leaves the order alone: a is the oldest
    cache.match([b"a"])  # a becomes most recent; b is now the oldest
    cache.insert([b"d"])
    assert b"b" not in cache and b"a" in cache and len(cache) == 3
    assert cache.evictions == 1
    cache.shrink_to(1)
    assert len(cache) == 1 and b"d" in cache
