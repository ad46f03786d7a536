"""When a rank dies the whole group restarts; this decides whether and after how long. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """At most ``max_restarts`` group restarts within ``window_s``, with doubling back-off."""

    max_restarts: int = 5
    window_s: float = 600.0
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_restarts <= 1000:
            raise ValueError(f"--max-restarts must be between 0 and 1000, got {self.max_restarts}")
        if self.window_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("restart window must be positive and back-off at most its maximum")


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_s: float
    reason: str


def decide_restart(
    policy: RestartPolicy, failures: Sequence[float], now: float, cause: str
) -> RestartDecision:
    """``failures``: when earlier failures of this group happened (monotonic seconds), the
    current one included. A group that keeps failing inside the window gives up, so the
    orchestrator (LeaderWorkerSet, the local supervisor) sees the failure instead of a loop."""
    recent = [t for t in failures if now - t <= policy.window_s]
    if len(recent) > policy.max_restarts:
        return RestartDecision(
            restart=False,
            delay_s=0.0,
            reason=(
                f"{cause}; the group failed {len(recent)} times within {policy.window_s:.0f} s "
                f"(at most {policy.max_restarts} restarts allowed): giving up"
            ),
        )
    delay = min(policy.max_backoff_s, policy.backoff_s * 2 ** max(0, len(recent) - 1))
    return RestartDecision(
        restart=True,
        delay_s=delay,
        reason=f"{cause}; restarting the whole group in {delay:.0f} s "
        f"(restart {len(recent)} of at most {policy.max_restarts})",
    )
