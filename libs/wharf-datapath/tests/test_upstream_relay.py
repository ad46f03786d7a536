"""A streamed answer's body relayed from the connection's data callback: every byte in order
(what was read before the switch first), reads paused and resumed on demand, the connection
pooled only after a complete message, and a chunked body cut by its connection an error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from wharf_datapath.upstream import UpstreamCutError, UpstreamPool
from wharf_e2e.testing import until

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@dataclass
class Scripted:
    """A server whose answers the test writes: `out.put(bytes)` sends, `out.put(None)` closes
    the connection. `ended` is set when a connection's client closed it."""

    out: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    connections: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.ended.set()
                    return
                while (data := await self.out.get()) is not None:
                    if data == b"":
                        break  # this answer is over: the next request
                    writer.write(data)
                    await writer.drain()
                if data is None:
                    return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, tuple[str, int], UpstreamPool]]:
    s = Scripted()
    server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    pool = UpstreamPool()
    try:
        yield s, ("127.0.0.1", server.sockets[0].getsockname()[1]), pool
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


async def until_true(check: Callable[[], bool]) -> None:
    await until(check, "the condition", timeout_s=20)


async def test_a_relay_passes_every_byte_in_order_and_pools_the_connection(
    scripted: tuple[Scripted, tuple[str, int], UpstreamPool],
) -> None:
    s, address, pool = scripted
    for _ in range(2):  # the second request on the pooled connection
        # the head and two chunks in one write: the second is read before the relay starts
        await s.out.put(HEAD + chunk(b"data: one\n\n") + chunk(b"data: two\n\n"))
        resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
        assert resp.stream is not None
        first = await anext(resp.stream)
        got: list[bytes] = [first]
        end = resp.stream.relay(got.append)
        await s.out.put(chunk(b"data: three\n\n") + b"0\r\n\r\n")
        await s.out.put(b"")
        await end
        assert b"".join(got) == b"data: one\n\ndata: two\n\ndata: three\n\n"
        assert len(pool._idle[address]) == 1
    assert s.connections == 1


async def test_a_paused_relay_reads_nothing_until_resumed(
    scripted: tuple[Scripted, tuple[str, int], UpstreamPool],
) -> None:
    s, address, pool = scripted
    await s.out.put(HEAD + chunk(b"data: one\n\n"))
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    got = [await anext(resp.stream)]
    end = resp.stream.relay(got.append)
    resp.stream.pause_reading()
    await s.out.put(chunk(b"data: two\n\n"))
    await until_true(s.out.empty)
    for _ in range(20):  # the loop turns: nothing is read while paused
        await asyncio.sleep(0.005)
    assert got == [b"data: one\n\n"]
    resp.stream.resume_reading()
    await until_true(lambda: len(got) == 2)
    assert got[1] == b"data: two\n\n"
    await s.out.put(b"0\r\n\r\n")
    await end


async def test_a_chunked_body_cut_by_its_connection_fails_the_relay(
    scripted: tuple[Scripted, tuple[str, int], UpstreamPool],
) -> None:
    s, address, pool = scripted
    await s.out.put(HEAD + chunk(b"data: one\n\n"))
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    got = [await anext(resp.stream)]
    end = resp.stream.relay(got.append)
    await s.out.put(chunk(b"data: two\n\n"))
    await s.out.put(None)  # the server dies mid-answer
    with pytest.raises(UpstreamCutError):
        await end
    assert got == [b"data: one\n\n", b"data: two\n\n"]
    assert not pool._idle.get(address)


async def test_a_chunked_body_cut_by_its_connection_fails_the_iterator_too(
    scripted: tuple[Scripted, tuple[str, int], UpstreamPool],
) -> None:
    s, address, pool = scripted
    await s.out.put(HEAD + chunk(b"data: one\n\n"))
    await s.out.put(None)
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    got: list[bytes] = []
    with pytest.raises(UpstreamCutError):
        async for piece in resp.stream:
            got.append(piece)
    assert got == [b"data: one\n\n"]
    assert not pool._idle.get(address)


async def test_a_relay_left_early_closes_the_connection(
    scripted: tuple[Scripted, tuple[str, int], UpstreamPool],
) -> None:
    s, address, pool = scripted
    await s.out.put(HEAD + chunk(b"data: one\n\n"))
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    await anext(resp.stream)
    end = resp.stream.relay(lambda _: None)
    await resp.stream.aclose()  # the client went away: the server must see it
    await s.out.put(b"")  # the server reads again: the connection's end
    await asyncio.wait_for(s.ended.wait(), 20)
    assert end.cancelled()
    assert not pool._idle.get(address)
