"""/metrics (Prometheus), /healthz and /readyz on one port, served by aiohttp."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wharf_model_agent.agent import Agent


def make_app(agent: Agent) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(agent.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        # Ready once the LocalModelNode was listed and the cache reconciled against it.
        if agent.synced.is_set() and agent.reconciles > 0:
            return web.Response(text="ok")
        return web.Response(status=503, text="not synced with the API server yet")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(agent: Agent, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(make_app(agent), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
