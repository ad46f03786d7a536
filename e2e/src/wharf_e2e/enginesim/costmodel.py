"""How long an engine step takes, in simulated seconds: a pure function of what it does.

One step of continuous batching runs one decode token for every decoding sequence and prefill
chunks for the rest of the token budget:

    step = step_base + decode_per_seq * decoding_sequences + prefill_per_token * prefill_tokens

Prefill tokens are only the ones not found in the prefix cache (nor transferred by P/D), so
cache hits cut prefill time. The defaults are calibrated in docs/enginesim.md against llm-d's
"KV-Cache Wins You Can See" benchmark (Qwen3-32B, vLLM, 8 pods x 2 H100 TP2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    step_base_s: float = 0.015  # weights read once per step (memory-bound decode floor)
    decode_per_seq_s: float = 0.0006  # KV reads and sampling per decoding sequence
    prefill_per_token_s: float = 0.00005  # 20,000 uncached prompt tokens/s per pod
    transfer_base_s: float = 0.003  # one P/D KV pull (NIXL round trips)
    transfer_per_token_s: float = 0.000001  # 1 M tokens/s of KV over the fabric

    @classmethod
    def instant(cls) -> CostModel:
        """Every step costs nothing: an upstream as fast as the simulator's own code."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)

    def step_seconds(self, decoding: int, prefill_tokens: int) -> float:
        if decoding < 0 or prefill_tokens < 0:
            raise ValueError("a step's decoding sequences and prefill tokens are never negative")
        if decoding == 0 and prefill_tokens == 0:
            return 0.0
        return (
            self.step_base_s
            + self.decode_per_seq_s * decoding
            + self.prefill_per_token_s * prefill_tokens
        )

    def transfer_seconds(self, tokens: int) -> float:
        return self.transfer_base_s + self.transfer_per_token_s * max(tokens, 0)
