"""How many replicas a revision should run: Knative's rule on local metrics, pure.

desired = ceil(observed / target) for the scale metric (average concurrency or requests per
second over the window), within [minReplicas, maxReplicas]. Requests held by the activator count
as demand, so a revision at zero wakes up. A revision goes to zero only when minReplicas is 0 and
it has had no request for the scale-to-zero grace period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    min_replicas: int
    max_replicas: int
    metric: str
    target: int


@dataclass(frozen=True)
class Observation:
    concurrency: float
    rps: float
    idle_s: float
    waiting: int = 0


def metric_value(bounds: Bounds, obs: Observation) -> float:
    # cpu and memory targets need a resource sampler; concurrency is the local stand-in
    return obs.rps if bounds.metric == "rps" else obs.concurrency


def recommend(
    bounds: Bounds, obs: Observation, current: int, *, scale_to_zero_after_s: float
) -> int:
    """The replica count to run next."""
    value = metric_value(bounds, obs)
    desired = math.ceil(value / bounds.target - 1e-9) if value > 0 else 0
    if obs.waiting > 0:
        desired = max(desired, 1)
    if desired == 0 and current > 0 and obs.idle_s < scale_to_zero_after_s:
        desired = 1
    upper = max(bounds.max_replicas, bounds.min_replicas, 1)
    return min(max(desired, bounds.min_replicas), upper)
