"""Reading a request body under the server's size limit, without holding more than it.

A ``Content-Length`` above the limit is refused before a byte of the body is read; a body
without one (chunked) is refused as soon as what arrived passes the limit. A body of known
length that comes in several messages is copied into one buffer of that size as it arrives
(no list of chunks joined into a second copy at the end).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from wharf_model_server.errors import InvalidInput, RequestTooLarge

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class ClientDisconnected(Exception):
    """The client went away before its body arrived."""


def declared_length(headers: Any) -> int | None:
    """The request's ``Content-Length`` (None when absent; the HTTP server refuses a malformed
    one before the app sees the request)."""
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def collect(
    first: bytes, more: AsyncIterator[bytes], limit: int, length: int | None
) -> bytes | bytearray:
    """The whole body from its first chunk and the rest; RequestTooLarge once past ``limit``."""
    if length is not None and length <= limit:
        buffer = bytearray(length)
        view = memoryview(buffer)
        size = len(first)
        if size > length:
            raise InvalidInput("the request body is longer than its Content-Length")
        view[:size] = first
        async for chunk in more:
            end = size + len(chunk)
            if end > length:
                raise InvalidInput("the request body is longer than its Content-Length")
            view[size:end] = chunk
            size = end
        view.release()
        return buffer if size == length else buffer[:size]
    grown = bytearray(first)
    if len(grown) > limit:
        raise RequestTooLarge(limit)
    async for chunk in more:
        grown += chunk
        if len(grown) > limit:
            raise RequestTooLarge(limit)
    return grown


async def _more(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def read_body(receive: Receive, length: int | None, limit: int) -> bytes | bytearray:
    """The body of an ASGI request whose declared length (if any) is within ``limit``.

    Raises RequestTooLarge, InvalidInput or ClientDisconnected."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    first: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(first) > limit:
            raise RequestTooLarge(limit)
        return first  # the common case: one message holds the whole body
    return await collect(first, _more(receive), limit, length)
