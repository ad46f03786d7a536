"""Fixtures: fake engines (a test double of vLLM's server) and the gateway, on loopback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

# the helpers live beside the tests; pytest's importlib mode does not put this folder on the path
sys.path.insert(0, str(Path(__file__).parent))

from gateway_testkit import FakeEngine, Served, Start

from wharf_router.gateway.app import Gateway
from wharf_router.gateway.config import GatewayConfig
from wharf_router.gateway.endpoints import Endpoint, StaticEndpoints, make_endpoint
from wharf_router.gateway.limits import ApiKeys
from wharf_router.gateway.pool import Probing

FAST_PROBING = Probing(
    scrape_interval=0.05, probe_interval=0.05, models_interval=0.2, timeout=1.0, eject_after=1
)


@pytest.fixture
async def servers() -> AsyncIterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in reversed(started):
        if served.task is not None and not served.task.done():
            await served.stop(abrupt=True)


@pytest.fixture
def start_engine(servers: list[Served]) -> Start:
    async def start(
        name: str, role: str = "both", **kwargs: Any
    ) -> tuple[FakeEngine, Served, Endpoint]:
        engine = FakeEngine(name, **kwargs)
        served = await Served(engine).start()
        servers.append(served)
        return engine, served, make_endpoint(served.url, role, name)

    return start


@pytest.fixture
def start_gateway(servers: list[Served]) -> Start:
    async def start(
        endpoints: list[Endpoint],
        keys: ApiKeys | None = None,
        wait_models: bool = True,
        **settings: Any,
    ) -> tuple[Gateway, Served]:
        config = replace(GatewayConfig(probing=FAST_PROBING), **settings)
        gateway = Gateway(config, StaticEndpoints(endpoints), keys)
        served = await Served(gateway).start()
        servers.append(served)
        if wait_models:
            from wharf_e2e.testing import until

            await until(
                lambda: (
                    len(gateway.pool.pods) == len(endpoints)
                    and all(p.models is not None for p in gateway.pool.pods.values())
                ),
                "the gateway to learn its pods' models",
                timeout_s=20,
            )
        return gateway, served

    return start
