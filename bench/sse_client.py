"""A light client of streamed OpenAI chat completions, for benchmarks that share CPUs with it.

On a 2-CPU machine the benchmark's clients run on the same CPU as the API servers and the
gateway they measure (`llm_worker.py --placement split`). httpx's streaming machinery and a
JSON parse of every event cost that CPU more than the servers' own work per token, and a
proxy's small extra CPU then turns into a larger wait for everyone on that CPU. This client
reads the response on one keep-alive connection with asyncio's streams, as it arrives, and
parses the JSON of only the events that can decide a figure: those up to the first with
content (its time is the TTFT: the first event whose `choices` hold a non-empty
`delta.content`) and those that carry a usage object or an error. A stream that ends without
a usage object (the requests ask for one with `stream_options.include_usage`) or with an error
event fails with `StreamError`, as a bad status does: a cell must not count a broken stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import time
from collections.abc import Iterable
from typing import Any

MAX_HEAD_BYTES = 64 * 1024
READ_BYTES = 64 * 1024


def median_first_token_s(firsts: Iterable[float | None]) -> float:
    """The median time to the first content over the streams that had any (a stream with no
    content has none: None or NaN), NaN when none had: a NaN in `statistics.median`'s input
    would make its result arbitrary."""
    seen = [f for f in firsts if f is not None and not math.isnan(f)]
    return statistics.median(seen) if seen else math.nan


class StreamError(Exception):
    pass


class ChatStreamClient:
    """One HTTP/1.1 keep-alive connection to `host:port`, sending one request at a time; a
    connection the server closed, or one an exchange failed on, is replaced by a new one."""

    def __init__(self, host: str, port: int, timeout: float = 300.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or writer.is_closing() or reader.at_eof():
            await self.aclose()
            reader, writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES
            )
            self._reader, self._writer = reader, writer
        return reader, writer

    def request_bytes(self, body: dict[str, Any]) -> bytes:
        data = json.dumps(body).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    async def chat(self, request: bytes) -> tuple[float | None, float, int]:
        """Send `request` (from `request_bytes`, a streamed chat); (seconds to the first
        content chunk or None, seconds to the end, completion tokens from `usage`)."""
        reader, writer = await self._connection()
        sent = time.perf_counter()
        events = Events(sent)
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(request)
                status, headers, close = await _read_head(reader)
                await _read_body(reader, headers, events)
        except BaseException as exc:
            # what is left unread on this connection belongs to no later request
            await self.aclose()
            if isinstance(exc, asyncio.IncompleteReadError | asyncio.LimitOverrunError):
                raise StreamError(f"the answer ended early or is malformed: {exc}") from exc
            raise
        if close:
            await self.aclose()
        if status != 200:
            raise StreamError(f"status {status}: {events.text()[:500]}")
        events.end()
        return events.first, time.perf_counter() - sent, events.tokens


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    """The status, the headers and whether the connection ends with this answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise StreamError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (parts[0] == "HTTP/1.0" and connection != "keep-alive")
    return int(parts[1]), headers, close


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], events: Events) -> None:
    """The body, fed to `events` as it arrives: chunked, with a length, or to the close."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return
            events.feed((await reader.readexactly(size + 2))[:-2])
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, READ_BYTES))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            events.feed(data)
    else:
        while data := await reader.read(READ_BYTES):
            events.feed(data)


class Events:
    """A server-sent event stream's figures, fed its bytes as they come."""

    __slots__ = ("_partial", "_raw", "first", "sent", "tokens", "usage_seen")

    def __init__(self, sent: float) -> None:
        self._partial = b""
        self._raw: list[bytes] = []
        self.sent = sent
        self.first: float | None = None
        self.tokens = 0
        self.usage_seen = False

    def text(self) -> str:
        return b"".join(self._raw).decode("utf-8", "replace")

    def feed(self, data: bytes) -> None:
        if len(self._raw) < 4:  # kept for an error's message only
            self._raw.append(data)
        # the usual piece after the first content: whole events, none with a usage object or
        # an error (`"usage":null` in each, as vLLM writes them): nothing in it to parse
        if (
            self.first is not None
            and not self._partial
            and data.endswith(b"\n\n")
            and b"\r" not in data
            and b'"error"' not in data
            and data.count(b'"usage"') == data.count(b'"usage":null')
        ):
            return
        buffer = (self._partial + data).replace(b"\r\n", b"\n")
        if buffer.endswith(b"\r"):  # its "\n" may come with the next piece
            buffer, tail = buffer[:-1], b"\r"
        else:
            tail = b""
        *whole, partial = buffer.replace(b"\r", b"\n").split(b"\n\n")
        self._partial = partial + tail
        for event in whole:
            self._event(event)

    def end(self) -> None:
        """The body ended: an event it left without its blank line counts too; then the
        stream must have given its usage."""
        if self._partial.strip():
            self._event(self._partial.replace(b"\r", b"\n"))
        self._partial = b""
        if not self.usage_seen:
            raise StreamError(f"the stream ended without a usage object: {self.text()[:500]}")

    def _event(self, event: bytes) -> None:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            if self.first is not None and b'"usage"' not in payload and b'"error"' not in payload:
                continue
            chunk = json.loads(payload)
            if not isinstance(chunk, dict):
                raise StreamError(f"an event that is not an object: {payload[:200]!r}")
            if "error" in chunk:
                raise StreamError(f"an error event: {payload[:500]!r}")
            if self.first is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
            ):
                self.first = time.perf_counter() - self.sent
            usage = chunk.get("usage")
            if isinstance(usage, dict) and "completion_tokens" in usage:
                self.tokens = int(usage["completion_tokens"])
                self.usage_seen = True
