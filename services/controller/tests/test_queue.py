"""The work queue: dedup, one worker per key, requeue after done, rate-limited retries."""

from __future__ import annotations

import asyncio

import pytest

from wharf_controller.kube.queue import ShutDown, WorkQueue


async def test_a_key_added_many_times_is_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_a_key_added_while_processing_comes_back_once_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker meanwhile
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_failures_back_off_exponentially_and_forget_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
    delays = [queue.add_rate_limited("a") for _ in range(4)]
    assert delays == [0.01, 0.02, 0.04, 0.04]
    assert await asyncio.wait_for(queue.get(), 5) == "a"
    queue.done("a")
    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.add_rate_limited("a") == 0.01


async def test_a_waiting_worker_wakes_on_add_and_shutdown_ends_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("x")
    assert await asyncio.wait_for(waiter, 5) == "x"
    idle = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    await queue.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(idle, 5)
