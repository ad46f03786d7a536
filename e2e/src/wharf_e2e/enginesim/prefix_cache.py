"""A pod's prefix cache: the hashes of the KV blocks it holds, bounded, least recently used
evicted first. Pure data structure (no clock, no I/O)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 0:
            raise ValueError(f"capacity_blocks must be >= 0, got {capacity_blocks}")
        self.capacity = capacity_blocks
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block: bytes) -> bool:
        return block in self._blocks

    def match(self, hashes: Sequence[bytes]) -> int:
        """How many leading blocks of `hashes` are cached; those become most recently used.
        The hashes are chained, so the first miss ends the match."""
        matched = 0
        for h in hashes:
            if h not in self._blocks:
                break
            self._blocks.move_to_end(h)
            matched += 1
        return matched

    def peek(self, hashes: Sequence[bytes]) -> int:
        """`match` without making the blocks recently used."""
        matched = 0
        for h in hashes:
            if h not in self._blocks:
                break
            matched += 1
        return matched

    def insert(self, hashes: Sequence[bytes]) -> None:
        for h in hashes:
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        self.shrink_to(self.capacity)

    def shrink_to(self, blocks: int) -> None:
        """Evict least recently used blocks until at most `blocks` remain (running requests
        take blocks from the same memory)."""
        limit = max(blocks, 0)
        while len(self._blocks) > limit:
            self._blocks.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._blocks.clear()
