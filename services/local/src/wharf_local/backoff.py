"""Restart backoff for crashed processes, like the kubelet's CrashLoopBackOff: pure decisions.

The delay doubles with every crash in a row, up to a cap; a process that ran long enough before
it crashed starts the count again.
"""

from __future__ import annotations

BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
RESET_AFTER_S = 60.0


def restart_delay(
    crashes_in_a_row: int, *, base: float = BASE_DELAY_S, cap: float = MAX_DELAY_S
) -> float:
    """Seconds to wait before restarting after the n-th crash in a row (n >= 1)."""
    n = max(1, crashes_in_a_row)
    return float(min(cap, base * 2.0 ** (n - 1)))


def crashes_in_a_row(previous: int, uptime_s: float, *, reset_after: float = RESET_AFTER_S) -> int:
    """The crash count after a process that ran `uptime_s` seconds exited unexpectedly."""
    return 1 if uptime_s >= reset_after else previous + 1
