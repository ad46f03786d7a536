"""When a model's sync handlers run on the event loop instead of in the thread pool.

A hop to the pool costs a thread wake-up, two GIL hand-offs and a loop wake-up per request:
about 100 to 150 us of CPU on one core (docs/model-server.md), as much as half of what a small
scikit-learn model's ``predict`` costs. A handler that is short gains nothing from the pool, so
each sync stage group learns from the runs it has seen: after ``RUNS_TO_TRUST`` short runs in a
row it runs inline (as KServe runs every sync ``predict``). A long run costs ``RUNS_TO_TRUST``
of credit, which a trusted group holds twice over: a handler that turns long is back in the
pool after at most two long runs on the loop, while a run that was long only because the
process was preempted (a shared machine) does not undo the decision.

Inline runs also share the event loop's turn: once a turn has run inline work for
``TURN_BUDGET_S``, the next inline run waits for the loop's next turn (after the loop has polled
its sockets again). Without that bound, 32 concurrent requests make each turn 32 handlers long,
and a client that has just connected waits several such turns for its first answer: the p99
tail at c=32 (docs/benchmarks.md, "the c=32 tail").

A run is short when its thread CPU time is within the limit (CPU time, because wall time in a
pool thread also counts the wait for the GIL while the loop serves other requests) and its wall
time is within the limit plus the GIL switch interval (so a handler that waits on I/O or sleeps
stays in the pool).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable

# Short enough that running it inline delays other requests and health checks no more than
# parsing a moderate body does; long enough that a ~0.3 ms predict on a busy machine stays in.
INLINE_LIMIT_S = 0.002
# With more than one pool thread a handler that releases the GIL (numpy on large arrays,
# onnxruntime, xgboost) runs on several cores at once; inline it would not. Below this the hop
# costs about what the handler does, so there is little parallelism to lose.
MULTI_THREAD_INLINE_LIMIT_S = 0.0001
RUNS_TO_TRUST = 16
# How long a turn of the event loop runs inline handlers (from the start of its first one)
# before further inline runs wait for the next turn; a turn's first run always starts.
TURN_BUDGET_S = 0.002


def inline_limit(pool_threads: int, single_thread_limit: float = INLINE_LIMIT_S) -> float:
    """The longest CPU time per run that may run inline, for a pool of ``pool_threads``."""
    if single_thread_limit <= 0:
        return 0.0
    if pool_threads <= 1:
        return single_thread_limit
    return min(single_thread_limit, MULTI_THREAD_INLINE_LIMIT_S)


def is_short(cpu_s: float, wall_s: float, limit_s: float, switch_interval_s: float) -> bool:
    """Whether one run (its thread CPU time and wall time) counts as short."""
    return limit_s > 0 and cpu_s <= limit_s and wall_s <= limit_s + switch_interval_s


def next_credit(credit: int, short: bool) -> int:
    """The credit after one more run: one up per short run (up to twice ``RUNS_TO_TRUST``),
    ``RUNS_TO_TRUST`` down per long one (not below zero)."""
    if short:
        return min(credit + 1, 2 * RUNS_TO_TRUST)
    return max(credit - RUNS_TO_TRUST, 0)


def runs_inline(credit: int) -> bool:
    return credit >= RUNS_TO_TRUST


class InlineGate:
    """The decision for one group of sync stages. Updated from the loop and from pool threads;
    a lost update only delays the switch by a run, so there is no lock."""

    __slots__ = ("credit", "limit_s")

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.credit = 0

    @property
    def inline(self) -> bool:
        return runs_inline(self.credit)

    def record(self, cpu_s: float, wall_s: float) -> None:
        short = is_short(cpu_s, wall_s, self.limit_s, sys.getswitchinterval())
        self.credit = next_credit(self.credit, short)


class LoopTurn:
    """Inline work in the current turn of one event loop: :meth:`may_start` says whether one
    more inline run may start in this turn. The turn ends with a callback scheduled at its
    first run, which the loop runs only after it has polled its sockets again."""

    __slots__ = ("budget_s", "clock", "loop", "started")

    def __init__(
        self, budget_s: float = TURN_BUDGET_S, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started: float | None = None

    def may_start(self, loop: asyncio.AbstractEventLoop) -> bool:
        now = self.clock()
        # a turn begun on another loop (one that has since closed, in the same thread) is over
        if self.started is None or loop is not self.loop:
            self.started, self.loop = now, loop
            loop.call_soon(self._end)
            return True
        return now - self.started <= self.budget_s

    def _end(self) -> None:
        self.started = None


_turns = threading.local()  # one event loop per thread


def loop_turn() -> LoopTurn:
    """The turn of the event loop running in this thread."""
    turn: LoopTurn | None = getattr(_turns, "turn", None)
    if turn is None:
        turn = _turns.turn = LoopTurn()
    return turn
