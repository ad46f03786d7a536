"""A streamed answer's body relayed from the connection's data callback: every byte in order
(what was read before the switch first), reads paused and resumed on demand, the connection
pooled only after a complete message, and a chunked body cut by its connection an error.
An answer whose connection ends early (in its head, or short of its Content-Length) is an
error too, never a complete answer: only a body without a length nor chunks ends with its
connection.
The final answer alone decides whether its connection is kept alive: interim (1xx) answers,
read alone or with it, are read past.
Answers, streams and their parsers form no reference cycles: what a consumer drops is freed
(and its connection closed) at once, without the cycle collector."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httptools
import pytest
import uvloop

from wharf_datapath.upstream import (
    BodyStream,
    Response,
    StreamedBody,
    UpstreamClosedError,
    UpstreamCutError,
    UpstreamMalformedError,
    UpstreamPool,
    UpstreamTooLargeError,
)
from wharf_e2e.testing import until

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
STRAY = b"HTTP/1.1 500 No\r\ncontent-length: 5\r\n\r\nstray"  # a message no request asked for
GARBAGE = b"\x00not http\r\n\r\n"  # bytes that do not parse
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"


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


Scripting = tuple[Scripted, tuple[str, int], UpstreamPool]


@contextlib.asynccontextmanager
async def scripted_server() -> AsyncIterator[Scripting]:
    s = Scripted()
    server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    pool = UpstreamPool()
    try:
        yield s, ("127.0.0.1", server.sockets[0].getsockname()[1]), pool
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[Scripting]:
    async with scripted_server() as scripting:
        yield scripting


async def until_true(check: Callable[[], bool]) -> None:
    await until(check, "the condition", timeout_s=20)


async def open_stream(scripting: Scripting, *after: bytes | None) -> tuple[BodyStream, Response]:
    """A request's streamed answer, whose head and first chunk (`data: one`) the server
    writes, then each of `after` (as `Scripted.out` takes them): its body's stream, and the
    answer (which refers to the stream)."""
    s, address, pool = scripting
    await s.out.put(HEAD + chunk(b"data: one\n\n"))
    for data in after:
        await s.out.put(data)
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    return resp.stream, resp


async def test_a_relay_passes_every_byte_in_order_and_pools_the_connection(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    for _ in range(2):  # the second request on the pooled connection
        stream, _ = await open_stream(scripted)
        first = await anext(stream)
        # the second chunk arrives in the reader's buffer after the iterator's read: the
        # relay must pass it on first
        await s.out.put(chunk(b"data: two\n\n"))
        await until_true(lambda: len(reader_buffer(stream)) > 0)  # noqa: B023
        got: list[bytes] = [first]
        end = stream.relay(got.append)
        assert got == [b"data: one\n\n", b"data: two\n\n"]
        await s.out.put(chunk(b"data: three\n\n") + b"0\r\n\r\n")
        await s.out.put(b"")
        await end
        assert b"".join(got) == b"data: one\n\ndata: two\n\ndata: three\n\n"
        assert len(pool._idle[address]) == 1
    assert s.connections == 1


def reader_buffer(stream: BodyStream | None) -> bytearray:
    assert stream is not None
    buffer: bytearray = stream._conn.reader._buffer  # type: ignore[attr-defined]
    return buffer


async def test_a_relay_paused_by_the_bytes_read_before_it_stays_paused(
    scripted: Scripting,
) -> None:
    s, _, _ = scripted
    stream, _ = await open_stream(scripted)
    await anext(stream)
    await s.out.put(chunk(b"data: two\n\n"))
    await until_true(lambda: len(reader_buffer(stream)) > 0)
    got: list[bytes] = []

    def pausing(data: bytes) -> None:
        got.append(data)
        stream.pause_reading()

    end = stream.relay(pausing)
    assert got == [b"data: two\n\n"]
    await s.out.put(chunk(b"data: three\n\n"))
    await until_true(s.out.empty)
    for _ in range(20):  # the loop turns: nothing is read while paused
        await asyncio.sleep(0.005)
    assert got == [b"data: two\n\n"]
    stream.resume_reading()
    await until_true(lambda: len(got) == 2)
    stream.resume_reading()  # `pausing` paused again on the third chunk
    await s.out.put(b"0\r\n\r\n")
    await end


async def test_a_connection_paused_as_its_answer_completed_is_pooled_reading(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    stream, _ = await open_stream(scripted)
    await anext(stream)
    end = stream.relay(lambda _: stream.pause_reading())
    # the last chunk and the body's end in one read: the consumer pauses on that chunk
    await s.out.put(chunk(b"data: two\n\n") + b"0\r\n\r\n")
    await s.out.put(b"")
    await end
    assert len(pool._idle[address]) == 1
    # the next request on the pooled connection hears its answer
    await s.out.put(HEAD + chunk(b"data: again\n\n") + b"0\r\n\r\n")
    await s.out.put(b"")
    again = await asyncio.wait_for(pool.request(address, "GET", "/", [(b"host", b"h")], b""), 20)
    # the answer came in one read, so it is whole (a hang here is the bug)
    body = bytes(again.body) if again.stream is None else b"".join([c async for c in again.stream])
    assert body == b"data: again\n\n"
    assert s.connections == 1


async def test_relay_twice_or_after_the_end_is_refused(
    scripted: Scripting,
) -> None:
    stream, _ = await open_stream(scripted)
    await anext(stream)
    end = stream.relay(lambda _: None)
    with pytest.raises(RuntimeError):
        stream.relay(lambda _: None)
    await stream.aclose()
    assert end.cancelled()
    with pytest.raises(RuntimeError):
        stream.relay(lambda _: None)


async def test_a_stream_dropped_unfinished_closes_its_connection(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    stream, resp = await open_stream(scripted)
    await anext(stream)
    # its consumer raised without closing it: the last reference goes (the answer lives on)
    resp.stream = None
    del stream
    gc.collect()
    await s.out.put(b"")  # the server reads again: the connection's end
    await asyncio.wait_for(s.ended.wait(), 20)
    assert not pool._idle.get(address)


@contextlib.contextmanager
def refcount_only() -> Iterator[None]:
    """Objects are freed by reference counting only: what needs the cycle collector stays."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cyclic_garbage() -> list[str]:
    """The upstream client's objects (and parsers) that only the cycle collector would free."""
    debug = gc.get_debug()
    gc.set_debug(debug | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            type(o).__qualname__
            for o in gc.garbage
            if type(o).__module__.startswith(("wharf_datapath.", "httptools."))
        ]
    finally:
        gc.set_debug(debug)
        gc.garbage.clear()


def relay_resuming(stream: BodyStream, got: list[bytes]) -> asyncio.Future[None]:
    """Relay into `got` with a callback that refers to its stream, as a consumer that pauses
    and resumes it does."""

    def on_data(data: bytes) -> None:
        got.append(data)
        stream.resume_reading()

    return stream.relay(on_data)


async def test_a_stream_dropped_unfinished_closes_its_connection_at_once(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    with refcount_only(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream, resp = await open_stream(scripted)
        await anext(stream)
        transport = stream._conn.writer.transport
        del stream, resp  # its consumer raised without closing it
        assert transport.is_closing()
        await s.out.put(b"")  # the server reads again: the connection's end
        await asyncio.wait_for(s.ended.wait(), 20)
        assert not pool._idle.get(address)
        del transport
        gc.collect()  # nothing of it was left for the collector (an unclosed writer)
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_answers_read_to_their_end_leave_no_cycles(scripted: Scripting) -> None:
    s, address, pool = scripted
    with refcount_only():
        gc.collect()
        for _ in range(3):
            await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await s.out.put(b"")
            whole = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
            assert (whole.status, bytes(whole.body), whole.stream) == (200, b"ok", None)
            del whole

            stream, resp = await open_stream(scripted)
            got = [await anext(stream)]
            await s.out.put(b"0\r\n\r\n")
            await s.out.put(b"")
            got += [piece async for piece in stream]
            assert got == [b"data: one\n\n"]
            del stream, resp

            stream, resp = await open_stream(scripted)
            got = [await anext(stream)]
            end = relay_resuming(stream, got)
            await s.out.put(chunk(b"data: two\n\n") + b"0\r\n\r\n")
            await s.out.put(b"")
            await end
            assert got == [b"data: one\n\n", b"data: two\n\n"]
            del stream, resp, end
        assert s.connections == 1
        assert cyclic_garbage() == []


async def test_answers_that_failed_leave_no_cycles(scripted: Scripting) -> None:
    s, address, pool = scripted
    with refcount_only():
        gc.collect()
        await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await s.out.put(b"")
        with pytest.raises(UpstreamTooLargeError):
            await pool.request(address, "GET", "/", [(b"host", b"h")], b"", max_body=1)

        await s.out.put(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n")  # a malformed head
        await s.out.put(b"")
        with pytest.raises(httptools.HttpParserError):
            await pool.request(address, "GET", "/", [(b"host", b"h")], b"")

        stream, resp = await open_stream(scripted, None)  # cut after its first chunk
        with pytest.raises(UpstreamCutError):
            async for _ in stream:
                pass
        del stream, resp

        stream, resp = await open_stream(scripted)
        got = [await anext(stream)]
        end = relay_resuming(stream, got)
        await s.out.put(None)  # cut while relayed
        with pytest.raises(UpstreamCutError):
            await end
        del stream, resp, end

        stream, resp = await open_stream(scripted)
        await anext(stream)
        end = relay_resuming(stream, [])
        transport = stream._transport
        await stream.aclose()  # left early
        assert end.cancelled()
        del stream, resp, end
        # the transport lets its (relay) protocol go only once connection_lost ran: a cycle
        # through the stream is garbage only from then on
        await until_true(lambda: transport.get_protocol() is None)
        assert cyclic_garbage() == []


async def test_a_paused_relay_reads_nothing_until_resumed(
    scripted: Scripting,
) -> None:
    s, _, _ = scripted
    stream, _ = await open_stream(scripted)
    got = [await anext(stream)]
    end = stream.relay(got.append)
    stream.pause_reading()
    await s.out.put(chunk(b"data: two\n\n"))
    await until_true(s.out.empty)
    for _ in range(20):  # the loop turns: nothing is read while paused
        await asyncio.sleep(0.005)
    assert got == [b"data: one\n\n"]
    stream.resume_reading()
    await until_true(lambda: len(got) == 2)
    assert got[1] == b"data: two\n\n"
    await s.out.put(b"0\r\n\r\n")
    await end


async def test_a_chunked_body_cut_by_its_connection_fails_the_relay(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    stream, _ = await open_stream(scripted)
    got = [await anext(stream)]
    end = stream.relay(got.append)
    await s.out.put(chunk(b"data: two\n\n"))
    await s.out.put(None)  # the server dies mid-answer
    with pytest.raises(UpstreamCutError):
        await end
    assert got == [b"data: one\n\n", b"data: two\n\n"]
    assert not pool._idle.get(address)


async def test_a_chunked_body_cut_by_its_connection_fails_the_iterator_too(
    scripted: Scripting,
) -> None:
    _, address, pool = scripted
    stream, _ = await open_stream(scripted, None)  # the server closes after its first chunk
    got: list[bytes] = []
    with pytest.raises(UpstreamCutError):
        async for piece in stream:
            got.append(piece)
    assert got == [b"data: one\n\n"]
    assert not pool._idle.get(address)


async def test_a_relay_left_early_closes_the_connection(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    stream, _ = await open_stream(scripted)
    await anext(stream)
    end = stream.relay(lambda _: None)
    await stream.aclose()  # the client went away: the server must see it
    await s.out.put(b"")  # the server reads again: the connection's end
    await asyncio.wait_for(s.ended.wait(), 20)
    assert end.cancelled()
    assert not pool._idle.get(address)


async def test_a_head_cut_midway_is_no_answer_and_is_not_resent(scripted: Scripting) -> None:
    s, address, pool = scripted
    cut = b"HTTP/1.1 200 OK\r\ncontent-le"
    await s.out.put(cut)
    await s.out.put(None)
    with pytest.raises(UpstreamClosedError):
        await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert not pool._idle.get(address)
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await s.out.put(b"")
    whole = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (whole.status, bytes(whole.body)) == (200, b"ok")
    assert len(pool._idle[address]) == 1
    # cut on the pooled connection: the replica read the request, so this is no stale
    # keep-alive connection for the pool to resend on (a resend would wait for an answer that
    # is not scripted)
    await s.out.put(cut)
    await s.out.put(None)
    with pytest.raises(UpstreamClosedError):
        await asyncio.wait_for(pool.request(address, "GET", "/", [(b"host", b"h")], b""), 20)
    assert not pool._idle.get(address)
    assert s.connections == 2


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""


async def test_a_body_cut_short_of_its_length_is_cut(scripted: Scripting) -> None:
    s, address, pool = scripted
    bodies: list[bytes | StreamedBody] = [b"", StreamedBody(b"", empty(), 0)]
    for body in bodies:  # an answer read whole, to a buffered then to a streamed request
        await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await s.out.put(None)
        with pytest.raises(UpstreamCutError):
            await pool.request(address, "POST", "/", [(b"host", b"h")], body)
        assert not pool._idle.get(address)
    assert s.connections == 2


async def test_a_body_without_length_nor_chunks_ends_with_its_connection(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ")
    await s.out.put(b"world")
    await s.out.put(None)
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.status == 200 and resp.stream is not None
    assert b"".join([c async for c in resp.stream]) == b"hello world"
    assert not pool._idle.get(address)


async def test_a_head_request_closed_before_any_byte_is_no_answer(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(None)
    with pytest.raises(UpstreamClosedError):
        await pool.request(address, "HEAD", "/", [(b"host", b"h")], b"")
    assert not pool._idle.get(address)


async def test_a_head_answer_ends_with_its_head_and_pools_the_connection(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    # the length is the body a GET would have: none follows
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    await s.out.put(b"")
    head = await asyncio.wait_for(pool.request(address, "HEAD", "/", [(b"host", b"h")], b""), 20)
    assert (head.status, bytes(head.body), head.stream) == (200, b"", None)
    assert len(pool._idle[address]) == 1
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
    await s.out.put(b"")
    get = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (get.status, bytes(get.body)) == (200, b"hello")
    assert s.connections == 1


async def test_bytes_after_the_head_of_a_head_answer_are_not_its_body(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    stray = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray"
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + stray)
    await s.out.put(b"")
    head = await asyncio.wait_for(pool.request(address, "HEAD", "/", [(b"host", b"h")], b""), 20)
    assert (head.status, bytes(head.body), head.stream) == (200, b"", None)
    assert not pool._idle.get(address)


async def test_bytes_after_a_chunked_head_answer_that_do_not_parse_are_no_error_of_it(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(HEAD + GARBAGE)
    await s.out.put(b"")
    head = await asyncio.wait_for(pool.request(address, "HEAD", "/", [(b"host", b"h")], b""), 20)
    assert (head.status, bytes(head.body), head.stream) == (200, b"", None)
    assert not pool._idle.get(address)


async def test_a_message_that_came_while_its_connection_was_idle_is_no_answer(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
    first = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert bytes(first.body) == b"first"
    idle = pool._idle[address][0]
    await s.out.put(STRAY)  # after the answer, in a read of its own
    await s.out.put(b"")
    await until_true(lambda: len(idle.reader._buffer) > 0)  # type: ignore[attr-defined]
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
    await s.out.put(b"")
    second = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (second.status, bytes(second.body)) == (200, b"second")
    assert s.connections == 2  # the idle connection was closed, not used


async def test_a_pooled_connection_closed_unanswered_is_replaced_and_the_request_resent(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
    await s.out.put(b"")
    await pool.request(address, "POST", "/", [(b"host", b"h")], b"x")
    assert len(pool._idle[address]) == 1
    # the replica reads the next request on it and closes (the keep-alive race: its idle
    # timeout ran out as the request came): sent again on a new connection
    await s.out.put(None)
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
    await s.out.put(b"")
    second = await pool.request(address, "POST", "/", [(b"host", b"h")], b"x")
    assert (second.status, bytes(second.body)) == (200, b"second")
    assert s.connections == 2


async def test_an_upgrade_after_a_complete_answer_is_no_error_of_it(scripted: Scripting) -> None:
    s, address, pool = scripted
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    await s.out.put(answer + SWITCH)
    await s.out.put(b"")
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (resp.status, bytes(resp.body)) == (200, b"ok")
    assert not pool._idle.get(address)


async def test_an_upgrade_no_request_asked_for_is_a_parser_error(scripted: Scripting) -> None:
    s, address, pool = scripted
    await s.out.put(SWITCH)
    await s.out.put(b"")
    # the error every caller handles as a malformed answer (not httptools' HttpParserUpgrade)
    with pytest.raises(UpstreamMalformedError, match="switched protocols"):
        await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert not pool._idle.get(address)


async def test_a_101_without_an_upgrade_is_a_parser_error(scripted: Scripting) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    await s.out.put(b"")
    with pytest.raises(UpstreamMalformedError, match="switched protocols"):
        await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert not pool._idle.get(address)


async def test_an_answer_with_connection_close_is_not_pooled(scripted: Scripting) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    await s.out.put(b"")  # the server waits for another request: the client must close
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (resp.status, bytes(resp.body)) == (200, b"ok")
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


async def test_a_final_answer_read_with_an_interim_one_decides_keep_alive(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    # one write, so one read: the interim answer's head must not decide for the final one
    await s.out.put(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    )
    await s.out.put(b"")
    resp = await pool.request(address, "POST", "/", [(b"host", b"h")], b"hi")
    assert (resp.status, bytes(resp.body)) == (200, b"ok")
    assert (b"connection", b"close") in resp.headers
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


async def test_an_interim_answer_read_alone_is_not_the_answer(scripted: Scripting) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
    await s.out.put(b"")
    await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    # the pooled connection's reads are recorded, to hold the final answer back until the
    # interim one was read on its own
    reader = pool._idle[address][0].reader
    read = reader.read
    reads: list[bytes] = []

    async def recorded(n: int = -1) -> bytes:
        data = await read(n)
        reads.append(data)
        return data

    reader.read = recorded  # type: ignore[method-assign]
    await s.out.put(b"HTTP/1.1 100 Continue\r\n\r\n")
    second = asyncio.create_task(
        pool.request(address, "POST", "/", [(b"host", b"h"), (b"expect", b"100-continue")], b"x")
    )
    await until_true(lambda: reads == [b"HTTP/1.1 100 Continue\r\n\r\n"])
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
    await s.out.put(b"")
    resp = await asyncio.wait_for(second, 20)
    assert (resp.status, bytes(resp.body)) == (200, b"second")
    # the next request on the same connection hears its own answer
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nthird")
    await s.out.put(b"")
    third = await asyncio.wait_for(pool.request(address, "GET", "/", [(b"host", b"h")], b""), 20)
    assert (third.status, bytes(third.body)) == (200, b"third")
    assert s.connections == 1


async def test_bytes_past_the_answer_keep_its_connection_out_of_the_pool(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    stray = b"HTTP/1.1 500 No\r\nx-stray: 1\r\ncontent-length: 5\r\n\r\nstray"
    await s.out.put(answer + stray)  # in the same read, a second answer no request asked for
    await s.out.put(b"")
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    # the answer is its own: none of the stray message's fields or body joined it
    assert (resp.status, resp.headers, bytes(resp.body)) == (
        200,
        [(b"content-length", b"2")],
        b"ok",
    )
    # pooled, the next request would take the stray answer for its own
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


async def test_bytes_past_a_whole_answer_that_do_not_parse_are_no_error_of_it(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\x00not http\r\n\r\n")
    await s.out.put(b"")
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert (resp.status, bytes(resp.body)) == (200, b"ok")
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


async def read_the_stream_then(scripting: Scripting, past: bytes, relayed: bool) -> None:
    """A streamed answer whose last chunk comes with `past` in the same read, read by the
    iterator or relayed: its body is its own, it ends without an error, and its connection is
    not pooled."""
    s, address, pool = scripting
    stream, _ = await open_stream(scripting)
    got = [await anext(stream)]
    end = stream.relay(got.append) if relayed else None
    await s.out.put(chunk(b"data: two\n\n") + b"0\r\n\r\n" + past)
    await s.out.put(b"")
    if end is not None:
        await asyncio.wait_for(end, 20)
    else:
        got += [piece async for piece in stream]
    assert b"".join(got) == b"data: one\n\ndata: two\n\n"
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


async def test_a_stray_message_after_a_streamed_answer_is_not_part_of_it(
    scripted: Scripting,
) -> None:
    await read_the_stream_then(scripted, STRAY, relayed=False)


async def test_bytes_past_a_streamed_answer_that_do_not_parse_are_no_error_of_it(
    scripted: Scripting,
) -> None:
    await read_the_stream_then(scripted, GARBAGE, relayed=False)


async def test_a_stray_message_after_a_relayed_answer_is_not_relayed(
    scripted: Scripting,
) -> None:
    await read_the_stream_then(scripted, STRAY, relayed=True)


async def test_bytes_past_a_relayed_answer_that_do_not_parse_are_no_error_of_it(
    scripted: Scripting,
) -> None:
    await read_the_stream_then(scripted, GARBAGE, relayed=True)


async def test_a_streamed_answer_with_connection_close_is_not_pooled(
    scripted: Scripting,
) -> None:
    s, address, pool = scripted
    await s.out.put(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunk(b"data: one\n\n")
    )
    resp = await pool.request(address, "GET", "/", [(b"host", b"h")], b"")
    assert resp.stream is not None
    got = [await anext(resp.stream)]
    await s.out.put(chunk(b"data: two\n\n") + b"0\r\n\r\n")
    await s.out.put(b"")
    got += [piece async for piece in resp.stream]
    assert got == [b"data: one\n\n", b"data: two\n\n"]
    assert not pool._idle.get(address)
    await asyncio.wait_for(s.ended.wait(), 20)


# every test above again on uvloop, the loop the servers run on (its transports pause, resume
# and swap protocols with their own code)
ON_ASYNCIO = [
    f
    for name, f in list(globals().items())
    if name.startswith("test_") and inspect.iscoroutinefunction(f)
]


@pytest.mark.parametrize("test", ON_ASYNCIO, ids=[f.__name__ for f in ON_ASYNCIO])
def test_on_uvloop(test: Callable[[Scripting], Awaitable[None]]) -> None:
    async def scripted_test() -> None:
        async with scripted_server() as scripting:
            await test(scripting)

    uvloop.run(scripted_test())
