"""A lean HTTP/1.1 client for the proxy: pooled keep-alive connections to replicas.

The proxy adds one hop to every request, so this path is kept short: requests are written as
raw bytes on an idle connection, responses parsed by httptools (the parser uvicorn uses). A
general client (httpx) costs several times more CPU per request on this path.

A request body is either `bytes` (buffered: it can be sent again) or a `StreamedBody` (read
from the client while it is written upstream, on a fresh connection, so that a stale pooled
connection cannot swallow it). Failures before any response byte are told apart, so the proxy
can decide whether to try another replica (`retry`):

- `UpstreamConnectError`: the connection was refused, nothing was sent;
- `UpstreamResetError`: the connection was reset before any response byte: the replica's
  socket was closed with the request unread (a process killed with the request still in its
  accept queue or receive buffer);
- `UpstreamClosedError`: the connection was closed before any response byte, or in the middle
  of the response's head (still nothing that could be passed on): the replica may have read the
  request (and died on it).

httptools is never told that a connection ended (llhttp's finish is not exposed), so the end is
judged here: a body is complete at the end of its connection only when it has neither a
Content-Length nor chunks (HTTP/1.0 style); one short of its length or last chunk is cut
(`UpstreamCutError`), whether read whole or streamed. An answer to HEAD ends with its head,
whatever length that head announces.

A streamed answer's body (`BodyStream`) is read chunk by chunk, or relayed: handed to a
callback from the connection's own data events, with no task wake-up per chunk (the LLM
gateway's token streams).

Interim answers (1xx but 101) are read past: the answer is the final one, which alone says
whether the connection is kept alive.

On a clean end or a cut (EOF), nothing here forms a reference cycle (the parser's callbacks
fill a `_Sink` that refers to neither the answer nor its stream): an answer, or a stream its
consumer dropped unfinished, is freed as soon as its last reference goes, and a dropped stream
closes its connection then, not whenever the cycle collector runs (and before asyncio's writer
would warn it was left open). A connection reset is the exception: its StreamReader keeps the
error, whose traceback refers back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

MAX_IDLE_PER_PORT = 64
Address = tuple[str, int]


class UpstreamConnectError(ConnectionError):
    """The replica refused the connection: nothing was sent, another replica may be tried."""


class UpstreamClosedError(ConnectionError):
    """The replica closed the connection before any byte of a response."""


class UpstreamTooLargeError(ValueError):
    """A whole (non-streamed) answer grew past the caller's `max_body`: the connection is closed."""


class UpstreamCutError(ConnectionError):
    """The replica closed the connection before the end of a body: short of its Content-Length,
    or before a chunked body's last chunk. Not a short answer: what was read is incomplete."""


class UpstreamMalformedError(httptools.HttpParserError, ValueError):
    """The replica's answer is not HTTP/1.1 as the request expects it (a head or body that does
    not parse, a protocol switch no request asked for). A ValueError for the callers that answer
    bad input with a 502, an `httptools.HttpParserError` for those that catch the parser's."""


class UpstreamResetError(UpstreamClosedError):
    """The replica reset the connection before any byte of a response: it did not read all of
    the request (the kernel resets a socket closed with unread data)."""


@dataclass(slots=True)
class StreamedBody:
    """A request body passed on while it arrives: what was read so far, then the rest.

    `length` is the client's Content-Length (None: sent upstream chunked). `started` turns True
    once the first byte is written upstream: from then on the body cannot be sent again.
    """

    prefix: bytes
    rest: AsyncIterator[bytes]
    length: int | None
    started: bool = False


Body = bytes | StreamedBody


@dataclass(slots=True)
class Response:
    """One answer: its status and head, and its body whole or (`stream`) as it arrives."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # the whole body; for a streamed answer, what its stream has not handed out yet
    body: bytearray = field(default_factory=bytearray)
    # set for a body without a length (chunked, SSE): its chunks as they arrive
    stream: BodyStream | None = None

    @property
    def chunked(self) -> bool:
        return _chunked(self.headers)


def _chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-length" for k, _ in headers)


def _at_connection_end(address: Address, sink: _Sink) -> None:
    """The connection ended before the parser saw the end of the answer: the answer is
    complete only when its body is delimited by that end; anything else was cut."""
    where = f"{address[0]}:{address[1]}"
    if not sink.headers_done:
        raise UpstreamClosedError(
            f"{where} closed the connection in the middle of its answer's head"
        )
    if _has_length(sink.headers) or _chunked(sink.headers):
        raise UpstreamCutError(f"{where} closed the connection before the end of its answer's body")
    sink.keep_alive = False
    sink.complete = True


class _Sink:
    """The parser's protocol: what it read of one answer. The parser refers to it (its
    callbacks), the answer and its stream share it, and it refers to none of them once the
    request's exchange is over (its answer whole, or its stream handed out), so no cycle keeps
    them from being freed by reference counting."""

    __slots__ = (
        "body",
        "complete",
        "head_only",
        "headers",
        "headers_done",
        "keep_alive",
        "parser",
        "status",
    )

    def __init__(self, head_only: bool = False) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.complete = False
        self.keep_alive = True
        self.headers_done = False
        self.status = 0  # the answer's, from its head (the parser's moves on to a stray message)
        # an answer to HEAD: it ends with its head, whatever body length that head announces
        self.head_only = head_only
        # only while the request's exchange reads the answer's head (the parser refers to this
        # sink): interim (1xx) answers may come before it, in the same read too
        self.parser: httptools.HttpResponseParser | None = None

    @property
    def streamed(self) -> bool:
        """No content-length: chunked or read to the end (server-sent events, token streams)."""
        return self.headers_done and not _has_length(self.headers)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            # a message after the answer, that no request asked for: the connection is out of
            # step with its requests (a head after this would decide keep-alive otherwise)
            self.keep_alive = False

    def on_headers_complete(self) -> None:
        # llhttp answers should_keep_alive() only until the message completes; each head
        # (an interim one, then the final one) replaces what the previous one said
        parser = self.parser
        # (the parser is None once the answer's stream has it: its head was read)
        if parser is not None and not self.complete:
            self.keep_alive = parser.should_keep_alive()
            self.status = parser.get_status_code()
            if self.head_only and not _interim(self.status):
                # (the parser cannot know the request's method: it expects that body still)
                self.complete = True
        self.headers_done = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:  # a stray message's fields are not the answer's
            self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self.complete:
            # a stray message's body, or bytes after the head of an answer to HEAD: not the
            # answer's, and the connection is out of step with its requests
            self.keep_alive = False
            return
        self.body += body

    def on_message_complete(self) -> None:
        parser = self.parser
        if parser is not None and not self.complete and _interim(parser.get_status_code()):
            # an interim answer (100 Continue, 103 Early Hints): llhttp ends the message there,
            # but the request's answer is still to come on this connection
            self.headers.clear()
            self.headers_done = False
            self.body.clear()
            return
        self.complete = True


def _interim(status: int) -> bool:
    """A 1xx answer that another answer follows (101 ends the exchange: a protocol switch)."""
    return 100 <= status < 200 and status != 101


def _feed(parser: httptools.HttpResponseParser, sink: _Sink, data: bytes) -> None:
    """Parse `data` into `sink`; bytes past a complete answer that do not parse are a stray
    message's, not an error of the answer: its connection is not reused. Every error of the
    answer itself is an `UpstreamMalformedError`, an upgrade too (no request here asks for one)."""
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
        _parse_error(sink, exc)


def _parse_error(sink: _Sink, exc: Exception) -> None:
    """What `_feed` makes of the parser's error (raises, or marks the connection unusable)."""
    if sink.complete and sink.status != 101:
        sink.keep_alive = False
        return
    if sink.status == 101 or isinstance(exc, httptools.HttpParserUpgrade):
        raise UpstreamMalformedError(
            "the replica switched protocols (101), which no request asked for"
        ) from exc
    raise UpstreamMalformedError(f"a malformed answer: {exc}") from exc


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    def out_of_step(self) -> bool:
        """Bytes came while the connection was idle (a message no request asked for, which the
        next request would take for its own answer), or it ended: not to be used again."""
        reader = self.reader
        buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
        return bool(buffered) or reader.at_eof() or self.writer.is_closing()


def _head(
    method: str, target: str, headers: list[tuple[bytes, bytes]], framing: bytes
) -> list[bytes]:
    head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(framing)
    return head


class UpstreamPool:
    def __init__(self) -> None:
        self._idle: dict[Address, list[_Conn]] = {}

    async def _connect(self, address: Address) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(*address)
        except OSError as exc:
            raise UpstreamConnectError(f"{address[0]}:{address[1]}: {exc}") from exc
        return _Conn(reader, writer)

    async def request(
        self,
        address: Address,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        max_body: int | None = None,
    ) -> Response:
        """Send one request to `address` (host, port) and read the response's head.

        `headers` must not carry hop-by-hop fields nor Content-Length: the framing is added here.
        `max_body` bounds an answer that is read whole (UpstreamTooLargeError past it); a
        streamed answer's chunks are the caller's to count.
        """
        if isinstance(body, StreamedBody):
            return await self._request_streamed(address, method, target, headers, body)
        head = _head(method, target, headers, b"content-length: %d\r\n\r\n" % len(body))
        raw = b"".join(head) + body
        idle = self._idle.setdefault(address, [])
        while idle:
            conn = idle.pop()
            if conn.out_of_step():
                conn.close()
                continue
            try:
                return await self._exchange(address, conn, raw, method, max_body)
            except _StaleConnection:
                # the server closed an idle keep-alive connection before reading: resend
                continue
        try:
            return await self._exchange(
                address, await self._connect(address), raw, method, max_body
            )
        except _StaleConnection as exc:
            raise _unanswered(address, exc) from exc

    async def _request_streamed(
        self,
        address: Address,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: StreamedBody,
    ) -> Response:
        conn = await self._connect(address)
        chunked = body.length is None
        framing = (
            b"content-length: %d\r\n\r\n" % body.length
            if body.length is not None
            else b"transfer-encoding: chunked\r\n\r\n"
        )
        writer = conn.writer
        body.started = True
        try:
            writer.write(b"".join(_head(method, target, headers, framing)))
            self._write_chunk(writer, body.prefix, chunked)
            async for chunk in body.rest:
                self._write_chunk(writer, chunk, chunked)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            # the replica stopped reading: it may have answered already (413, an error)
            pass
        except BaseException:
            conn.close()  # the client's body failed (too large, gone): this request is over
            raise
        try:
            return await self._exchange(address, conn, b"", method)
        except _StaleConnection as exc:
            raise _unanswered(address, exc) from exc

    @staticmethod
    def _write_chunk(writer: asyncio.StreamWriter, data: bytes, chunked: bool) -> None:
        if not data:
            return
        if chunked:
            writer.write(b"%x\r\n" % len(data))
            writer.write(data)
            writer.write(b"\r\n")
        else:
            writer.write(data)

    async def _exchange(
        self, address: Address, conn: _Conn, raw: bytes, method: str, max_body: int | None = None
    ) -> Response:
        sink = _Sink(head_only=method == "HEAD")
        parser = sink.parser = httptools.HttpResponseParser(sink)
        got_bytes = False
        try:
            if raw:
                conn.writer.write(raw)
            while not sink.complete:
                # (an answer to HEAD completes with its head: the sink knows the method)
                if sink.streamed and sink.status not in (204, 304):
                    resp = Response(sink.status, sink.headers, sink.body)
                    resp.stream = BodyStream(self, address, conn, sink, parser)
                    return resp
                data = await conn.reader.read(65536)
                if not data:
                    if not got_bytes:
                        raise _StaleConnection
                    # bytes of an answer: the replica read the request, so this is no stale
                    # keep-alive connection to resend on (the callers' retry rules decide)
                    _at_connection_end(address, sink)
                    break
                got_bytes = True
                _feed(parser, sink, data)
                if max_body is not None and len(sink.body) > max_body:
                    raise UpstreamTooLargeError(
                        f"{address[0]}:{address[1]}: the answer is over {max_body} bytes"
                    )
        except (ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            if not got_bytes:
                raise _StaleConnection(reset=True) from exc
            raise
        except BaseException:
            conn.close()
            raise
        finally:
            # the parser refers to the sink: on every way out, so no cycle is left
            sink.parser = None
        self._done(address, conn, sink.keep_alive)
        return Response(sink.status, sink.headers, sink.body)

    def _done(self, address: Address, conn: _Conn, keep_alive: bool) -> None:
        idle = self._idle.setdefault(address, [])
        if keep_alive and len(idle) < MAX_IDLE_PER_PORT:
            idle.append(conn)
        else:
            conn.close()

    def forget(self, host: str, port: int) -> None:
        """Close the idle connections to a replica that is gone."""
        for conn in self._idle.pop((host, port), []):
            conn.close()

    async def aclose(self) -> None:
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for conn in conns:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class BodyStream:
    """A streamed answer's body as it arrives: read it chunk by chunk (`async for`), or hand
    the rest to a callback (`relay`). Its connection goes back to the pool only when the
    message completed; a stream left early (`aclose`) or cut closes it (so the replica sees
    its client go away)."""

    def __init__(
        self,
        pool: UpstreamPool,
        address: Address,
        conn: _Conn,
        sink: _Sink,
        parser: httptools.HttpResponseParser,
    ) -> None:
        self._pool = pool
        self._address = address
        self._conn = conn
        self._sink = sink
        self._parser = parser
        self._ended = False
        self._on_data: Callable[[bytes], None] | None = None
        # the relay's future, until it ends: it may come to hold an exception whose traceback
        # refers to this stream
        self._end: asyncio.Future[None] | None = None
        self._relayed = False
        self._reader_protocol: asyncio.BaseProtocol | None = None
        self._transport = cast(asyncio.Transport, conn.writer.transport)

    def __del__(self) -> None:
        # a stream dropped unfinished (its consumer raised or was cancelled without aclose):
        # the connection must not stay open with the replica still producing
        if not getattr(self, "_ended", True):
            self._ended = True
            self._conn.close()

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        sink = self._sink
        while True:
            if sink.body:
                chunk = bytes(sink.body)
                sink.body.clear()
                return chunk
            if sink.complete:
                self._finish(True)
            if self._ended:
                raise StopAsyncIteration
            try:
                data = await self._conn.reader.read(65536)
                if data:
                    _feed(self._parser, sink, data)
                else:
                    self._eof()
            except BaseException:
                self._finish(False)
                raise

    async def aclose(self) -> None:
        """Leave the stream: the connection is closed unless the message completed."""
        end, self._end = self._end, None
        self._finish(self._sink.complete)
        if end is not None and not end.done():
            end.cancel()

    def _eof(self) -> None:
        _at_connection_end(self._address, self._sink)

    def _finish(self, clean: bool) -> None:
        if self._ended:
            return
        self._ended = True
        # the consumer's callback may refer to this stream (to pause it): no cycle is left
        self._on_data = None
        if clean and self._reader_protocol is not None:
            self._transport.set_protocol(self._reader_protocol)
            # the relay's consumer may have paused it in the read that completed the message:
            # a pooled connection must read, or the next request on it never hears its answer
            self._transport.resume_reading()
        if clean:
            self._pool._done(self._address, self._conn, self._sink.keep_alive)
        else:
            self._conn.close()

    # -- relay: the rest of the body from the connection's data callback -------------------

    def relay(self, on_data: Callable[[bytes], None]) -> asyncio.Future[None]:
        """Hand the rest of the body to `on_data` as it arrives, called from the connection's
        data events (so it must not block); the future ends with the message, or fails with
        the error that ended it: an OSError (the connection was cut), an
        `UpstreamMalformedError` (a malformed answer), or what `on_data` raised. Chunks
        already read come first, before this returns. Once per stream, and only before it
        ended (RuntimeError otherwise)."""
        if self._ended or self._relayed:
            raise RuntimeError("relay() on a stream that ended or is already relayed")
        loop = asyncio.get_running_loop()
        self._end = end = loop.create_future()
        self._relayed = True
        self._on_data = on_data
        reader = self._conn.reader
        # the StreamReader may hold bytes already received, to come before the socket's next
        # (it has no public way to take them without awaiting)
        buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
        pending = bytes(buffer)
        buffer.clear()
        transport = self._transport
        self._reader_protocol = transport.get_protocol()
        transport.set_protocol(_RelayProtocol(self))
        # the reader may have paused it (its buffer's limit); resumed before the pending bytes
        # go to `on_data`, which may pause it again (no data event runs before this returns)
        transport.resume_reading()
        self._data(pending)
        if not self._ended:
            error = reader.exception()
            if error is not None:
                self._fail(error)
            elif reader.at_eof():  # the connection ended before the switch
                self._lost(None)
        return end

    def pause_reading(self) -> None:
        """Stop reading the replica (the relay's consumer is behind); `resume_reading` again."""
        if not self._ended:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._ended:
            self._transport.resume_reading()

    def _data(self, data: bytes) -> None:
        sink = self._sink
        try:
            if data:
                # `_feed`, in this frame: this runs once per token of a relayed stream
                try:
                    self._parser.feed_data(data)
                except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                    _parse_error(sink, exc)
            if sink.body:
                chunk = bytes(sink.body)
                sink.body.clear()
                on_data = self._on_data
                # set from relay() until the stream ends, and no data event comes after its end
                assert on_data is not None
                on_data(chunk)
        except Exception as exc:  # a malformed answer, or the consumer failed: this stream ends
            self._fail(exc)
            return
        if sink.complete and not self._ended:
            self._finish(True)
            end, self._end = self._end, None
            if end is not None and not end.done():
                end.set_result(None)

    def _lost(self, exc: Exception | None) -> None:
        if self._ended:
            return
        if exc is not None:
            self._fail(exc)
            return
        try:
            self._eof()
        except Exception as error:  # a cut, or a parser's error: the future still ends
            # failed here, while `error` is bound (it refers to this frame, through its
            # traceback, until the handler ends)
            self._fail(error)
            return
        self._data(b"")

    def _fail(self, exc: BaseException) -> None:
        self._finish(False)
        end, self._end = self._end, None
        if end is not None and not end.done():
            end.set_exception(exc)


class _RelayProtocol(asyncio.Protocol):
    """The upstream connection's protocol while its body is relayed."""

    def __init__(self, stream: BodyStream) -> None:
        self.data_received = stream._data  # type: ignore[method-assign]
        self._stream = stream

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost tells the stream

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream._lost(exc)


class _StaleConnection(Exception):
    def __init__(self, reset: bool = False) -> None:
        self.reset = reset


def _unanswered(address: Address, stale: _StaleConnection) -> UpstreamClosedError:
    where = f"{address[0]}:{address[1]}"
    if stale.reset:
        return UpstreamResetError(f"{where} reset the connection without answering")
    return UpstreamClosedError(f"{where} closed the connection without answering")
