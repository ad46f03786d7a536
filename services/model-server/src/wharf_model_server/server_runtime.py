"""uvicorn under our control: our signal handling, our shutdown order, the fast HTTP stack."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from wharf_datapath.http_head import head_limited
from wharf_protocol.limits import head_timeout_s, min_body_rate


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # ModelServer owns SIGTERM/SIGINT so REST and gRPC drain together; uvicorn's own
        # handler would re-raise the signal after shutdown and kill the process mid-drain.
        yield


class RestServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        timeout_keep_alive: int = 65,
        graceful_timeout: float | None = 30.0,
        reuse_port: bool = False,
    ) -> None:
        self._host, self._port, self._reuse_port = host, port, reuse_port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # httptools, with bounds on the request line and headers (431 above it) and on slow
            # heads and bodies (408)
            http=head_limited(head_timeout_s=head_timeout_s(), min_body_rate=min_body_rate()),
            lifespan="on",
            access_log=False,
            server_header=False,
            # The client address is not used; parsing X-Forwarded-For costs every request.
            proxy_headers=False,
            log_config=None,
            timeout_keep_alive=timeout_keep_alive,
            timeout_graceful_shutdown=int(graceful_timeout) if graceful_timeout else None,
        )
        self._server = _Server(config)

    async def serve(self) -> None:
        if not self._reuse_port:
            await self._server.serve()
            return
        # --workers: every worker binds the same port and the kernel spreads the connections.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self._host, self._port))
        sock.set_inheritable(True)
        await self._server.serve(sockets=[sock])

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        while not self._server.started:
            if task.done():
                task.result()  # re-raises why the server could not start
                raise RuntimeError("the REST server stopped before it started")
            await asyncio.sleep(0.01)

    def should_exit(self) -> None:
        self._server.should_exit = True
