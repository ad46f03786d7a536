"""The request head (request line and headers) is bounded: 431 and a close above the limit.

Found by the abuse suite (e2e/abuse): httptools buffered 10,000 headers, or one header of
1 MiB, and the request was served; a head that never ends grew without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from wharf_datapath.http_head import DEFAULT_MAX_HEAD_BYTES, HeadLimitedHttpProtocol, head_limited
from wharf_datapath.sniffing import SniffingHttpProtocol

LIMIT = 4096


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


Serve = Callable[..., contextlib.AbstractAsyncContextManager[int]]


@contextlib.asynccontextmanager
async def limited(serve: Serve) -> AsyncIterator[int]:
    async with serve(echo_length, http=head_limited(LIMIT)) as port:
        yield port


async def _exchange(port: int, data: bytes, pieces: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        step = -(-len(data) // pieces)
        for at in range(0, len(data), step):
            writer.write(data[at : at + step])
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        answer = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), 30):
                answer += chunk
                if _whole(answer):
                    break
        return answer
    finally:
        writer.close()


def _whole(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _get(headers: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


async def test_many_headers_are_refused_with_431(serve: Serve) -> None:
    async with limited(serve) as port:
        answer = await _exchange(port, _get(b"".join(b"X-H%d: v\r\n" % i for i in range(2000))))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"larger than the limit of 4096 bytes" in answer


async def test_a_header_that_never_ends_is_refused_before_it_ends(serve: Serve) -> None:
    async with limited(serve) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # at most 100 KiB: the answer comes long before
                writer.write(b"v" * 1024)
                await writer.drain()
                await asyncio.sleep(0)
                if answer := await _read_some(reader):
                    break
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


async def _read_some(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(65536), 0.05)
    except TimeoutError:
        return b""


async def test_a_head_under_the_limit_and_a_large_body_are_served(serve: Serve) -> None:
    body = b"b" * (4 * LIMIT)
    head = b"X-Fill: " + b"f" * (LIMIT - 200) + b"\r\nContent-Length: %d\r\n" % len(body)
    async with limited(serve) as port:
        answer = await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(str(len(body)).encode())


async def test_pipelined_requests_with_bodies_are_not_counted_as_heads(serve: Serve) -> None:
    body = b"b" * (2 * LIMIT)
    one = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    async with limited(serve) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(one * 3)
        answer = b""
        while answer.count(b"HTTP/1.1 200 ") < 3 or not answer.endswith(b"8192"):
            chunk = await asyncio.wait_for(reader.read(65536), 30)
            assert chunk, answer
            answer += chunk
        writer.close()
    assert b"431" not in answer


def test_the_ingress_protocol_is_bounded_too() -> None:
    assert issubclass(SniffingHttpProtocol, HeadLimitedHttpProtocol)
    assert SniffingHttpProtocol.max_head_bytes == DEFAULT_MAX_HEAD_BYTES


# -- slow heads (slowloris) ---------------------------------------------------------------------

SHORT_S = 0.5


@contextlib.asynccontextmanager
async def impatient(serve: Serve) -> AsyncIterator[int]:
    async with serve(echo_length, http=head_limited(LIMIT, head_timeout_s=SHORT_S)) as port:
        yield port


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    answer = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            answer += chunk
    return answer


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(serve: Serve) -> None:
    async with impatient(serve) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reading = asyncio.create_task(_read_all(reader))
        with contextlib.suppress(ConnectionError):
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000:
                if reading.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        answer = await reading
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"not received within 0.5 s" in answer


async def test_a_connection_that_sends_nothing_is_closed(serve: Serve) -> None:
    async with impatient(serve) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await _read_all(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


async def test_an_idle_keep_alive_connection_is_left_to_the_keep_alive_timeout(
    serve: Serve,
) -> None:
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    async with impatient(serve) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(one)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n0"), 30)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            # idle longer than the head timeout: between requests, that is keep-alive's business
            await asyncio.sleep(2 * SHORT_S)
        writer.close()


async def test_an_h2c_connection_handed_to_the_grpc_sniffer_keeps_no_head_clock(
    serve: Serve,
) -> None:
    """Also: once both ends have closed, the pipe closes both of its sockets (it used to keep
    them half-closed forever: a file descriptor leak per gRPC connection on the HTTP port)."""
    import hpack

    from wharf_datapath.sniffing import EMPTY_SETTINGS, H2_PREFACE, protocol_for

    echoes: list[asyncio.BaseTransport] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            echoes.append(transport)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    upstream = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]

    async def port_for(authority: str | None) -> tuple[str, int]:
        return "127.0.0.1", upstream_port

    block = hpack.Encoder().encode([(":method", "POST"), (":authority", "a-b.example.com")])
    headers = len(block).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + block
    impatient_ingress = type("Impatient", (protocol_for(port_for),), {"head_timeout_s": SHORT_S})
    try:
        async with serve(echo_length, http=impatient_ingress) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            ack = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # of the sniffer's SETTINGS
            writer.write(H2_PREFACE + EMPTY_SETTINGS + ack + headers)
            expected = EMPTY_SETTINGS + H2_PREFACE + EMPTY_SETTINGS + headers
            got = await asyncio.wait_for(reader.readexactly(len(expected)), 30)
            assert got == expected
            await asyncio.sleep(2 * SHORT_S)  # past the head timeout: the pipe must stay open
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 30) == b"ping"
            writer.close()
            await writer.wait_closed()
            # the client's EOF goes through the pipe to the echo server, which closes; that
            # close comes back through the pipe and closes the ingress's side
            for _ in range(600):
                if all(t.is_closing() for t in echoes):
                    break
                await asyncio.sleep(0.05)
            for _ in range(10):  # and the ingress closes both its sockets (warnings are errors:
                await asyncio.sleep(0.01)  # one left open fails the test at the end)
    finally:
        upstream.close()
        await upstream.wait_closed()


# -- slow bodies ----------------------------------------------------------------------------------

RATE = 1000  # bytes/s


@contextlib.asynccontextmanager
async def body_rate(serve: Serve, app: Any = echo_length, rate: int = RATE) -> AsyncIterator[int]:
    protocol = head_limited(LIMIT, min_body_rate=rate, body_grace_s=SHORT_S)
    async with serve(app, http=protocol) as port:
        yield port


async def _trickle_body(port: int, every_s: float, piece: bytes, total: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
    reading = asyncio.create_task(_read_all(reader))
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < total and not reading.done():
            writer.write(piece[: total - sent])
            sent += len(piece[: total - sent])
            await writer.drain()
            await asyncio.sleep(every_s)
    answer = await reading
    writer.close()
    return answer


async def test_a_body_sent_a_few_bytes_at_a_time_is_cut_off_with_408(serve: Serve) -> None:
    async with body_rate(serve) as port:
        # 4 bytes every 50 ms: 80 bytes/s, for a body that would take 2 minutes
        answer = await _trickle_body(port, 0.05, b"bbbb", 10_000)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request body slower than 1000 bytes/s" in answer


async def test_a_body_above_the_rate_is_served_however_long_it_takes(serve: Serve) -> None:
    async with body_rate(serve) as port:
        # 200 bytes every 50 ms: about 4,000 bytes/s, for longer than the grace period
        answer = await _trickle_body(port, 0.05, b"b" * 200, 8_000)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"8000")


async def test_an_application_that_does_not_read_is_not_the_clients_fault(serve: Serve) -> None:
    async def reads_late(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(4 * SHORT_S)  # the body waits in uvicorn's buffer, reading paused
        await echo_length(scope, receive, send)

    body = b"b" * (4 * 1024 * 1024)  # past uvicorn's high-water mark: it pauses reading
    # at 1 MB/s the body would be late by the first check if the paused time counted (uvicorn
    # holds about 64 KiB before it pauses), and loopback is far faster once reading resumes
    async with body_rate(serve, reads_late, rate=1_000_000) as port:
        answer = await _exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(str(len(body)).encode())


async def test_keep_alive_requests_set_no_timer_each(serve: Serve) -> None:
    """Both clocks share one timer per connection, set only to an earlier time: requests on a
    kept-alive connection set deadlines and find it already due sooner (a timer set and
    cancelled per request cost every request of every server). Timers are counted at the
    loop; uvicorn's own keep-alive timer (one per response) is not ours."""
    timers: list[object] = []

    class CountingLoop:
        def __init__(self, loop: asyncio.AbstractEventLoop, keep_alive: object) -> None:
            self._loop, self._keep_alive = loop, keep_alive

        def __getattr__(self, name: str) -> Any:
            return getattr(self._loop, name)

        def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
            timers.append(callback)
            return self._loop.call_at(when, callback, *args)

        def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
            if callback != self._keep_alive:
                timers.append(callback)
            return self._loop.call_later(delay, callback, *args)

    class Counted(head_limited(LIMIT)):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.loop = CountingLoop(self.loop, self.timeout_keep_alive_handler)  # type: ignore[assignment]
            super().connection_made(transport)

    one = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    async with serve(echo_length, http=Counted) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(20):
            writer.write(one)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n3"), 30)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
        writer.close()
    # the head's clock at the connection's start, moved once to the first body's earlier check
    assert 1 <= len(timers) <= 2, timers


async def _second_request(port: int, second: list[bytes], every_s: float) -> bytes:
    """One whole request, a pause past the clocks' first deadlines (the connection's timer
    fires and finds nothing to do), then `second` in pieces `every_s` apart; what comes
    back after the first answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n0"), 30)
    assert first.startswith(b"HTTP/1.1 200 "), first
    await asyncio.sleep(1.5 * SHORT_S)
    reading = asyncio.create_task(_read_all(reader))
    with contextlib.suppress(ConnectionError):
        for piece in second:
            if reading.done():
                break
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(every_s)
    answer = await reading
    writer.close()
    return answer


async def test_a_slow_head_on_a_kept_alive_connection_is_cut_off_with_408(serve: Serve) -> None:
    async with impatient(serve) as port:
        slow = [bytes([c]) for c in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200]
        answer = await _second_request(port, slow, 0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"not received within 0.5 s" in answer


async def test_a_slow_body_on_a_kept_alive_connection_is_cut_off_with_408(serve: Serve) -> None:
    protocol = head_limited(LIMIT, head_timeout_s=SHORT_S, min_body_rate=RATE, body_grace_s=SHORT_S)
    async with serve(echo_length, http=protocol) as port:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"
        answer = await _second_request(port, [head] + [b"bbbb"] * 2500, 0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request body slower than 1000 bytes/s" in answer


async def test_an_answer_given_before_the_body_is_not_followed_by_a_408(serve: Serve) -> None:
    """An application that answers without reading the body (a 401, a 413) has answered: the
    body trickling in after it closes the connection, with nothing more written."""

    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b"no"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async with body_rate(serve, refuses) as port:
        answer = await _trickle_body(port, 0.05, b"bbbb", 10_000)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert answer.endswith(b"\r\n\r\nno"), answer
    assert b"408" not in answer
