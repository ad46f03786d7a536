"""The pool's probing against a pod that accepts connections and never answers (an engine too
busy to serve `/metrics` in time): it stays a candidate until it has been silent for
`silent_eject_after` seconds, then it is ejected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wharf_e2e.testing import until
from wharf_router.gateway.endpoints import make_endpoint
from wharf_router.gateway.pool import Pool, Probing


class SilentPod:
    """Accepts every connection, reads what comes, answers nothing."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def silent_pod() -> AsyncIterator[SilentPod]:
    pod = SilentPod()
    pod.server = await asyncio.start_server(pod._handle, "127.0.0.1", 0)
    yield pod
    pod.server.close()


def _probing(silent_eject_after: float) -> Probing:
    # eject_after=1: before `silent_eject_after`, the first timed-out scrape ejected the pod
    return Probing(
        scrape_interval=0.01,
        probe_interval=0.01,
        models_interval=3600,
        timeout=0.05,
        eject_after=1,
        silent_eject_after=silent_eject_after,
    )


async def test_a_pod_that_answers_metrics_late_stays_a_candidate(silent_pod: SilentPod) -> None:
    pool = Pool(_probing(silent_eject_after=3600))
    pool.update([make_endpoint(silent_pod.url, "both", "busy")])
    try:
        await until(lambda: silent_pod.connections >= 4, "several timed-out scrapes", timeout_s=60)
        pod = pool.pods["busy"]
        assert pod.healthy
        assert pod.silent_since is not None
        assert [p.name for p in pool.candidates(("both",), None)] == ["busy"]
    finally:
        await pool.aclose()


async def test_a_pod_silent_for_too_long_is_ejected(silent_pod: SilentPod) -> None:
    pool = Pool(_probing(silent_eject_after=0.2))
    pool.update([make_endpoint(silent_pod.url, "both", "hung")])
    try:
        await until(lambda: not pool.pods["hung"].healthy, "the silent pod ejected", timeout_s=60)
        assert pool.candidates(("both",), None) == []
    finally:
        await pool.aclose()


async def test_a_pod_with_no_other_of_its_kind_is_scraped_less_often() -> None:
    """Its load decides no pick (the only decode pod, the only prefill pod): scraping it as
    often as pods that are weighed against each other costs its engine for nothing."""
    probing = Probing(scrape_interval=0.2, lone_scrape_interval=1.0)
    pool = Pool(probing)
    # unroutable addresses: the scrapes fail, which does not matter here
    pool.update(
        [
            make_endpoint("http://127.0.0.1:9", "decode", "d0"),
            make_endpoint("http://127.0.0.1:9", "prefill", "p0"),
        ]
    )
    try:
        assert pool.scrape_interval_of(pool.pods["d0"]) == 1.0
        assert pool.scrape_interval_of(pool.pods["p0"]) == 1.0
        pool.update(
            [
                make_endpoint("http://127.0.0.1:9", "decode", "d0"),
                make_endpoint("http://127.0.0.1:9", "both", "b1"),
                make_endpoint("http://127.0.0.1:9", "prefill", "p0"),
            ]
        )
        # a `both` pod and a `decode` pod both take decode halves: each is weighed against
        # the other; the prefill pod is still alone of its kind
        assert pool.scrape_interval_of(pool.pods["d0"]) == 0.2
        assert pool.scrape_interval_of(pool.pods["b1"]) == 0.2
        assert pool.scrape_interval_of(pool.pods["p0"]) == 1.0
    finally:
        await pool.aclose()
