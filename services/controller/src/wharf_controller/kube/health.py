"""`/healthz`, `/readyz` and `/metrics` on one port."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def health_app(
    registry: CollectorRegistry, alive: Callable[[], bool], ready: Callable[[], bool]
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if alive() else web.Response(status=503, text="dead")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready() else web.Response(status=503, text="not ready")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
