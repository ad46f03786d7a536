"""The step caller over the upstream pool: URL handling, framing, answer bounds, timeouts,
against a raw HTTP server on loopback (so each answer's framing is chosen by the test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from wharf_router.graph.client import HttpCaller, plain_http_target
from wharf_router.graph.engine import RoutingError

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


def test_plain_http_targets() -> None:
    t = plain_http_target("http://iris.default.svc.cluster.local/v1/models/iris:predict?x=1")
    assert t is not None
    assert t.address == ("iris.default.svc.cluster.local", 80)
    assert t.path == "/v1/models/iris:predict?x=1"
    assert t.host == b"iris.default.svc.cluster.local"
    t = plain_http_target("http://127.0.0.1:9000")
    assert t is not None and (t.address, t.path, t.host) == (
        ("127.0.0.1", 9000),
        "/",
        b"127.0.0.1:9000",
    )
    assert plain_http_target("https://secure.example.com/predict") is None


async def _serve(handler: Handler) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                await handler(head, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/models/m:predict"


@pytest.fixture
async def chunked_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    heads: list[bytes] = []

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        heads.append(head)
        writer.write(
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )

    async for url in _serve(answer):
        yield url, heads


async def test_a_chunked_answer_is_read_whole_and_headers_are_framed_once(
    chunked_server: tuple[str, list[bytes]],
) -> None:
    url, heads = chunked_server
    caller = HttpCaller(timeout_s=10)
    try:
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", "999"),
            ("Host", "spoofed"),
            # the body goes with the head: a replica's interim 100 Continue is not asked for
            ("Expect", "100-continue"),
            ("X-Trace", "t"),
        ]
        answer = await caller(url, b'{"a": 1}', headers)
        again = await caller(url, b"{}", [])
    finally:
        await caller.aclose()
    assert (answer.status, answer.body) == (201, b"hello world")
    assert again.body == b"hello world"
    head = heads[0].lower()
    assert head.startswith(b"post /v1/models/m:predict http/1.1\r\n")
    assert head.count(b"content-length:") == 1 and b"content-length: 8\r\n" in head
    assert head.count(b"host:") == 1 and b"host: 127.0.0.1:" in head
    assert b"x-trace: t\r\n" in head
    assert b"expect:" not in head


@pytest.fixture
async def big_server() -> AsyncIterator[str]:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        if b"chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n" + b"x" * 1024)

    async for url in _serve(answer):
        yield url


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_an_answer_over_the_bound_is_a_500(big_server: str, framing: str) -> None:
    caller = HttpCaller(timeout_s=10, max_answer_bytes=100)
    try:
        with pytest.raises(RoutingError) as err:
            await caller(big_server, b"{}", [("X-Mode", framing)] if framing == "chunked" else [])
    finally:
        await caller.aclose()
    assert err.value.status == 500 and "over 100 bytes" in err.value.cause


async def test_a_silent_step_times_out() -> None:
    released = asyncio.Event()

    async def never(head: bytes, writer: asyncio.StreamWriter) -> None:
        await released.wait()

    async for url in _serve(never):
        caller = HttpCaller(timeout_s=0.2)
        try:
            with pytest.raises(RoutingError) as err:
                await caller(url, b"{}", [])
        finally:
            released.set()
            await caller.aclose()
        assert err.value.status == 500 and "timeout" in err.value.cause


@pytest.mark.parametrize(
    "cut",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["short-of-its-length", "before-its-last-chunk"],
)
async def test_an_answer_cut_by_its_connection_is_a_500_not_a_short_answer(cut: bytes) -> None:
    async def dies_mid_answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(cut)
        writer.close()

    async for url in _serve(dies_mid_answer):
        caller = HttpCaller(timeout_s=10)
        try:
            with pytest.raises(RoutingError) as err:
                await caller(url, b"{}", [])
        finally:
            await caller.aclose()
        assert err.value.status == 500 and "closed the connection" in err.value.cause
