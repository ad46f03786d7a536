"""The work loop every controller kind shares: a failed key comes back with backoff and is counted
under its kind; a key that succeeds is forgotten; the loop ends when the queue shuts down."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wharf_controller.kube.queue import ShutDown, WorkQueue
from wharf_controller.kube.worker import reconcile_forever
from wharf_controller.metrics import Metrics

Key = tuple[str, str]


class Expected(Exception):
    pass


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_failed_key_is_retried_counted_and_then_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue: WorkQueue[Key] = WorkQueue(base_delay=0.001)
    metrics = Metrics()
    attempts: list[Key] = []
    finished = asyncio.Event()
    done_calls = 0

    async def reconcile(key: Key) -> None:
        attempts.append(key)
        if len(attempts) == 1:
            raise Expected("the API server said 409")
        if len(attempts) == 2:
            raise RuntimeError("a bug")
        finished.set()

    def count() -> None:
        nonlocal done_calls
        done_calls += 1

    queue.add(("ns", "svc"))
    caplog.set_level(logging.WARNING, logger="wharf_controller.kube.worker")
    loop = asyncio.create_task(
        reconcile_forever(
            queue, reconcile, kind="Thing", metrics=metrics, expected=(Expected,), on_done=count
        )
    )
    await asyncio.wait_for(finished.wait(), 30)
    await queue.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(loop, 30)

    assert attempts == [("ns", "svc")] * 3
    assert done_calls == 3
    assert queue.failures(("ns", "svc")) == 0  # forgotten after the success
    reconciles = "wharf_controller_reconciles_total"
    assert _sample(metrics, reconciles, {"kind": "Thing", "result": "error"}) == 2
    assert _sample(metrics, reconciles, {"kind": "Thing", "result": "success"}) == 1
    assert _sample(metrics, "wharf_controller_reconcile_errors_total", {"kind": "Thing"}) == 2
    assert _sample(metrics, "wharf_controller_reconcile_seconds_count", {"kind": "Thing"}) == 3
    # An expected error is one line; anything else keeps its traceback for the operator.
    warnings = [r for r in caplog.records if r.name == "wharf_controller.kube.worker"]
    assert [r.getMessage().split(";")[0] for r in warnings] == [
        "Thing ns/svc: the API server said 409",
        "Thing ns/svc: a bug",
    ]
    assert warnings[0].exc_info in (None, False)
    assert warnings[1].exc_info


async def test_each_kind_reports_its_own_queue_depth() -> None:
    metrics = Metrics()
    queues: dict[str, WorkQueue[Key]] = {"A": WorkQueue(), "B": WorkQueue()}
    for index in range(3):
        queues["A"].add(("ns", f"a{index}"))
    queues["B"].add(("ns", "b"))
    started: list[Key] = []
    both = asyncio.Event()

    async def reconcile(key: Key) -> None:
        started.append(key)
        if len(started) == 2:
            both.set()
        await asyncio.sleep(3600)  # holds each loop on its first key

    loops = [
        asyncio.create_task(
            reconcile_forever(q, reconcile, kind=kind, metrics=metrics, expected=())
        )
        for kind, q in queues.items()
    ]
    try:
        await asyncio.wait_for(both.wait(), 30)
        depth = "wharf_controller_queue_depth"
        assert _sample(metrics, depth, {"kind": "A"}) == 2  # one taken, two waiting
        assert metrics.registry.get_sample_value(depth, {"kind": "B"}) == 0
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


async def test_stop_lets_the_reconcile_in_hand_finish_then_cancels_the_rest() -> None:
    from wharf_controller.kube.worker import start_worker, stop

    queue: WorkQueue[Key] = WorkQueue()
    metrics = Metrics()
    began, finished = asyncio.Event(), asyncio.Event()
    release = asyncio.Event()

    async def reconcile(_key: Key) -> None:
        began.set()
        await release.wait()  # an API request in flight
        finished.set()

    async def informer() -> None:
        await asyncio.sleep(3600)

    queue.add(("ns", "a"))
    queue.add(("ns", "b"))
    worker = start_worker(
        reconcile_forever(queue, reconcile, kind="Thing", metrics=metrics, expected=())
    )
    watch = asyncio.create_task(informer())
    tasks = [watch, worker]
    await asyncio.wait_for(began.wait(), 30)
    stopping = asyncio.create_task(stop(queue, tasks, grace_s=60))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the reconcile in hand
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert finished.is_set()  # not cut off mid-request
    assert watch.cancelled()
    assert tasks == []
    # the key still queued was not started after the stop
    assert _sample(metrics, "wharf_controller_reconcile_seconds_count", {"kind": "Thing"}) == 1
