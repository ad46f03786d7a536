"""A work queue of keys, as client-go's: a key waiting is queued once however often it is
added; a key being processed is not handed to a second worker, and comes back once after
`done` if it was added meanwhile; failures requeue it after an exponential, capped delay."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    pass


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self.base_delay, self.max_delay = base_delay, max_delay
        self._order: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._ready = asyncio.Condition()
        self._closed = False
        self.adds = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, key: K) -> None:
        if self._closed or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        if key not in self._processing:
            self._order.append(key)
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._ready:
            self._ready.notify()

    def add_after(self, key: K, delay: float) -> None:
        if self._closed:
            return  # no timer outlives a shut queue
        if delay <= 0:
            self.add(key)
            return
        timer = self._timers.get(key)
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if timer is not None and timer.when() <= due:
            return  # already due sooner
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Requeue after a failure: base * 2^failures, capped; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.max_delay, self.base_delay * 2.0**failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key; ShutDown once the queue is shut, even with keys left (a stopping
        controller finishes the keys in hand and starts no other)."""
        async with self._ready:
            while not self._order or self._closed:
                if self._closed:
                    raise ShutDown
                await self._ready.wait()
            key = self._order.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._order.append(key)
            asyncio.get_running_loop().create_task(self._notify())

    async def shutdown(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        async with self._ready:
            self._ready.notify_all()
