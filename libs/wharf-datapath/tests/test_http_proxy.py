"""The HTTP proxy against real upstream servers on loopback (uvicorn serving small ASGI apps)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_datapath.http_proxy import HttpProxy

HOST = "svc.test"
LABEL = b"x-served-by"
Serve = Callable[..., AbstractAsyncContextManager[int]]
# a guard against a hang, not a timing threshold
HANG_S = 60


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Any, payload: Any, status: int = 200, extra: Any = ()) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


def accept_queue(port: int) -> int:
    """Connections waiting in the accept queue of a loopback listener (Linux's /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            return int(fields[4].split(":")[1], 16)
    return 0


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_replica(handle: Handler) -> AsyncIterator[int]:
    """A replica that speaks raw bytes through `handle`, on loopback: its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class Echo:
    """Answers with what it saw of the request; counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.requests += 1
        body = await read_body(receive)
        await send_json(
            send,
            {
                "method": scope["method"],
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "headers": [k.decode() for k, _ in scope["headers"]],
                "length": len(body),
                "sha": hashlib.sha256(body).hexdigest(),
            },
            extra=[(b"keep-alive", b"timeout=5"), (b"x-up", b"1")],
        )


@pytest.fixture
async def proxied(serve: Serve, list_backends: Any) -> AsyncIterator[Callable[..., Any]]:
    """proxied(upstream ports, **proxy options) -> (client, backends, proxy), all closed after."""
    opened: list[Any] = []

    async def make(ports: list[int], **options: Any) -> tuple[httpx.AsyncClient, Any, HttpProxy]:
        backends = list_backends(ports)
        options.setdefault("max_body_bytes", 64 * 1024 * 1024)
        proxy = HttpProxy(backends, label_header=LABEL, **options)
        server = serve(proxy)
        port = await server.__aenter__()
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"host": HOST}, timeout=HANG_S
        )
        opened.append((server, client, proxy))
        return client, backends, proxy

    yield make
    for server, client, proxy in reversed(opened):
        await client.aclose()
        await proxy.aclose()
        await server.__aexit__(None, None, None)


async def test_forwards_by_host_with_the_label_the_raw_path_and_no_hop_by_hop_headers(
    serve: Serve, proxied: Any
) -> None:
    echo = Echo()
    async with serve(echo) as port:
        client, backends, _ = await proxied([port])
        resp = await client.post(
            "/v1/models/a%2Fb:predict?x=1",
            content=b"hello",
            headers={"proxy-authorization": "secret", "keep-alive": "5", "x-mine": "y"},
        )
        assert resp.status_code == 200
        seen = resp.json()
        assert seen["raw_path"] == "/v1/models/a%2Fb:predict" and seen["query"] == "x=1"
        assert seen["length"] == 5 and seen["method"] == "POST"
        assert "x-mine" in seen["headers"] and "host" in seen["headers"]
        assert "proxy-authorization" not in seen["headers"] and "keep-alive" not in seen["headers"]
        assert resp.headers[LABEL.decode()] == "replica-0"
        assert resp.headers["x-up"] == "1" and "keep-alive" not in resp.headers
        unknown = await client.get("/", headers={"host": "other.test"})
        assert unknown.status_code == 404 and "other.test" in unknown.json()["error"]
        assert backends.leased == backends.released == 1


async def test_server_sent_events_pass_through_chunk_by_chunk(serve: Serve, proxied: Any) -> None:
    first_seen = asyncio.Event()

    async def events(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await first_seen.wait()  # "two" exists only once the client has "one"
        await send({"type": "http.response.body", "body": b"data: two\n\n"})

    async with serve(events) as port:
        client, _, _ = await proxied([port])
        async with client.stream("GET", "/events") as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            chunks = []
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)
                first_seen.set()
        assert chunks == [b"data: one\n\n", b"data: two\n\n"]


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_large_body_reaches_the_replica_while_it_is_still_arriving(
    serve: Serve, proxied: Any, with_length: bool
) -> None:
    buffer = 64 * 1024
    started = asyncio.Event()
    got: list[int] = []

    async def count(scope: Any, receive: Any, send: Any) -> None:
        digest, total = hashlib.sha256(), 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            total += len(chunk)
            if total > 2 * buffer:
                started.set()
            if not message.get("more_body"):
                break
        got.append(total)
        await send_json(send, {"length": total, "sha": digest.hexdigest()})

    head, tail = b"a" * (4 * buffer), b"b" * (4 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield head
        # the rest is sent only once the replica has bytes: a proxy that read the whole body
        # first would wait here forever
        await asyncio.wait_for(started.wait(), HANG_S)
        for i in range(0, len(tail), 65536):
            yield tail[i : i + 65536]

    async with serve(count) as port:
        client, _, _ = await proxied([port], buffer_bytes=buffer)
        headers = {"content-length": str(len(head) + len(tail))} if with_length else {}
        resp = await client.post("/v1/models/m:predict", content=body(), headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "length": len(head) + len(tail),
            "sha": hashlib.sha256(head + tail).hexdigest(),
        }
        assert got == [len(head) + len(tail)]


async def test_a_body_over_the_limit_is_413_naming_the_limit(serve: Serve, proxied: Any) -> None:
    echo = Echo()

    async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * size

    async with serve(echo) as port:
        client, _, _ = await proxied([port], max_body_bytes=1000, buffer_bytes=100)
        declared = await client.post("/", content=b"x" * 1001)
        assert declared.status_code == 413
        assert declared.json() == {"error": "request body larger than the limit of 1000 bytes"}
        assert echo.requests == 0  # refused before anything was sent
        chunked = await client.post("/", content=chunks(5, 300))
        assert chunked.status_code == 413
        assert "1000 bytes" in chunked.json()["error"]
        at_limit = await client.post("/", content=chunks(4, 250))
        assert at_limit.status_code == 200 and at_limit.json()["length"] == 1000


async def test_a_refused_replica_is_marked_and_the_request_goes_to_another(
    serve: Serve, proxied: Any, refused_port: Any
) -> None:
    echo = Echo()
    dead = await refused_port()
    async with serve(echo) as port:
        client, backends, _ = await proxied([dead, port])
        resp = await client.post("/v1/models/m:predict", content=b"{}")
        assert resp.status_code == 200 and resp.headers[LABEL.decode()] == "replica-1"
        assert backends.unreachable == {dead}
        assert backends.leased == backends.released == 2


async def test_a_streamed_body_is_retried_when_nothing_was_sent(
    serve: Serve, proxied: Any, refused_port: Any
) -> None:
    echo = Echo()
    dead = await refused_port()
    body = bytes(range(256)) * 1024
    async with serve(echo) as port:
        client, _, _ = await proxied([dead, port], buffer_bytes=1024)
        resp = await client.post("/", content=body)
        assert resp.status_code == 200
        assert resp.json()["sha"] == hashlib.sha256(body).hexdigest()


async def test_unanswered_requests_are_resent_only_when_idempotent(
    serve: Serve, proxied: Any
) -> None:
    seen = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # reads the request, then closes without a byte of answer (a replica that died on it)
        nonlocal seen
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        seen += 1
        writer.close()

    closer = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    closer_port = closer.sockets[0].getsockname()[1]
    echo = Echo()
    try:
        async with serve(echo) as port:
            client, _, _ = await proxied([closer_port, port])
            get = await client.get("/v2/health/ready")
            assert get.status_code == 200 and get.headers[LABEL.decode()] == "replica-1"
            client, _, _ = await proxied([closer_port, port])
            post = await client.post("/v1/models/m:predict", content=b"{}")
            assert post.status_code == 502
            assert "closed the connection without answering" in post.json()["error"]
            assert seen == 2 and echo.requests == 1
    finally:
        closer.close()
        await closer.wait_closed()


async def test_no_replica_is_503(serve: Serve, proxied: Any, refused_port: Any) -> None:
    client, backends, _ = await proxied([await refused_port()])
    resp = await client.get("/")
    assert resp.status_code == 503
    assert resp.json() == {"error": "every replica is unreachable"}
    assert backends.leased == backends.released == 1


async def test_two_host_headers_are_refused(serve: Serve, list_backends: Any) -> None:
    echo = Echo()
    async with serve(echo) as upstream:
        proxy = HttpProxy(list_backends([upstream]), max_body_bytes=1024)
        async with serve(proxy) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /v2/health/ready HTTP/1.1\r\nHost: other.test\r\nHost: svc.test\r\n\r\n"
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            assert body == {"error": "more than one Host header"}
            writer.close()
        await proxy.aclose()
    assert echo.requests == 0


async def test_a_gone_replica_loses_its_pooled_connections(serve: Serve, proxied: Any) -> None:
    echo = Echo()
    async with serve(echo) as port:
        client, backends, proxy = await proxied([port])
        assert (await client.get("/")).status_code == 200
        assert proxy.upstream._idle[("127.0.0.1", port)]
        for callback in backends.gone:
            callback("127.0.0.1", port)
        assert ("127.0.0.1", port) not in proxy.upstream._idle


async def test_a_request_reset_unread_is_resent_whatever_its_method(
    serve: Serve, proxied: Any
) -> None:
    # a replica killed with the request in its accept queue: the kernel resets the connection
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    doomed = listener.getsockname()[1]
    echo = Echo()
    async with serve(echo) as port:
        client, _, _ = await proxied([doomed, port])
        request = asyncio.create_task(client.post("/v1/models/m:predict", content=b"{}"))
        while accept_queue(doomed) == 0:  # the proxy's connection waits to be accepted
            assert not request.done(), "answered before the replica was killed"
            await asyncio.sleep(0.01)
        listener.close()
        resp = await request
        assert resp.status_code == 200 and resp.headers[LABEL.decode()] == "replica-1"
        assert echo.requests == 1


async def test_a_replica_cut_mid_stream_cuts_the_clients_stream_too(
    serve: Serve, proxied: Any
) -> None:
    async def dies_mid_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n"
        )
        await writer.drain()
        writer.close()  # no last chunk: the answer is cut

    async with raw_replica(dies_mid_answer) as port:
        client, _, _ = await proxied([port])
        chunks = []
        with pytest.raises(httpx.RemoteProtocolError):  # not a complete answer, as before
            async with client.stream("GET", "/events") as resp:
                async for chunk in resp.aiter_raw():
                    chunks.append(chunk)
        assert chunks == [b"data: one\n\n"]


async def test_a_replica_cut_short_of_its_length_is_no_complete_answer(
    serve: Serve, proxied: Any
) -> None:
    async def dies_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await writer.drain()
        writer.close()  # five bytes short

    async with raw_replica(dies_mid_body) as port:
        client, backends, _ = await proxied([port])
        resp = await client.get("/v2/models/m")
        # the whole answer is read before its head goes out: the client hears of the cut
        assert resp.status_code == 502
        assert "closed the connection" in resp.json()["error"]
        assert backends.leased == backends.released == 1  # a cut answer is not sent again


async def test_a_malformed_answer_is_502_naming_the_replica(serve: Serve, proxied: Any) -> None:
    async def answers_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the proxy closes the connection
        writer.close()

    async with raw_replica(answers_garbage) as port:
        client, backends, _ = await proxied([port])
        resp = await client.get("/v2/models/m")
        assert resp.status_code == 502
        assert "malformed answer" in resp.json()["error"]
        assert backends.leased == backends.released == 1  # the replica read it: not resent


async def test_a_stream_that_turns_malformed_cuts_the_clients_stream(
    serve: Serve, proxied: Any
) -> None:
    first_chunk_passed = asyncio.Event()

    async def turns_bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n"
        )
        await writer.drain()
        await first_chunk_passed.wait()  # the answer has gone out: the stream is under way
        writer.write(b"not a chunk size\r\n")
        await writer.drain()
        await reader.read()  # until the proxy closes the connection
        writer.close()

    async with raw_replica(turns_bad) as port:
        client, _, _ = await proxied([port])
        chunks = []
        with pytest.raises(httpx.RemoteProtocolError):  # no last chunk: not a complete answer
            async with client.stream("GET", "/events") as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_raw():
                    chunks.append(chunk)
                    first_chunk_passed.set()
        assert chunks == [b"data: one\n\n"]


async def test_a_head_answer_keeps_the_replicas_length(serve: Serve, proxied: Any) -> None:
    async def heads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
        )
        await writer.drain()
        await reader.read()  # until the proxy closes the connection
        writer.close()

    async with raw_replica(heads) as port:
        client, _, _ = await proxied([port])
        resp = await client.head("/v2/models/m")
        assert resp.status_code == 200 and resp.content == b""
        # the length a GET would have, as the replica said it (not the empty body's 0)
        assert resp.headers["content-length"] == "11"
