"""The peer exchange's listener and sender in one event loop, over real loopback sockets: two
links that are each other's peers, the listener's refusals, and a peer that is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from gateway_testkit import free_port

from wharf_datapath.upstream import UpstreamPool
from wharf_e2e.testing import until
from wharf_router.gateway.peer_link import NEWS_PATH, PeerLink, PeerSettings
from wharf_router.gateway.peers import MAX_MESSAGE_BYTES, Outbox, PeerMessage, PodLoad

TOKEN = b"a-shared-secret-of-some-length"


@dataclass
class Replica:
    link: PeerLink
    port: int
    got: list[PeerMessage] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    load: dict[str, PodLoad] = field(default_factory=dict)


async def replica(name: str, port: int, peer_port: int, upstream: UpstreamPool) -> Replica:
    settings = PeerSettings(
        listen=("127.0.0.1", port), peers=(f"http://127.0.0.1:{peer_port}",), token=TOKEN
    )
    r = Replica(None, port)  # type: ignore[arg-type]
    r.link = PeerLink(
        settings,
        Outbox(name),
        lambda: r.load,
        r.got.append,
        upstream,
        lambda kind, outcome: r.outcomes.append((kind, outcome)),
    )
    await r.link.start()
    return r


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Replica, Replica]]:
    upstream = UpstreamPool()
    port_a, port_b = free_port(), free_port()
    a = await replica("a", port_a, port_b, upstream)
    b = await replica("b", port_b, port_a, upstream)
    yield a, b
    await a.link.aclose()
    await b.link.aclose()
    await upstream.aclose()


async def test_a_placement_reaches_the_peer_with_the_senders_counts(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    a.load = {"pod-1": PodLoad(1, 1, 25)}
    a.link.placed("pod-1", [11, 22, 33])
    await until(lambda: any(m.placements for m in b.got), "B to get A's placement", 10)
    message = next(m for m in b.got if m.placements)
    assert message.sender == "a"
    assert message.placements[0].pod == "pod-1" and message.placements[0].hashes == (11, 22, 33)
    assert message.load == {"pod-1": PodLoad(1, 1, 25)}
    # a change of counts alone is news too
    a.load = {}
    await until(lambda: b.got[-1].load == {}, "B to hear that A's counts went", 10)
    assert ("sent", "ok") in a.outcomes and ("received", "taken") in b.outcomes


async def test_the_listener_refuses_what_is_not_a_message(pair: tuple[Replica, Replica]) -> None:
    _, b = pair
    url = f"http://127.0.0.1:{b.port}{NEWS_PATH}"
    headers = {"x-wharf-peer-token": TOKEN.decode()}
    async with httpx.AsyncClient(timeout=10) as client:
        malformed = await client.post(url, content=b'{"v": 1, "sender": "x y"}', headers=headers)
        assert malformed.status_code == 400 and "sender" in malformed.text
        big = b"x" * (MAX_MESSAGE_BYTES + 1)
        too_large = await client.post(url, content=big, headers=headers)
        assert too_large.status_code == 413
        other = await client.get(f"http://127.0.0.1:{b.port}/metrics", headers=headers)
        assert other.status_code == 404
        no_token = await client.post(url, content=b"{}")
        assert no_token.status_code == 401
    assert [o for k, o in b.outcomes if k == "received" and o != "taken"] == [
        "malformed",
        "too_large",
        "not_found",
        "unauthorized",
    ]
    assert not [m for m in b.got if m.sender == "x y"]


async def test_a_peer_that_is_down_costs_a_failed_send_and_nothing_else() -> None:
    upstream = UpstreamPool()
    nobody = free_port()  # nothing listens there
    a = await replica("a", free_port(), nobody, upstream)
    try:
        a.link.placed("pod-1", [1])
        await until(lambda: ("sent", "failed") in a.outcomes, "the send to fail", 10)
        # news keeps coming while the peer is down: placing is synchronous and never raises,
        # and the sender keeps running (a later failure is counted, not raised)
        for i in range(100):
            a.link.placed("pod-1", [i])
        await until(
            lambda: a.outcomes.count(("sent", "failed")) >= 2, "the next send to fail too", 30
        )
    finally:
        await a.link.aclose()
        await upstream.aclose()


async def test_placements_made_while_the_peer_is_down_reach_it_once_it_is_up() -> None:
    # A starts before B listens (two replicas of a Deployment start in any order): what A
    # places meanwhile is sent once B answers, not dropped with the failed send.
    upstream = UpstreamPool()
    port_a, port_b = free_port(), free_port()
    a = await replica("a", port_a, port_b, upstream)
    b: Replica | None = None
    try:
        a.link.placed("pod-1", [1])
        await until(lambda: ("sent", "failed") in a.outcomes, "the send to B to fail", 10)
        a.link.placed("pod-2", [2])
        b = await replica("b", port_b, port_a, upstream)
        got = b.got

        def placed() -> set[str]:
            return {p.pod for m in got for p in m.placements}

        await until(lambda: placed() == {"pod-1", "pod-2"}, "B to get both placements", 30)
    finally:
        await a.link.aclose()
        if b is not None:
            await b.link.aclose()
        await upstream.aclose()


async def test_a_connection_that_sends_nothing_is_closed(
    pair: tuple[Replica, Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A quiet or trickling connection is not a peer (peers send heartbeats): it must not hold
    # one of the listener's bounded connection slots for good.
    from wharf_router.gateway import peer_link

    monkeypatch.setattr(peer_link, "IDLE_TIMEOUT_S", 0.2)
    _, b = pair
    reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
    try:
        writer.write(b"POST /peer/v1/news HTTP/1.1\r\n")  # a head that never ends
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed by the listener, no answer
    finally:
        writer.close()
