"""Readiness and drain, as KServe's router does it: after SIGTERM `/readyz` answers 503
"shutting down" for a drain period (so endpoints stop sending), then the server stops
gracefully, finishing the requests it has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

log = logging.getLogger("wharf.router")

READYZ = "/readyz"


class Readiness:
    def __init__(self) -> None:
        self.draining = False

    def status(self) -> tuple[int, bytes]:
        return (503, b"shutting down\n") if self.draining else (200, b"")


class _Server(uvicorn.Server):
    # signals are handled below: the drain comes before uvicorn's own shutdown
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def serve(
    config: uvicorn.Config,
    readiness: Readiness,
    drain_s: float,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain for `drain_s` and stop."""
    server = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        readiness.draining = True
        log.info("shutdown signal: not ready, draining for %.0fs", drain_s)
        await asyncio.wait({task}, timeout=drain_s)
        server.should_exit = True
        await task
    stopper.cancel()
    if on_stop is not None:
        await on_stop()
    failure = task.exception()
    if failure is not None:
        raise failure
