"""Sync handlers that proved short run on the event loop (no thread-pool hop); long ones, and
models that opt out, stay in the pool. The decision is pure (wharf_model_server.inline); the
server tests check where predict ran, that errors and metrics are the same either way."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import httpx
from ms_testkit import ThreadServer

from wharf_model_server import Model
from wharf_model_server.inline import (
    INLINE_LIMIT_S,
    MULTI_THREAD_INLINE_LIMIT_S,
    RUNS_TO_TRUST,
    InlineGate,
    LoopTurn,
    inline_limit,
    is_short,
    loop_turn,
    next_credit,
    runs_inline,
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


class _Loop:
    """Collects what is scheduled for the loop's next turn."""

    def __init__(self) -> None:
        self.next_turn: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.next_turn.append(callback)


def test_a_loop_turn_starts_inline_runs_only_within_its_budget() -> None:
    now = [10.0]
    turn = LoopTurn(budget_s=0.5, clock=lambda: now[0])
    fake = _Loop()
    loop = cast(asyncio.AbstractEventLoop, fake)
    assert turn.may_start(loop)  # a turn's first run always starts
    now[0] = 10.5
    assert turn.may_start(loop)
    now[0] = 10.75
    assert not turn.may_start(loop)  # spent: wait for the next turn
    assert len(fake.next_turn) == 1  # one end per turn
    fake.next_turn.pop()()  # the loop has polled its sockets again
    assert turn.may_start(loop)
    now[0] = 20.0
    assert not turn.may_start(loop)
    # a turn left over from a loop that closed (a new loop in the same thread) is over
    other = _Loop()
    assert turn.may_start(cast(asyncio.AbstractEventLoop, other))
    assert len(other.next_turn) == 1


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
