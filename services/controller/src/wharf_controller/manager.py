"""`wharf-controller run`: health endpoints, the webhooks (every replica serves them), leader
election, then the controller."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from wharf_controller.controller import Controller
from wharf_controller.graph_controller import GraphController
from wharf_controller.kube.api import Api, connect
from wharf_controller.kube.health import health_app
from wharf_controller.kube.leader import LeaderElector
from wharf_controller.llm_controller import LLMController
from wharf_controller.metrics import Metrics
from wharf_controller.model_cache_controller import ModelCacheController
from wharf_controller.webhook.server import WebhookServer

log = logging.getLogger(__name__)
LEASE_NAME = "wharf-controller-leader"


async def run(args: argparse.Namespace) -> int:
    client = await connect(args.kubeconfig)
    api = Api(client)
    metrics = Metrics()
    controller = Controller(
        api,
        config_namespace=args.namespace,
        workers=args.workers,
        resync_s=args.resync_seconds,
        metrics=metrics,
    )
    graphs = GraphController(controller, workers=max(1, args.workers // 2))
    llm = LLMController(
        api,
        config_namespace=args.namespace,
        workers=max(args.workers // 2, 1),
        resync_s=args.resync_seconds,
        metrics=metrics,
    )
    cache = None
    if getattr(args, "model_cache_namespace", None):
        cache = ModelCacheController(
            api,
            agent_namespace=args.model_cache_namespace,
            metrics=metrics,
            resync_s=args.resync_seconds,
        )
        cache.serve_for(controller)
    elector = leader_elector(api, args)
    runner = web.AppRunner(
        health_app(
            metrics.registry,
            lambda: True,
            lambda: (
                controller.caches_synced()
                and graphs.caches_synced()
                and llm.caches_synced()
                and (cache is None or cache.caches_synced())
            ),
        ),
        access_log=None,
    )
    await runner.setup()
    await web.TCPSite(runner, args.metrics_host, args.metrics_port).start()
    webhooks = None
    if getattr(args, "webhook_cert_dir", None) is not None:
        webhooks = WebhookServer(args.webhook_cert_dir, args.webhook_host, args.webhook_port)
        try:
            await webhooks.start()
        except BaseException:
            await runner.cleanup()
            await client.close()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        await controller.start_caches()
        await graphs.start_caches()
        await llm.start_caches()
        if cache is not None:
            await cache.start_caches()
        campaign = asyncio.create_task(elector.run()) if elector else None
        if elector is not None:
            leading = asyncio.create_task(elector.leading.wait())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({leading, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            leading.cancel()
        if not stop.is_set():
            metrics.leader.set(1)
            await controller.start_workers()
            await graphs.start_workers()
            await llm.start_workers()
            if cache is not None:
                await cache.start_workers()
            waits = {asyncio.create_task(stop.wait())}
            if elector is not None:
                waits.add(asyncio.create_task(elector.lost.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if elector is not None and elector.lost.is_set():
                log.error("leadership lost: exiting so a fresh replica campaigns again")
                code = 1
        if campaign is not None:
            campaign.cancel()
    finally:
        await _stop_together([graphs.stop(), controller.stop(), llm.stop()] +
                             ([cache.stop()] if cache is not None else []))  # fmt: skip
        if elector is not None:
            await elector.release()
        if webhooks is not None:
            await webhooks.stop()
        await runner.cleanup()
        await client.close()
    return code


def leader_elector(api: Api, args: argparse.Namespace) -> LeaderElector | None:
    """The Lease campaign `run` starts: None under --no-leader-elect, else timed by
    --lease-seconds and --renew-seconds (checked by `wharf_controller.__main__`)."""
    if not args.leader_elect:
        return None
    identity = args.identity or f"{socket.gethostname()}-{os.getpid()}"
    return LeaderElector(
        api,
        args.namespace,
        LEASE_NAME,
        identity,
        lease_s=args.lease_seconds,
        retry_s=args.renew_seconds,
    )


async def _stop_together(stops: list[Coroutine[Any, Any, None]]) -> None:
    # Together: each stop gives its reconcile in hand up to 10 s, so one after another the
    # four controllers could hold a terminating pod for 40 s.
    for failure in await asyncio.gather(*stops, return_exceptions=True):
        if isinstance(failure, BaseException):
            log.error("a controller failed to stop cleanly: %r", failure)


def run_forever(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
