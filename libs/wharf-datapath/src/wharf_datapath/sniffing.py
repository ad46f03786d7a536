"""REST and gRPC on one ingress port, and gRPC routed by `:authority`.

A connection that opens with the HTTP/2 preface (gRPC over h2c) is read until its first HEADERS
frame; the `:authority` there picks the service (a gRPC channel has one authority), and the
connection is piped to a gRPC proxy bound to that service. Any other connection is HTTP/1.1 for
uvicorn's httptools protocol, with no extra hop, and with a bound on the request head
(`http_head`). The frame parsing is pure (`scan_h2_start`); Python's gRPC server does not show
`:authority` to handlers, hence this.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import hpack

from wharf_datapath.http_head import (
    DEFAULT_HEAD_TIMEOUT_S,
    DEFAULT_MIN_BODY_RATE,
    HeadLimitedHttpProtocol,
)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS, _PADDED, _PRIORITY = 0x4, 0x8, 0x20
# a client's first header block arrives within its first packets; give up well before this
MAX_SNIFF_BYTES = 64 * 1024

PortFor = Callable[[str | None], Awaitable[tuple[str, int]]]


# An empty SETTINGS frame: what a server sends first. gRPC clients wait for it before they send
# their first request, so the sniffer sends it and removes the client's ACK of it later.
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS, _ACK = 0x4, 0x1


class NotYet(Exception):
    """More bytes are needed to see the first header block and the SETTINGS ACK."""


@dataclass(frozen=True)
class H2Start:
    authority: str | None
    # the bytes to forward: the client's bytes without its ACK of the sniffer's SETTINGS
    forward: bytes


def scan_h2_start(data: bytes) -> H2Start | None:
    """The `:authority` (or `host`) of an h2c connection's first request. Pure.

    Raises NotYet until the first header block and the client's SETTINGS ACK are both in;
    returns None when the bytes are not HTTP/2.
    """
    if not data.startswith(H2_PREFACE):
        if H2_PREFACE.startswith(data):
            raise NotYet
        return None
    pos, block = len(H2_PREFACE), b""
    headers_done, ack = False, None
    in_headers = False
    while not (headers_done and ack is not None):
        if len(data) < pos + 9:
            raise NotYet
        length = int.from_bytes(data[pos : pos + 3], "big")
        ftype, flags = data[pos + 3], data[pos + 4]
        end = pos + 9 + length
        if len(data) < end:
            raise NotYet
        payload = data[pos + 9 : end]
        if ftype == _SETTINGS and flags & _ACK and ack is None:
            ack = (pos, end)
        elif ftype == _HEADERS and not in_headers and not headers_done:
            if flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & _PRIORITY:
                payload = payload[5:]
            block, in_headers = payload, True
            headers_done = bool(flags & _END_HEADERS)
        elif ftype == _CONTINUATION and in_headers and not headers_done:
            block += payload
            headers_done = bool(flags & _END_HEADERS)
        pos = end
    forward = data[: ack[0]] + data[ack[1] :]
    try:
        headers = hpack.Decoder().decode(block, raw=True)
    except (hpack.HPACKError, struct.error, IndexError):
        return H2Start(None, forward)
    found = {bytes(k): bytes(v) for k, v in headers}
    value = found.get(b":authority") or found.get(b"host")
    return H2Start(value.decode("latin-1") if value else None, forward)


class _Pipe(asyncio.Protocol):
    """Copies bytes to the peer transport, with flow control both ways."""

    def __init__(self, peer: asyncio.BaseTransport) -> None:
        self.peer: Any = peer
        self.eof = False  # this side has sent all it will send

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.peer.can_write_eof():
            self.peer.write_eof()
        other = self.peer.get_protocol()
        if isinstance(other, _Pipe) and other.eof:
            # both sides have finished: close both sockets (half-closed ones were kept forever)
            self.peer.close()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


class H2Sniffer(asyncio.Protocol):
    """Reads an h2c connection's start, then pipes it to the gRPC proxy for its authority."""

    _tasks: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(self, port_for: PortFor) -> None:
        self.port_for = port_for
        self.buffer = bytearray()
        self.transport: Any = None
        self.decided = False
        self.settings_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.decided:
            return
        if not self.settings_sent and len(self.buffer) >= len(H2_PREFACE):
            self.settings_sent = True
            if self.buffer.startswith(H2_PREFACE):
                self.transport.write(EMPTY_SETTINGS)
        try:
            start = scan_h2_start(bytes(self.buffer))
        except NotYet:
            if len(self.buffer) < MAX_SNIFF_BYTES:
                return
            start = None
        self.decided = True
        authority = start.authority if start else None
        if start is not None:
            self.buffer = bytearray(start.forward)
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect(authority))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, authority: str | None) -> None:
        downstream = self.transport
        try:
            host, port = await self.port_for(authority)
            upstream, _ = await asyncio.get_running_loop().create_connection(
                lambda: _Pipe(downstream), host, port
            )
        except OSError:
            downstream.close()
            return
        downstream.set_protocol(_Pipe(upstream))
        upstream.write(bytes(self.buffer))
        downstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.decided = True


class SniffingHttpProtocol(HeadLimitedHttpProtocol):
    port_for: ClassVar[PortFor]
    _decided = False

    def data_received(self, data: bytes) -> None:
        if not self._decided:
            self._decided = True
            if data.startswith(H2_PREFACE[:3]):
                # no longer an HTTP/1.1 connection of uvicorn's: it must not wait for it
                self.connections.discard(self)
                self.stop_head_timer()
                sniffer = H2Sniffer(type(self).port_for)
                self.transport.set_protocol(sniffer)
                sniffer.connection_made(self.transport)
                sniffer.data_received(data)
                return
        super().data_received(data)


def protocol_for(
    port_for: PortFor,
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
    min_body_rate: int = DEFAULT_MIN_BODY_RATE,
) -> type[SniffingHttpProtocol]:
    """The HTTP protocol class for uvicorn, handing h2c connections to `port_for`'s proxies."""
    fields = {
        "port_for": staticmethod(port_for),
        "head_timeout_s": head_timeout_s,
        "min_body_rate": min_body_rate,
    }
    return type("IngressHttpProtocol", (SniffingHttpProtocol,), fields)
