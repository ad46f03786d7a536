"""The watch's retries: a failing watch backs off (growing delays, capped), resumes from the last
resourceVersion it saw without listing again, starts small again once events flow, and lists
again only on 410 Gone.

The API is a stand-in here: a dropped connection, a 503 and an expired version on cue are what a
real API server cannot be made to produce in a test. The sleep is injected so that the delays
are read, not waited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from wharf_controller.kube.api import DEPLOYMENT, ApiError
from wharf_controller.kube.backoff import Backoff
from wharf_controller.kube.informer import Informer

JSON = dict[str, Any]


def _deployment(version: str, replicas: int) -> JSON:
    return {
        "metadata": {"name": "d", "namespace": "n", "resourceVersion": version},
        "spec": {"replicas": replicas},
    }


def _event(kind: str, obj: JSON) -> JSON:
    return {"type": kind, "object": obj}


class ScriptedApi:
    """Answers each list from `listings` and each watch from `watches`, in order, recording the
    resourceVersion every watch asked for; the watch after the last script blocks."""

    def __init__(self, listings: list[JSON], watches: list[Callable[[], AsyncIterator[JSON]]]):
        self.listings, self.watches = listings, watches
        self.lists = 0
        self.watched_from: list[str] = []
        self.idle = asyncio.Event()

    async def request(self, method: str, path: str, query: Mapping[str, str]) -> JSON:
        assert method == "GET" and "resourceVersion" not in query
        listing = self.listings[self.lists]
        self.lists += 1
        return listing

    async def watch(self, path: str, query: Mapping[str, str]) -> AsyncIterator[JSON]:
        self.watched_from.append(query["resourceVersion"])
        if len(self.watched_from) > len(self.watches):
            self.idle.set()
            await asyncio.Event().wait()  # an open watch with nothing to say
        async for event in self.watches[len(self.watched_from) - 1]():
            yield event


def _events(*events: JSON, then: Exception | None = None) -> Callable[[], AsyncIterator[JSON]]:
    async def stream() -> AsyncIterator[JSON]:
        for event in events:
            yield event
        if then is not None:
            raise then

    return stream


async def test_a_failing_watch_backs_off_and_resumes_from_the_last_version() -> None:
    refused = aiohttp.ClientConnectionError("connection refused")
    api = ScriptedApi(
        listings=[
            {"metadata": {"resourceVersion": "100"}, "items": [_deployment("100", 1)]},
            {"metadata": {"resourceVersion": "200"}, "items": [_deployment("200", 4)]},
        ],
        watches=[
            # 1: one event, then the connection drops mid-stream
            _events(
                _event("MODIFIED", _deployment("101", 2)),
                then=aiohttp.ClientPayloadError("closed mid-stream"),
            ),
            # 2-6: the server is away
            _events(then=refused),
            _events(then=ApiError(503, "unavailable")),
            _events(then=refused),
            _events(then=ApiError(429, "too many requests")),
            _events(then=refused),
            # 7: back; the watch ends as the server's timeout ends it, and is opened again
            _events(_event("MODIFIED", _deployment("102", 3))),
            # 8: a single failure after events flowed again
            _events(then=refused),
            # 9: the version is too old now: only this lists again
            _events(_event("ERROR", {"code": 410, "message": "too old resource version"})),
        ],
    )
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    informer = Informer(
        api,  # type: ignore[arg-type]
        DEPLOYMENT,
        backoff=Backoff(base=1.0, cap=8.0),
        sleep=sleep,
    )
    seen: list[str] = []
    informer.handlers.append(lambda _t, obj, _old: seen.append(obj["metadata"]["resourceVersion"]))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(api.idle.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # every retry resumed from the last version seen; the list ran once more, after the 410
    assert api.watched_from == [
        "100",
        "101",
        "101",
        "101",
        "101",
        "101",
        "101",
        "102",
        "102",
        "200",
    ]
    assert api.lists == 2
    assert seen == ["100", "101", "102", "200"]  # nothing missed, nothing twice
    # a delay per failure (none after the server's own timeout or the 410), each within the
    # jitter of its ceiling: 1 s doubling per failure, capped at 8 s, back to 1 s after events
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 1.0]
    assert len(delays) == len(ceilings)
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling, (delays, ceilings)
    assert max(delays) <= 8.0
    assert informer.get("d", "n") == {
        **_deployment("200", 4),
        "apiVersion": "apps/v1",
        "kind": "Deployment",
    }


async def test_a_failing_list_backs_off_before_listing_again() -> None:
    class FlakyList(ScriptedApi):
        async def request(self, method: str, path: str, query: Mapping[str, str]) -> JSON:
            self.lists += 1
            if self.lists <= 3:
                raise ApiError(500, "etcd timeout")
            return {"metadata": {"resourceVersion": "7"}, "items": []}

    api = FlakyList(listings=[], watches=[])
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    informer = Informer(
        api,  # type: ignore[arg-type]
        DEPLOYMENT,
        backoff=Backoff(base=1.0, cap=3.0),
        sleep=sleep,
    )
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(api.idle.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert api.lists == 4 and api.watched_from == ["7"]
    assert informer.synced.is_set()
    for delay, ceiling in zip(delays, [1.0, 2.0, 3.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling, delays
