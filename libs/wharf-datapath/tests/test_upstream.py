"""The upstream pool reuses keep-alive connections and resends on a stale one."""

from __future__ import annotations

import asyncio

from wharf_datapath.upstream import UpstreamConnectError, UpstreamPool


async def test_keep_alive_connections_are_reused_and_stale_ones_replaced() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        served = 0
        try:
            while served < 3:  # then the server drops the connection, as an idle timeout would
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                served += 1
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        for i in range(5):
            resp = await pool.request(
                ("127.0.0.1", port), "POST", "/x", [(b"host", b"h")], b"hello %d" % i
            )
            assert (resp.status, bytes(resp.body)) == (200, b"hello %d" % i)
            await asyncio.sleep(0.01)
    finally:
        await pool.aclose()
        await asyncio.sleep(0.05)  # the server's handlers see the end of their connections
        server.close()
        await server.wait_closed()
    assert connections == 2


async def test_a_refused_connection_says_so() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = UpstreamPool()
    try:
        await pool.request(("127.0.0.1", port), "GET", "/", [], b"")
    except UpstreamConnectError as exc:
        assert f"127.0.0.1:{port}" in str(exc)
    else:
        raise AssertionError("expected UpstreamConnectError")


async def test_a_body_without_length_streams_chunk_by_chunk() -> None:
    second = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(2):  # two requests on one connection
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                    b"b\r\ndata: one\n\n\r\n"
                )
                await writer.drain()
                await second.wait()  # the client must see "one" before "two" exists
                writer.write(b"b\r\ndata: two\n\n\r\n0\r\n\r\n")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        for _ in range(2):
            second.clear()
            resp = await pool.request(("127.0.0.1", port), "GET", "/events", [(b"host", b"h")], b"")
            assert resp.status == 200 and resp.stream is not None
            chunks = []
            async for chunk in resp.stream:
                chunks.append(chunk)
                second.set()  # only now may the server send the rest
            assert chunks == [b"data: one\n\n", b"data: two\n\n"]
        assert (
            len(pool._idle[("127.0.0.1", port)]) == 1
        )  # the connection went back to the pool, twice
    finally:
        await pool.aclose()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
