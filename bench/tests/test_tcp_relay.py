"""bench/tcp_relay.py, the floor of a proxy hop, on real loopback sockets: it must move every
byte both ways in order (or the floor it gives is not the same work), pass a half-close on, and
close the client's connection when its upstream cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest


def _load_relay() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tcp_relay.py"
    spec = importlib.util.spec_from_file_location("wharf_bench_tcp_relay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


relay = _load_relay()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _relay_to(upstream: tuple[str, int]) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: relay._Downstream(upstream), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # answers each read at once (so bytes flow both ways on one connection), then, on the
    # client's half-close, says so and closes
    while data := await reader.read(65536):
        writer.write(data.upper())
    writer.write(b"<eof seen>")
    await writer.drain()
    writer.close()


async def test_bytes_go_both_ways_in_order_and_a_half_close_passes_on() -> None:
    upstream = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    async with upstream, _relay_to(upstream.sockets[0].getsockname()[:2]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # written at once: what arrives before the relay's upstream connection is kept
        writer.write(b"first ")
        big = bytes(range(97, 123)) * 40_000  # over 1 MB: the flow control is exercised
        writer.write(big)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()

    assert answer == b"FIRST " + big.upper() + b"<eof seen>"


async def test_an_unreachable_upstream_closes_the_clients_connection() -> None:
    async with _relay_to(("127.0.0.1", _free_port())) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()


def test_the_upstream_must_be_host_and_port() -> None:
    assert relay._address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    with pytest.raises(Exception, match="HOST:PORT"):
        relay._address("8000")
