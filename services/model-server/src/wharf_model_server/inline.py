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
tail at c=32 (docs/benchmarks.md, "the c=32 tail"). Waiting runs form a first-in-first-out
line, woken a turn's worth at a time, each once (:class:`LoopTurn`).

A run is short when its thread CPU time is within the limit (CPU time, because wall time in a
pool thread also counts the wait for the GIL while the loop serves other requests) and its wall
time is within the limit plus the GIL switch interval (so a handler that waits on I/O or sleeps
stays in the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections import deque
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
# The most waiting runs woken for one turn (a bound, not a target: a turn of 2 ms holds about
# six requests of the benchmark's model).
MAX_RUNS_PER_TURN = 64


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


def over_budget(started: float, now: float, budget_s: float) -> bool:
    """Whether a turn that began its inline work at ``started`` has spent its budget."""
    return now - started > budget_s


def runs_per_turn(
    admitted: int, elapsed_s: float, full: bool, budget_s: float, previous: int
) -> int:
    """How many waiting runs to wake for the next turn, from the turn that just ended:
    ``admitted`` runs started in it, ``elapsed_s`` from the first one's start to the turn's
    end, ``full`` when one more was refused for the budget. Too many costs the overflow a
    second wake-up; too few leaves part of a turn unused."""
    if full:
        estimate = admitted
    elif elapsed_s > 0:
        # a run (with the rest of its request's work on the loop) took elapsed/admitted; the
        # budget counts from the first run's start, and the run that crosses it still starts
        estimate = 1 + int(budget_s * admitted / elapsed_s)
    else:
        estimate = previous
    return max(1, min(estimate, MAX_RUNS_PER_TURN))


class LoopTurn:
    """Inline work in the turns of one event loop. :meth:`may_start` says whether a run may
    start now; a run that may not waits in :meth:`wait`, first in first out. At most the
    runs expected to fit in one turn are woken at a time, each once, after the loop has polled
    its sockets again: an idle server never waits, and a waiting run costs one wake-up instead
    of one check per turn. A turn ends with a callback scheduled at its first run, which the
    loop runs only after its next poll."""

    __slots__ = (
        "admitted",
        "budget_s",
        "clock",
        "full",
        "loop",
        "per_turn",
        "queue",
        "released",
        "requeue_at",
        "started",
        "wake_ups",
    )

    def __init__(
        self, budget_s: float = TURN_BUDGET_S, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started: float | None = None
        self.admitted = 0
        self.full = False
        self.per_turn = 1
        # runs waiting for a later turn, in the order they came
        self.queue: deque[asyncio.Future[None]] = deque()
        # woken for the coming turn and not yet back; while any is, newcomers queue behind
        self.released = 0
        # where a woken run that found the turn spent goes back in, so the order is kept
        self.requeue_at = 0
        self.wake_ups = 0  # every return from a wait: what the tests count

    def may_start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a run that has not waited may start now: none is waiting before it and
        the turn has budget left. ``False``: await :meth:`wait`."""
        if loop is not self.loop:
            # the state of another loop (one that has since closed, in the same thread) is over
            self._reset(loop)
        if self.queue or self.released:
            return False
        return self._admit()

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Waits, behind every run that came before, until a turn has room for this run."""
        future: asyncio.Future[None] = loop.create_future()
        self.queue.append(future)
        self._release(future)
        while True:
            try:
                if future.done():
                    # woken by its own call (nobody was before it): awaiting a done future
                    # would not yield, and its turn is the loop's next one all the same
                    await asyncio.sleep(0)
                else:
                    await future
            except asyncio.CancelledError:
                self._forget(future)
                raise
            self.wake_ups += 1
            self.released -= 1
            if self._admit():
                self._release()
                return
            # the turn was spent before this run's turn came: first in line for the next one
            future = loop.create_future()
            self.queue.insert(self.requeue_at, future)
            self.requeue_at += 1
            self._release(future)

    def _admit(self) -> bool:
        now = self.clock()
        if self.started is None:
            self.started = now
            self.admitted, self.full = 1, False
            assert self.loop is not None
            self.loop.call_soon(self._end)
            return True
        if over_budget(self.started, now, self.budget_s):
            self.full = True
            return False
        self.admitted += 1
        return True

    def _release(self, own: asyncio.Future[None] | None = None) -> None:
        """Wakes the next turn's runs once every run woken before is back. The caller's own
        run (``own``) is woken last: its wake-up is scheduled only when it awaits, after
        those of the runs woken here, so none behind it may be woken with it."""
        if self.released:
            return
        self.requeue_at = 0
        while self.queue and self.released < self.per_turn:
            future = self.queue.popleft()
            if not future.done():
                future.set_result(None)
                self.released += 1
            if future is own:
                break

    def _forget(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            # cancelled while waiting: out of the line
            with contextlib.suppress(ValueError):
                self.queue.remove(future)
        else:
            # cancelled after it was woken: its place in the coming turn goes to the next
            self.released -= 1
            self._release()

    def _end(self) -> None:
        if self.started is not None:
            elapsed = self.clock() - self.started
            self.per_turn = runs_per_turn(
                self.admitted, elapsed, self.full, self.budget_s, self.per_turn
            )
        self.started = None
        # nothing woken may be left behind (all woken runs were cancelled before the turn)
        self._release()

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started = None
        self.queue = deque()
        self.released = 0
        self.requeue_at = 0


_turns = threading.local()  # one event loop per thread


def loop_turn() -> LoopTurn:
    """The turn of the event loop running in this thread."""
    turn: LoopTurn | None = getattr(_turns, "turn", None)
    if turn is None:
        turn = _turns.turn = LoopTurn()
    return turn
