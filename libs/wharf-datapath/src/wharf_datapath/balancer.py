"""Traffic split between revisions (smooth weighted round-robin) and replica choice: pure.

Smooth weighted round-robin (nginx's) gives each revision exactly its share over every cycle of
100 requests and spreads them evenly, so a 20% canary gets 20 requests in 100, never in a burst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def swrr_pick(
    weights: Mapping[str, int], current: Mapping[str, int]
) -> tuple[str | None, dict[str, int]]:
    """The next revision and the new running totals; None when no weight is positive."""
    live = {k: w for k, w in weights.items() if w > 0}
    if not live:
        return None, {}
    totals = {k: current.get(k, 0) + w for k, w in live.items()}
    chosen = max(sorted(totals), key=lambda k: totals[k])
    totals[chosen] -= sum(live.values())
    return chosen, totals


def least_loaded(inflight: Sequence[int]) -> int | None:
    """Index of the replica with the fewest requests in flight (first on ties), None if empty."""
    if not inflight:
        return None
    return min(range(len(inflight)), key=lambda i: inflight[i])
