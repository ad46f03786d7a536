"""Which pod serves a request: filters -> weighted scorers -> pick, over a snapshot. Pure.

A pod's total is the weighted sum of its scores; the highest total wins (llm-d's scheduler works
the same way); ties go to the pod picked longest ago, at random among pods never picked. The
scorers:

- `prefix`: the share of the prompt's blocks the pod probably holds (`prefix.PrefixIndex`);
- `pending`: minus the prompt blocks the pod has yet to compute for this gateway's requests,
  in units of this request's blocks (unbounded): the prefill queued ahead of the request. With
  `prefix`, it weighs the prefill a cache hit saves against the prefill a pod's queue adds, so
  a group stays on its pod until waiting there costs more than computing the prompt elsewhere
  (by the factor `prefix / pending`: a miss also computes the prefix again and evicts others);
- `queue`: fewer waiting requests (`vllm:num_requests_waiting`, scraped) is better: the only
  load other gateway replicas' requests show in;
- `active`: fewer requests in flight from this gateway is better (it moves between scrapes);
  a request that has not streamed its first token yet counts twice;
- `kv`: more free KV cache (1 - `vllm:kv_cache_usage_perc`) is better;
- `session`: the pod that served the request's session last.

`queue` and `active` are min-max normalised over the candidates, but a spread smaller than
`load_slack` requests, or than `load_rel` times the fleet's mean load, counts as only part of
the range: near saturation, when every pod has a queue, a difference of a few requests is not
the full range. Then the skew guard: when the winner's load is far above the least loaded
candidate's (more than `skew_abs` requests and `skew_rel` times), the least loaded candidates
win instead, so a hot prefix never piles its whole group on one pod.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

Policy = Literal["default", "round-robin", "least-load"]
POLICIES: tuple[Policy, ...] = ("default", "round-robin", "least-load")


@dataclass(frozen=True, slots=True)
class PodView:
    """One candidate pod as the scheduler sees it at this instant."""

    name: str
    in_flight: int = 0  # this gateway's requests on the pod
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    prefix_blocks: int = 0  # leading prompt blocks the pod probably holds
    session: bool = False  # the pod served this request's session last
    prefilling: int = 0  # this gateway's requests on the pod with no first token yet
    pending_blocks: int = 0  # of those, the prompt blocks the pod probably has to compute
    last_pick: int = 0  # when this gateway last picked the pod (a counter; 0: never)

    @property
    def load(self) -> float:
        """Requests on the pod: the engine's own count when it is fresher (other gateways'
        requests included), this gateway's count when it is higher (between scrapes)."""
        return max(float(self.in_flight), self.waiting + self.running)

    @property
    def pending(self) -> float:
        """Prompts the pod has yet to compute: this gateway's without a first token, or the
        engine's waiting queue (other gateways' requests included) when that is longer."""
        return max(float(self.prefilling), self.waiting)


def blocks_to_compute(total_blocks: int, held_blocks: int) -> int:
    """The prompt blocks a pod computes for a request: those it does not hold, plus the
    prompt's partial last block (never a whole block, so never in an index)."""
    return total_blocks - held_blocks + 1


@dataclass(frozen=True, slots=True)
class Weights:
    prefix: float = 6.0
    pending: float = 1.0
    queue: float = 1.0
    active: float = 0.0
    kv: float = 0.25
    session: float = 1.0


@dataclass(frozen=True, slots=True)
class Tuning:
    load_slack: float = 8.0
    load_rel: float = 1.0
    skew_abs: float = 16.0
    skew_rel: float = 1.5


def parse_weights(text: str, base: Weights | None = None) -> Weights:
    """`prefix=3,queue=2,...`: the named weights changed, the rest as in `base`."""
    values = {f.name: getattr(base or Weights(), f.name) for f in fields(Weights)}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ValueError(
                f"--weights: {item!r}: expected NAME=NUMBER, NAME one of {', '.join(values)}"
            )
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"--weights: {item!r}: {raw!r} is not a number") from None
        if not 0 <= value <= 1000:
            raise ValueError(f"--weights: {key} must be between 0 and 1000")
        values[key] = value
    return Weights(**values)


def _spread_scores(values: Sequence[float], slack: float) -> list[float]:
    low, high = min(values), max(values)
    span = max(high - low, slack, 1e-9)
    return [1.0 - (v - low) / span for v in values]


def scores(
    pods: Sequence[PodView], total_blocks: int, weights: Weights, tuning: Tuning
) -> list[float]:
    """Each pod's weighted total, in the order given."""
    slack = max(tuning.load_slack, tuning.load_rel * sum(p.load for p in pods) / len(pods))
    queue = _spread_scores([p.waiting for p in pods], slack)
    active = _spread_scores([float(p.in_flight + p.prefilling) for p in pods], slack)
    request = max(total_blocks, 1)
    out = []
    for i, p in enumerate(pods):
        total = weights.queue * queue[i] + weights.active * active[i]
        total -= weights.pending * p.pending_blocks / request
        total += weights.kv * (1.0 - min(1.0, max(0.0, p.kv_usage)))
        if total_blocks:
            total += weights.prefix * min(1.0, p.prefix_blocks / total_blocks)
        if p.session:
            total += weights.session
        out.append(total)
    return out


def _best(
    pods: Sequence[PodView], values: Sequence[float], rng: random.Random, rank: int | None = None
) -> PodView:
    top = max(values)
    tied = [p for p, v in zip(pods, values, strict=True) if v >= top - 1e-9]
    if len(tied) > 1 and rank is not None:
        # replicas that exchange their picks order tied pods alike (the pod picked longest ago
        # by any of them first); each takes a different one, so that two picks made at the same
        # moment, before either replica has heard of the other's, do not land on one pod
        tied.sort(key=lambda p: (p.last_pick, p.name))
        return tied[rank % len(tied)]
    if len(tied) > 1:
        oldest = min(p.last_pick for p in tied)
        tied = [p for p in tied if p.last_pick == oldest]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


def least_loaded(pods: Sequence[PodView], rng: random.Random, rank: int | None = None) -> PodView:
    """Fewest pending prefills, then fewest requests (a pending prefill outweighs any number
    of decoding sequences: it delays a new prompt's first token by a whole prefill)."""
    top = max(p.load for p in pods) + 1.0
    return _best(pods, [-(p.pending * top + p.load) for p in pods], rng, rank)


def skewed(chosen: PodView, pods: Sequence[PodView], tuning: Tuning) -> bool:
    low = min(p.load for p in pods)
    return chosen.load - low > tuning.skew_abs and chosen.load > tuning.skew_rel * low


def pick_default(
    pods: Sequence[PodView],
    total_blocks: int,
    weights: Weights,
    tuning: Tuning,
    rng: random.Random,
    rank: int | None = None,
) -> PodView:
    """`rank`: this replica's place among the gateway's replicas that exchange picks (None:
    it has no peers)."""
    if not pods:
        raise ValueError("no candidate pods")
    chosen = _best(pods, scores(pods, total_blocks, weights, tuning), rng, rank)
    if len(pods) > 1 and skewed(chosen, pods, tuning):
        return least_loaded(pods, rng, rank)
    return chosen


def pick_round_robin(pods: Sequence[PodView], turn: int) -> PodView:
    if not pods:
        raise ValueError("no candidate pods")
    ordered = sorted(pods, key=lambda p: p.name)
    return ordered[turn % len(ordered)]
