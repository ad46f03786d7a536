"""Writing a streamed response's body below ASGI, straight to the client's connection.

A token stream is thousands of small chunks; each one through ASGI costs a `send` call, and
waiting for the next one from upstream a task wake-up. A proxy that has sent the response head
through ASGI can instead write the body's chunks to the client's transport from the upstream
connection's data callback (`wharf_datapath.upstream.BodyStream.relay`), and end the response
through ASGI again (the server's own send writes the last chunk and keeps its keep-alive state).

That needs the server's connection: only uvicorn's httptools protocol is known here (its
response cycle is the `send` it passes, and frames a body without a length as chunked
`transfer-encoding`). Anything else (h11, other servers, a middleware that rewrites bodies)
gets None from `client_stream`, and the caller keeps to ASGI. A wrapper of `send` that passes
body messages unchanged says so with `passes_body`, and is looked through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[Any], Awaitable[None]]

# the attribute a pass-through wrapper of `send` names the `send` it wraps with
INNER_SEND = "__wharf_inner_send__"
_UVICORN_CYCLE = ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle")


def passes_body(wrapper: Send, inner: Send) -> Send:
    """Mark `wrapper` (a `send` around `inner`) as passing `http.response.body` messages to
    `inner` unchanged, so a body may be written below it."""
    setattr(wrapper, INNER_SEND, inner)
    return wrapper


def chunk_frame(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1 chunked transfer-encoding (`data` is not empty: an
    empty chunk ends the body). The gateway's relay frames its tokens the same way in its own
    frame (wharf_router.gateway.app, `_relay`)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ClientStream:
    """The client's connection under a started, chunked response of uvicorn's httptools
    protocol: write body chunks to it while its response cycle is open.

    A caller on a per-token path may read what `gone`, `paused` and `write` read (`cycle`,
    `flow`, `transport`) itself, in its own frame: each Python call there is a share of a
    proxy's CPU per token."""

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle: Any = cycle
        self.flow: Any = cycle.flow
        self.transport: asyncio.Transport = cycle.transport

    @property
    def gone(self) -> bool:
        """The client closed its connection (writes go nowhere). The transport is asked too:
        a pipelined request replaces the server's response cycle, and only the new cycle
        hears of the connection's loss."""
        return bool(self.cycle.disconnected) or self.transport.is_closing()

    @property
    def paused(self) -> bool:
        """The transport's write buffer is over its high-water mark: stop feeding it."""
        return bool(self.flow.write_paused)

    async def drain(self) -> None:
        """Until the write buffer is below its low-water mark (or the client is gone)."""
        await self.flow.drain()

    def write(self, data: bytes) -> None:
        self.transport.write(chunk_frame(data))


def client_stream(send: Send) -> ClientStream | None:
    """The client's connection behind `send`, once its response head went out with chunked
    framing; None when it cannot be had (another server or protocol, a wrapper that does not
    say it passes bodies, a response not framed in chunks, a client already gone)."""
    while (inner := getattr(send, INNER_SEND, None)) is not None:
        send = inner
    cycle: Any = getattr(send, "__self__", None)
    kind = type(cycle)
    if (kind.__module__, kind.__name__) != _UVICORN_CYCLE:
        return None
    try:
        usable = (
            cycle.response_started
            and not cycle.response_complete
            and cycle.chunked_encoding is True
            and cycle.scope["method"] != "HEAD"
            and not cycle.disconnected
        )
        return ClientStream(cycle) if usable else None
    except (AttributeError, KeyError):  # a uvicorn whose cycle is not the one known here
        return None
