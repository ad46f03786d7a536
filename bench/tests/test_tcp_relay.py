"""bench/tcp_relay.py, the floor of a proxy hop, on real loopback sockets, under uvloop (what
it runs on) and stock asyncio: it must move every byte both ways in order (or the floor it
gives is not the same work), whoever speaks first, pass a half-close on, hold a fast upstream
back while the client does not read, close the client's connection when its upstream cannot be
reached, and exit cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import uvloop

T = TypeVar("T")
# over 1 MB: more than one read and one write buffer
BIG = bytes(range(97, 123)) * 40_000


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


LOOPS = ["asyncio", "uvloop"]  # the relay runs on uvloop; stock asyncio must work too


def _run(loop: str, main: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(main) if loop == "uvloop" else asyncio.run(main)


@contextlib.asynccontextmanager
async def _relay_to(upstream: tuple[str, int]) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: relay._Downstream(upstream), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # answers each read at once (so bytes flow both ways on one connection), then, on the
    # client's half-close, says so and closes
    while data := await reader.read(65536):
        writer.write(data.upper())
    writer.write(b"<eof seen>")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_go_both_ways_in_order_and_a_half_close_passes_on(loop: str) -> None:
    async def main() -> bytes:
        upstream = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
        async with upstream, _relay_to(upstream.sockets[0].getsockname()[:2]) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # written at once: what arrives before the relay's upstream connection is kept
            writer.write(b"first ")
            writer.write(BIG)
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            return answer

    assert _run(loop, main()) == b"FIRST " + BIG.upper() + b"<eof seen>"


@pytest.mark.parametrize("loop", LOOPS)
def test_an_upstream_that_speaks_first_and_closes_is_heard_out(loop: str) -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello, ")
        writer.write(BIG)
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        upstream = await asyncio.start_server(hello, "127.0.0.1", 0)
        async with upstream, _relay_to(upstream.sockets[0].getsockname()[:2]) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            return answer

    assert _run(loop, main()) == b"hello, " + BIG


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_does_not_read_holds_the_upstream_back(loop: str) -> None:
    # far more than the kernel's socket buffers on both hops hold: without flow control the
    # relay would read it all into memory and the upstream's drain would return
    size = 64 * 1024 * 1024
    held = asyncio.Event()
    sent: list[bool] = []

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * size)
        try:
            await asyncio.wait_for(writer.drain(), timeout=3)
            sent.append(True)
        except TimeoutError:
            sent.append(False)
        held.set()
        await writer.drain()
        writer.close()

    async def main() -> int:
        upstream = await asyncio.start_server(flood, "127.0.0.1", 0)
        async with upstream, _relay_to(upstream.sockets[0].getsockname()[:2]) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
            await asyncio.wait_for(held.wait(), timeout=30)  # nothing read until then
            got = 0
            while chunk := await asyncio.wait_for(reader.read(2**20), timeout=30):
                got += len(chunk)
            writer.close()
            return got

    assert _run(loop, main()) == size
    assert sent == [False]


@pytest.mark.parametrize("loop", LOOPS)
def test_an_unreachable_upstream_closes_the_clients_connection(loop: str) -> None:
    async def main() -> bytes:
        async with _relay_to(("127.0.0.1", _free_port())) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            try:
                return await asyncio.wait_for(reader.read(), timeout=10)
            except ConnectionResetError:
                return b""
            finally:
                writer.close()

    assert _run(loop, main()) == b""


def test_the_relay_exits_cleanly_on_sigterm() -> None:
    port = _free_port()
    script = Path(__file__).resolve().parents[1] / "tcp_relay.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), "--upstream", "127.0.0.1:9"]
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_the_upstream_must_be_host_and_port() -> None:
    assert relay._address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    with pytest.raises(Exception, match="HOST:PORT"):
        relay._address("8000")
