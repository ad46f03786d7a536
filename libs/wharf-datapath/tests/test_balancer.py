"""Traffic split between revisions and replica choice: pure."""

from __future__ import annotations

import itertools
from collections import Counter

from wharf_datapath.balancer import least_loaded, swrr_pick


def test_weighted_round_robin_gives_exact_shares_evenly_spread() -> None:
    state: dict[str, int] = {}
    picks = []
    for _ in range(100):
        chosen, state = swrr_pick({"latest": 20, "prev": 80}, state)
        assert chosen is not None
        picks.append(chosen)
    assert Counter(picks) == {"latest": 20, "prev": 80}
    # never two canary requests in a row at 20%
    assert all(not (a == b == "latest") for a, b in itertools.pairwise(picks))


def test_zero_weights_are_never_picked() -> None:
    state: dict[str, int] = {}
    for _ in range(10):
        chosen, state = swrr_pick({"latest": 0, "prev": 100}, state)
        assert chosen == "prev"
    assert swrr_pick({}, {}) == (None, {})


def test_least_loaded_replica() -> None:
    assert least_loaded([3, 1, 1]) == 1
    assert least_loaded([]) is None
