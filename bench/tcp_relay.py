"""A raw TCP relay: the floor of any proxy hop.

It accepts connections on a port and pipes each one, both ways, to one upstream address,
byte for byte: no HTTP parsing, no routing, no metrics, one `write` per `recv` and flow
control both ways (a side whose write buffer fills stops the other side being read). It runs on
uvloop, as Wharf's gateway does, so the two differ by what the gateway does on top of moving
the bytes: what any HTTP proxy in Python pays for the hop itself, on the same machine, in the
same run (`llm_worker.py`'s `vllm+relay` row, `gateway_cost.py --base floor`).

Run: `python bench/tcp_relay.py --port 8100 --upstream 127.0.0.1:8000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import cast

import uvloop


class _Side(asyncio.Protocol):
    """One connection of a relayed pair: what it receives goes to its peer's transport."""

    def __init__(self, peer: _Side | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        # the upstream side is made knowing its client's side; the client's side learns of it
        # in the upstream's `connection_made`, before the upstream's first read
        self.peer = peer
        self.got_eof = False
        self.writing_paused = False  # this side's write buffer is over its high-water mark
        # what the client sent before its upstream was connected, in order
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self.transport = cast(asyncio.Transport, transport)
        client = self.peer
        if client is None:
            return
        assert client.transport is not None
        if client.transport.is_closing():  # the client left while this connected
            self.transport.close()
            return
        client.peer = self
        for data in client.early:
            self.transport.write(data)
        client.early.clear()
        if client.got_eof:
            client.eof_received()
        elif not self.writing_paused:  # (the early bytes may have filled this side's buffer)
            client.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:  # still connecting: kept, and no more read until then
            self.early.append(data)
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        # a half-close passes on as one; the pair closes once both sides have ended
        self.got_eof = True
        peer = self.peer
        if peer is None:  # still connecting: passed on once connected
            return True
        if peer.got_eof or peer.transport is None:
            self._close_pair()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    # flow control: a side whose write buffer fills stops its peer being read (not a peer
    # that has ended: reading a stream past its end is undefined in libuv)
    def pause_writing(self) -> None:
        self.writing_paused = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.got_eof:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.got_eof:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_pair()

    def _close_pair(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.close()


class _Downstream(_Side):
    """The accepted side: connects its upstream, keeping what it reads until then."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self._upstream = upstream
        # held: the loop keeps only a weak reference to a task
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self._upstream
        try:
            # paired in the upstream side's `connection_made`
            await asyncio.get_running_loop().create_connection(lambda: _Side(self), host, port)
        except OSError:
            self._close_pair()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"HOST:PORT, not {text!r}")
    return host, int(port)


async def serve(host: str, port: int, upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Downstream(upstream), host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.upstream))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
