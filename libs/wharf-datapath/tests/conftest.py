"""Real servers on loopback for the proxy tests: uvicorn serving small ASGI apps, and a
`Backends` over a fixed list of ports (how a router over pods would implement it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn

from wharf_datapath.backends import GoneCallback, Lease, Route, Unavailable

HOST = "svc.test"
App = Callable[..., Any]


class ListBackends:
    """Round robin over `ports` for the Host `svc.test`; ports marked unreachable are skipped."""

    def __init__(self, ports: list[int], grpc_ports: list[int | None] | None = None) -> None:
        self.ports = ports
        self.grpc_ports = grpc_ports or [None] * len(ports)
        self.next = 0
        self.unreachable: set[int] = set()
        self.leased = 0
        self.released = 0
        self.gone: list[GoneCallback] = []

    def resolve(self, host: str | None, path: str) -> Route | str:
        if host is None or host.split(":")[0] != HOST:
            return f"unknown host {host!r}"
        return Route(None, path, HOST)

    async def acquire(self, route: Route) -> Lease:
        for _ in range(len(self.ports)):
            i = self.next % len(self.ports)
            self.next += 1
            if self.ports[i] not in self.unreachable:
                self.leased += 1
                return Lease(self.ports[i], self.grpc_ports[i], f"replica-{i}")
        raise Unavailable("every replica is unreachable")

    def release(self, lease: Lease) -> None:
        self.released += 1

    def mark_unreachable(self, lease: Lease) -> None:
        self.unreachable.add(lease.http_port)

    def watch_gone(self, callback: GoneCallback) -> None:
        self.gone.append(callback)


@contextlib.asynccontextmanager
async def serving(app: App, **config: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields the port."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **config)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def serve() -> Callable[..., contextlib.AbstractAsyncContextManager[int]]:
    return serving


async def closed_port() -> int:
    """A loopback port that refuses connections (it was just listened on and closed)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


@pytest.fixture
def refused_port() -> Callable[[], Any]:
    return closed_port


@pytest.fixture
def list_backends() -> type[ListBackends]:
    return ListBackends
