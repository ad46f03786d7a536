"""uvicorn under our control: our signal handling, our shutdown order, the fast HTTP stack."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Generator
from typing import Any

import uvicorn


def cgroup_cpu_limit(cpu_max: str) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2), None if unlimited."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if period > 0 else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a container's cgroup CPU limit."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            limit = cgroup_cpu_limit(fh.read())
    except OSError:
        limit = None
    return min(cpus, limit) if limit else cpus


def default_thread_count() -> int:
    """Threads for sync model code: one per usable cpu.

    Model code is CPU-bound. Pure-Python models hold the GIL, so more threads than cpus only
    add GIL hand-offs and serve requests out of order (a longer latency tail); models that
    release the GIL (xgboost, lightgbm, onnxruntime, numpy) still get every core. KServe's
    ``min(32, cpus + 4)`` is sized for I/O; ``--max_asyncio_workers`` sets it explicitly.
    """
    return usable_cpus()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # ModelServer owns SIGTERM/SIGINT so REST and gRPC drain together; uvicorn's own
        # handler would re-raise the signal after shutdown and kill the process mid-drain.
        yield


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


class RestServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        timeout_keep_alive: int = 65,
        graceful_timeout: float | None = 30.0,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=_http_impl(),
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
        await self._server.serve()

    async def wait_started(self, task: asyncio.Task[None]) -> None:
        while not self._server.started:
            if task.done():
                task.result()  # re-raises why the server could not start
                raise RuntimeError("the REST server stopped before it started")
            await asyncio.sleep(0.01)

    def should_exit(self) -> None:
        self._server.should_exit = True
