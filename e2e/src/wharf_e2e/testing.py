"""Helpers every test suite shares: free ports, and waiting on a condition instead of a clock.

Tests wait for what they need to see (`wait_until`, `until`), bounded by a timeout that only
turns a hang into a clear failure; they never sleep a fixed time and count what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn` for the servers tests start: the child gets SIGTERM when the test process
    dies, so a killed or timed-out pytest leaves no control plane or vLLM engine behind (an idle
    CPU engine spins and slows every later run on the machine). Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def quiet_port(host: str = "127.0.0.1") -> int:
    """A free TCP port below the kernel's ephemeral range, never the same twice in a process.

    For a server that binds its port late (vLLM's NIXL side channel binds once the engine has
    loaded): a port from `free_port` lies in the ephemeral range, where the other engines loading
    beside it take random ports for their own sockets, and one of them may take it first."""
    top = _ephemeral_start()
    bottom = max(1024, top - 12000)
    for _ in range(200):
        port = random.randrange(bottom, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {bottom}-{top} on {host}")


def wait_until(
    check: Callable[[], object], what: str, timeout_s: float = 120.0, every_s: float = 0.05
) -> object:
    """Call `check` until it returns something truthy, and return that; AssertionError naming
    `what` after `timeout_s`. An exception from `check` counts as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            value = check()
        except Exception as exc:  # the thing waited for may raise until it is there
            last, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(every_s)


async def until(
    check: Callable[[], object], what: str, timeout_s: float = 120.0, every_s: float = 0.05
) -> object:
    """`wait_until` for async tests: yields to the event loop between checks."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(every_s)


def exchange_until_closed(port: int, pieces: list[bytes], pause_s: float = 0.0) -> bytes:
    """Send `pieces` on one connection to 127.0.0.1:`port`, `pause_s` apart (while the server
    keeps it open), and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        with contextlib.suppress(OSError):
            for piece in pieces:
                conn.sendall(piece)
                time.sleep(pause_s)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                answer += chunk
        return answer


@contextlib.contextmanager
def http_server_thread(
    handler: Callable[..., BaseHTTPRequestHandler],
) -> Iterator[str]:
    """A `ThreadingHTTPServer` on a free loopback port, served from a thread while the block
    runs: its base URL. The thread has ended when the block has."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
