"""Sync handlers that proved short run on the event loop (no thread-pool hop); long ones, and
models that opt out, stay in the pool. The decision is pure (wharf_model_server.inline); the
server tests check where predict ran, that errors and metrics are the same either way."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import httpx
from ms_testkit import ThreadServer

from wharf_model_server import Model
from wharf_model_server.inline import (
    INLINE_LIMIT_S,
    MAX_RUNS_PER_TURN,
    MULTI_THREAD_INLINE_LIMIT_S,
    RUNS_TO_TRUST,
    InlineGate,
    LoopTurn,
    inline_limit,
    is_short,
    loop_turn,
    next_credit,
    over_budget,
    runs_inline,
    runs_per_turn,
)
from wharf_model_server.model import InferenceVerb
from wharf_protocol.errors import InvalidInput

SWITCH = 0.005

# -- the decision ---------------------------------------------------------------------------


def test_inline_limit_depends_on_the_pool() -> None:
    assert inline_limit(1) == INLINE_LIMIT_S
    assert inline_limit(0) == INLINE_LIMIT_S
    # with threads on other cores a GIL-releasing handler would lose its parallelism inline
    assert inline_limit(4) == MULTI_THREAD_INLINE_LIMIT_S < INLINE_LIMIT_S
    assert inline_limit(4, single_thread_limit=0.00005) == 0.00005
    assert inline_limit(1, single_thread_limit=0) == 0.0
    assert inline_limit(1, single_thread_limit=-1) == 0.0


def test_a_run_is_short_by_cpu_time_and_wall_time() -> None:
    assert is_short(0.0003, 0.0003, 0.001, SWITCH)
    assert is_short(0.001, 0.001, 0.001, SWITCH)
    # CPU over the limit: long, however fast the wall clock says it was
    assert not is_short(0.0011, 0.0011, 0.001, SWITCH)
    # waiting for the GIL in a pool thread inflates wall time up to a switch interval: short
    assert is_short(0.0003, 0.004, 0.001, SWITCH)
    # little CPU but a long wait (I/O, sleep): long, it would hold the loop
    assert not is_short(0.0001, 0.02, 0.001, SWITCH)
    # a zero limit never runs inline
    assert not is_short(0.0, 0.0, 0.0, SWITCH)


def test_credit_trusts_after_enough_short_runs_and_forgives_one_long_run() -> None:
    credit = 0
    for _ in range(RUNS_TO_TRUST - 1):
        credit = next_credit(credit, short=True)
        assert not runs_inline(credit)
    credit = next_credit(credit, short=True)
    assert runs_inline(credit)
    # just trusted: one long run sends it back to the pool
    assert not runs_inline(next_credit(credit, short=False))
    for _ in range(10 * RUNS_TO_TRUST):
        credit = next_credit(credit, short=True)
    assert credit == 2 * RUNS_TO_TRUST  # capped
    credit = next_credit(credit, short=False)
    assert runs_inline(credit)  # one preempted run does not undo the decision
    credit = next_credit(credit, short=False)
    assert not runs_inline(credit)  # a second one does
    assert next_credit(0, short=False) == 0


def test_a_long_handler_never_runs_inline() -> None:
    gate = InlineGate(0.001)
    for _ in range(100):
        gate.record(cpu_s=0.01, wall_s=0.01)
        assert not gate.inline


def test_the_gate_follows_the_runs() -> None:
    gate = InlineGate(0.001)
    for _ in range(RUNS_TO_TRUST):
        assert not gate.inline
        gate.record(cpu_s=0.0002, wall_s=0.0002)
    assert gate.inline
    gate.record(cpu_s=0.0001, wall_s=1.0)  # blocked on I/O
    assert not gate.inline


# -- in the server ----------------------------------------------------------------------------


class Where(Model):
    """Records the loop's thread (async preprocess) and predict's thread per request."""

    def __init__(self, name: str, inline_limit_s: float | None = None) -> None:
        super().__init__(name)
        if inline_limit_s is not None:
            self.inline_limit_s = inline_limit_s
        self.loop_thread = 0
        self.threads: list[int] = []
        self.sleep_s = 0.0
        self.ready = True

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.loop_thread = threading.get_ident()
        return payload

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        self.threads.append(threading.get_ident())
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if payload["instances"] == ["bad"]:
            raise InvalidInput("bad instance")
        return {"predictions": [v * 2 for v in payload["instances"]]}


def _predict(client: httpx.Client, url: str, name: str, instances: list[Any]) -> httpx.Response:
    return client.post(f"{url}/v1/models/{name}:predict", json={"instances": instances})


def _on_loop(model: Where) -> list[bool]:
    return [t == model.loop_thread for t in model.threads]


def test_a_short_predict_moves_onto_the_loop_and_a_long_one_back_to_the_pool() -> None:
    model = Where("short")
    # one pool thread, as on a server pinned to one core: the default limit applies
    with ThreadServer([model], max_asyncio_workers=1) as server, httpx.Client() as client:
        for i in range(RUNS_TO_TRUST + 4):
            reply = _predict(client, server.url, "short", [i])
            assert reply.status_code == 200 and reply.json() == {"predictions": [2 * i]}
        placed = _on_loop(model)
        assert placed == [False] * RUNS_TO_TRUST + [True] * 4
        # the same errors inline as in the pool
        bad = _predict(client, server.url, "short", ["bad"])
        assert bad.status_code == 400 and "bad instance" in bad.text
        # predict turns long (it now waits 50 ms): back in the pool after at most two runs
        model.sleep_s = 0.05
        model.threads.clear()
        for _ in range(4):
            assert _predict(client, server.url, "short", [1]).status_code == 200
        assert _on_loop(model)[-2:] == [False, False]
        metrics = httpx.get(f"{server.url}/metrics").text
    # every run that answered is observed, inline or not
    ok = RUNS_TO_TRUST + 4 + 4
    assert f'request_predict_seconds_count{{model_name="short"}} {ok}.0' in metrics
    assert (
        'kserve_inference_count_total{model_name="short",protocol="v1",status="400"} 1.0' in metrics
    )
    assert (
        f'kserve_inference_count_total{{model_name="short",protocol="v1",status="200"}} {ok}.0'
        in metrics
    )


def test_a_model_can_keep_every_run_in_the_pool() -> None:
    model = Where("pooled", inline_limit_s=0)
    with ThreadServer([model], max_asyncio_workers=1) as server, httpx.Client() as client:
        for i in range(RUNS_TO_TRUST + 4):
            assert _predict(client, server.url, "pooled", [i]).status_code == 200
    assert not any(_on_loop(model))


class AwaitableFromSync(Model):
    """A sync predict that hands back a coroutine, awaited by the server either way."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def _double(self, payload: Any) -> Any:
        return {"predictions": [v * 2 for v in payload["instances"]]}

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        return self._double(payload)


def test_a_sync_handler_returning_a_coroutine_is_awaited_inline_too() -> None:
    model = AwaitableFromSync("coro")
    with ThreadServer([model], max_asyncio_workers=1) as server, httpx.Client() as client:
        for i in range(RUNS_TO_TRUST + 4):
            reply = _predict(client, server.url, "coro", [i])
            assert reply.status_code == 200 and reply.json() == {"predictions": [2 * i]}
    gate = model._pipeline(InferenceVerb.PREDICT)[0].gate
    assert gate is not None and gate.inline  # the last runs were inline


# -- the loop's turn --------------------------------------------------------------------------


def test_a_turn_is_over_once_its_budget_is_spent() -> None:
    assert not over_budget(10.0, 10.5, 0.5)
    assert over_budget(10.0, 10.75, 0.5)


def test_the_runs_woken_per_turn_follow_the_turn_before() -> None:
    # full: as many as fitted
    assert runs_per_turn(5, 0.0025, True, 0.002, 9) == 5
    assert runs_per_turn(1, 0.004, True, 0.002, 9) == 1
    # not full: as many as the time its runs took says the budget holds
    assert runs_per_turn(2, 0.001, False, 0.002, 9) == 5
    assert runs_per_turn(1, 0.003, False, 0.002, 9) == 1  # one run longer than the budget
    assert runs_per_turn(3, 0.0, False, 0.002, 9) == 9  # no time seen: nothing learned
    # bounded either way
    assert runs_per_turn(2, 1e-9, False, 0.002, 3) == MAX_RUNS_PER_TURN
    assert runs_per_turn(0, 0.0, True, 0.002, 3) == 1


class _Runs:
    """Inline runs against one LoopTurn on a real event loop whose clock moves one second per
    read; records each run and the loop turn (tick) in which it started."""

    def __init__(self, turn: LoopTurn) -> None:
        self.turn = turn
        self.ticks = 0
        self.seen: list[tuple[int, int]] = []

    def start_ticking(self) -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # runs once per turn of the loop
            self.ticks += 1
            loop.call_soon(tick)

        loop.call_soon(tick)

    async def run(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        if not self.turn.may_start(loop):
            await self.turn.wait(loop)
        self.seen.append((i, self.ticks))

    def per_tick(self) -> list[list[int]]:
        runs: dict[int, list[int]] = {}
        for i, tick in self.seen:
            runs.setdefault(tick, []).append(i)
        return [runs[tick] for tick in sorted(runs)]


def _turn(budget_s: float) -> LoopTurn:
    clock = itertools.count()
    return LoopTurn(budget_s=budget_s, clock=lambda: float(next(clock)))


def test_waiting_runs_start_in_order_one_turn_at_a_time_each_woken_once() -> None:
    runs = _Runs(_turn(budget_s=0.5))  # every turn has room for its first run only

    async def main() -> None:
        runs.start_ticking()
        await asyncio.gather(*(runs.run(i) for i in range(6)))

    asyncio.run(main())
    assert runs.per_tick() == [[0], [1], [2], [3], [4], [5]]
    # one wake-up per waiting run, not one per run and turn
    assert runs.turn.wake_ups == 5
    assert not runs.turn.queue and runs.turn.released == 0


def test_the_budget_still_ends_a_turn_and_the_order_is_kept() -> None:
    runs = _Runs(_turn(budget_s=1.5))  # two runs per turn: the second starts 1 s in

    async def main() -> None:
        runs.start_ticking()
        await asyncio.gather(*(runs.run(i) for i in range(12)))

    asyncio.run(main())
    assert [i for i, _tick in runs.seen] == list(range(12))
    assert runs.per_tick() == [[0, 1], [2], [3, 4], [5, 6], [7, 8], [9, 10], [11]]
    # the ten that waited, each woken once: after the first turn, as many as fit
    assert runs.turn.wake_ups == 10


def test_runs_woken_for_a_turn_that_is_spent_keep_their_place() -> None:
    now = [0.0]

    def clock() -> float:
        # after five runs, runs turn slower: two were woken per turn, one fits
        now[0] += 1.0 if len(runs.seen) < 5 else 2.0
        return now[0]

    runs = _Runs(LoopTurn(budget_s=1.5, clock=clock))

    async def main() -> None:
        runs.start_ticking()
        await asyncio.gather(*(runs.run(i) for i in range(12)))

    asyncio.run(main())
    assert [i for i, _tick in runs.seen] == list(range(12))
    groups = runs.per_tick()
    assert all(len(group) <= 2 for group in groups)
    assert groups[-4:] == [[8], [9], [10], [11]]  # one per turn once they are slower
    # the run woken for a spent turn was woken again, once
    assert runs.turn.wake_ups == 11


def test_an_idle_loop_never_waits() -> None:
    runs = _Runs(_turn(budget_s=100.0))

    async def main() -> None:
        runs.start_ticking()
        await asyncio.gather(*(runs.run(i) for i in range(5)))

    asyncio.run(main())
    assert runs.per_tick() == [[0, 1, 2, 3, 4]]
    assert runs.turn.wake_ups == 0


async def _started(runs: _Runs, count: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(runs.run(i)) for i in range(count)]
    await asyncio.sleep(0)  # every task has run up to its wait
    return tasks


def test_a_run_cancelled_while_waiting_leaves_the_line() -> None:
    runs = _Runs(_turn(budget_s=0.5))

    async def main() -> None:
        tasks = await _started(runs, 4)
        assert [i for i, _ in runs.seen] == [0]
        tasks[2].cancel()  # waiting behind 1, not yet woken
        await asyncio.gather(*tasks, return_exceptions=True)
        assert tasks[2].cancelled()

    asyncio.run(main())
    assert [i for i, _ in runs.seen] == [0, 1, 3]
    assert not runs.turn.queue and runs.turn.released == 0


def test_a_run_cancelled_after_it_was_woken_hands_its_place_on() -> None:
    runs = _Runs(_turn(budget_s=0.5))

    async def main() -> None:
        tasks = await _started(runs, 4)
        assert runs.turn.released == 1  # 1 is woken for the next turn
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert tasks[1].cancelled()

    asyncio.run(main())
    assert [i for i, _ in runs.seen] == [0, 2, 3]
    assert not runs.turn.queue and runs.turn.released == 0


def test_a_turn_left_over_from_a_closed_loop_is_over() -> None:
    turn = _turn(budget_s=0.5)
    old = asyncio.new_event_loop()
    old.close()
    # what a loop that closed mid-turn leaves: a turn never ended, a run woken, one waiting
    turn.loop, turn.started, turn.released = old, 0.0, 1
    turn.queue.append(old.create_future())
    runs = _Runs(turn)

    async def main() -> None:
        await asyncio.gather(*(runs.run(i) for i in range(3)))

    asyncio.run(main())
    assert [i for i, _ in runs.seen] == [0, 1, 2]  # 0 at once on the new loop


class Turns(Model):
    """Records, per predict, how many turns the event loop had made."""

    inline_limit_s = 1.0

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ticks = 0
        self.seen: list[int] = []
        self.ready = True

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        self.seen.append(self.ticks)
        return payload


async def _concurrent_inline_runs(model: Turns, budget_s: float, runs: int) -> None:
    loop = asyncio.get_running_loop()

    def tick() -> None:  # runs once per turn of the loop
        model.ticks += 1
        loop.call_soon(tick)

    gate = model._pipeline(InferenceVerb.PREDICT)[0].gate
    assert gate is not None
    gate.credit = 2 * RUNS_TO_TRUST  # trusted: every run is inline
    turn = loop_turn()
    saved = turn.budget_s, turn.clock
    clock = itertools.count()
    turn.budget_s, turn.clock = budget_s, lambda: float(next(clock))
    loop.call_soon(tick)
    try:
        await asyncio.gather(*(model({"instances": [i]}) for i in range(runs)))
    finally:
        turn.budget_s, turn.clock = saved


def test_inline_runs_past_the_turn_budget_wait_for_later_turns() -> None:
    spread = Turns("spread")
    # every clock read is a second later: each turn has room for its first run only
    asyncio.run(_concurrent_inline_runs(spread, budget_s=0.5, runs=5))
    assert len(spread.seen) == 5 and len(set(spread.seen)) == 5
    assert spread.seen == sorted(spread.seen)  # in the order they came
    together = Turns("together")
    asyncio.run(_concurrent_inline_runs(together, budget_s=100.0, runs=5))
    assert len(together.seen) == 5 and len(set(together.seen)) == 1
