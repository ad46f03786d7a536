"""A lean HTTP/1.1 client for the ingress: pooled keep-alive connections to local replicas.

The ingress adds one hop to every request, so this path is kept short: requests are written as
raw bytes on an idle connection, responses parsed by httptools (the parser uvicorn uses). A
general client (httpx) costs several times more CPU per request on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools

MAX_IDLE_PER_PORT = 64


class UpstreamConnectError(ConnectionError):
    """The replica refused the connection: nothing was sent, another replica may be tried."""


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    keep_alive: bool = True
    parser: httptools.HttpResponseParser | None = None
    # set for a body without a length (chunked, SSE): its chunks as they arrive
    stream: AsyncIterator[bytes] | None = None
    headers_done: bool = False

    @property
    def streamed(self) -> bool:
        """No content-length: chunked or read to the end (server-sent events, token streams)."""
        return self.headers_done and not any(
            k.lower() == b"content-length" for k, _ in self.headers
        )

    # httptools callbacks
    def on_headers_complete(self) -> None:
        # llhttp answers should_keep_alive() only until the message completes
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class UpstreamPool:
    def __init__(self) -> None:
        self._idle: dict[int, list[_Conn]] = {}

    async def _connect(self, port: int) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            raise UpstreamConnectError(f"127.0.0.1:{port}: {exc}") from exc
        return _Conn(reader, writer)

    async def request(
        self,
        port: int,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Response:
        head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        raw = b"".join(head) + body
        idle = self._idle.setdefault(port, [])
        while idle:
            conn = idle.pop()
            try:
                return await self._exchange(port, conn, raw, method)
            except _StaleConnection:
                # the server closed an idle keep-alive connection before reading: resend
                continue
        try:
            return await self._exchange(port, await self._connect(port), raw, method)
        except _StaleConnection as exc:
            raise ConnectionError(
                f"127.0.0.1:{port} closed the connection without answering"
            ) from exc

    async def _exchange(self, port: int, conn: _Conn, raw: bytes, method: str) -> Response:
        resp = Response()
        parser = resp.parser = httptools.HttpResponseParser(resp)
        got_bytes = False
        try:
            conn.writer.write(raw)
            while not resp.complete:
                if (
                    resp.streamed
                    and method != "HEAD"
                    and parser.get_status_code() not in (204, 304)
                ):
                    resp.status = parser.get_status_code()
                    resp.stream = self._stream(port, conn, resp, parser)
                    return resp
                data = await conn.reader.read(65536)
                if not data:
                    if method == "HEAD" or parser.get_status_code() in (204, 304):
                        break
                    if not got_bytes:
                        raise _StaleConnection
                    parser.feed_data(b"")  # a body delimited by the end of the connection
                    resp.complete = True
                    resp.keep_alive = False
                    break
                got_bytes = True
                parser.feed_data(data)
        except (ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            if not got_bytes:
                raise _StaleConnection from exc
            raise
        except BaseException:
            conn.close()
            raise
        resp.status = parser.get_status_code()
        self._done(port, conn, resp)
        return resp

    def _done(self, port: int, conn: _Conn, resp: Response) -> None:
        resp.parser = None
        idle = self._idle.setdefault(port, [])
        if resp.keep_alive and len(idle) < MAX_IDLE_PER_PORT:
            idle.append(conn)
        else:
            conn.close()

    async def _stream(
        self, port: int, conn: _Conn, resp: Response, parser: httptools.HttpResponseParser
    ) -> AsyncIterator[bytes]:
        finished = False
        try:
            while True:
                if resp.body:
                    chunk = bytes(resp.body)
                    resp.body.clear()
                    yield chunk
                if resp.complete:
                    break
                data = await conn.reader.read(65536)
                if not data:
                    parser.feed_data(b"")
                    resp.keep_alive = False
                    resp.complete = True
                    continue
                parser.feed_data(data)
            finished = True
        finally:
            if finished:
                self._done(port, conn, resp)
            else:  # the client went away mid-stream: this connection's state is unknown
                conn.close()

    def forget(self, port: int) -> None:
        for conn in self._idle.pop(port, []):
            conn.close()

    async def aclose(self) -> None:
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class _StaleConnection(Exception):
    pass
