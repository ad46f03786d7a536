"""REST and gRPC on one ingress port: a connection that opens with the HTTP/2 preface (gRPC over
h2c) is piped to the gRPC ingress; any other is HTTP/1.1 for uvicorn's httptools protocol.

Deciding on the first bytes costs nothing on the REST path (no extra hop); gRPC connections take
one loopback hop to the gRPC proxy.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

H2_PREFACE_START = b"PRI"


class _Pipe(asyncio.Protocol):
    """Copies bytes to the peer transport, with flow control both ways."""

    def __init__(self, peer: asyncio.BaseTransport) -> None:
        self.peer: Any = peer

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def eof_received(self) -> bool | None:
        if self.peer.can_write_eof():
            self.peer.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


class SniffingHttpProtocol(HttpToolsProtocol):
    grpc_host: ClassVar[str] = "127.0.0.1"
    grpc_port: ClassVar[int] = 0
    _tasks: ClassVar[set[asyncio.Task[None]]] = set()
    _decided = False

    def data_received(self, data: bytes) -> None:
        if not self._decided:
            self._decided = True
            if data.startswith(H2_PREFACE_START):
                self._to_grpc(data)
                return
        super().data_received(data)

    def _to_grpc(self, first: bytes) -> None:
        downstream = self.transport
        # no longer an HTTP/1.1 connection of uvicorn's: it must not wait for it on shutdown
        self.connections.discard(self)
        downstream.pause_reading()

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            try:
                upstream, _ = await loop.create_connection(
                    lambda: _Pipe(downstream), self.grpc_host, self.grpc_port
                )
            except OSError:
                downstream.close()
                return
            downstream.set_protocol(_Pipe(upstream))
            upstream.write(first)
            downstream.resume_reading()

        task = asyncio.get_running_loop().create_task(connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def protocol_for(grpc_host: str, grpc_port: int) -> type[SniffingHttpProtocol]:
    """The HTTP protocol class for uvicorn, piping gRPC connections to `grpc_host:grpc_port`."""
    host = "127.0.0.1" if grpc_host in ("", "0.0.0.0") else grpc_host
    attrs = {"grpc_host": host, "grpc_port": grpc_port}
    return type("IngressHttpProtocol", (SniffingHttpProtocol,), attrs)
