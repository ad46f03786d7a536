"""The gateway's default scorer on the routing benchmark's workload, replayed in simulated time.

`bench/llm_routing_replay.py` drives the benchmark's shared-prefix workload (16 groups with
6,000-token system prompts, multi-turn sessions) through 8 simulated engines and the gateway's
own scheduling code on one simulated clock: no processes and no wall clock, so every figure
below is deterministic (simulated seconds, not this machine's speed). Near saturation is where
a scorer that balances requests loses the cache and one that follows the cache piles up
queues; the issue's targets (hit rate at least 95% of the placement oracle's, TTFT p90 at most
1.2 times its) must hold there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))

from llm_routing import Shape  # noqa: E402
from llm_routing_replay import Replay, StepResult, parse_args  # noqa: E402

pytestmark = pytest.mark.slow

SHAPE = Shape(16, 4, 3, 6000, 1200, 64)
# the weights the gateway shipped with before the `pending` scorer
OLD_WEIGHTS = "prefix=3,pending=0,queue=2,active=2,kv=1,session=4"


def replay(system: str, qps: float, step: int, weights: str = "") -> StepResult:
    args = parse_args(["--weights", weights])
    return Replay(system, "shared-prefix", qps, step, SHAPE, args).run()


@pytest.mark.parametrize(("qps", "step"), [(64.0, 4), (80.0, 5)])
def test_the_default_scorer_keeps_the_oracles_hit_rate_and_latency_near_saturation(
    qps: float, step: int
) -> None:
    oracle = replay("oracle", qps, step)
    wharf = replay("wharf-default", qps, step)
    assert wharf.unanswered == oracle.unanswered == 0
    assert wharf.hit_rate >= 0.95 * oracle.hit_rate, (wharf, oracle)
    assert wharf.ttft_p90_s <= 1.2 * oracle.ttft_p90_s, (wharf, oracle)


def test_counting_requests_instead_of_prefill_loses_the_cache_at_80_qps() -> None:
    # the replay tells the two apart: the old weights spill groups near saturation
    oracle = replay("oracle", 80.0, 5)
    old = replay("wharf-default", 80.0, 5, OLD_WEIGHTS)
    assert old.hit_rate < 0.9 * oracle.hit_rate, (old, oracle)
    assert old.ttft_p90_s > 1.5 * oracle.ttft_p90_s, (old, oracle)


@pytest.mark.parametrize(("qps", "step"), [(64.0, 4), (80.0, 5)])
def test_two_replicas_that_exchange_placements_and_load_route_as_well_as_one(
    qps: float, step: int
) -> None:
    # `-x2`: two replicas taking requests in turn, each sending the other its placements and
    # its per-pod counts (gateway/peers.py, through the real encoding) every 0.5 ms simulated
    oracle = replay("oracle", qps, step)
    pair = replay("wharf-default-x2", qps, step)
    assert pair.unanswered == 0
    assert pair.hit_rate >= 0.95 * oracle.hit_rate, (pair, oracle)
    assert pair.ttft_p90_s <= 1.2 * oracle.ttft_p90_s, (pair, oracle)


@pytest.mark.parametrize(("qps", "step"), [(64.0, 4), (80.0, 5)])
def test_two_replicas_that_do_not_exchange_miss_the_targets(qps: float, step: int) -> None:
    # the same pair with no exchange: each knows only its own half of the placements and load
    oracle = replay("oracle", qps, step)
    alone = replay("wharf-default-x2-nopeers", qps, step)
    assert alone.hit_rate < 0.95 * oracle.hit_rate, (alone, oracle)
    assert alone.ttft_p90_s > 1.2 * oracle.ttft_p90_s, (alone, oracle)
