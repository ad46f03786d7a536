"""/healthz, /readyz and /metrics on a real port; the watch's handling of 410 Gone."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from wharf_controller.kube.api import DEPLOYMENT
from wharf_controller.kube.health import health_app
from wharf_controller.kube.informer import Informer, _Gone
from wharf_controller.metrics import Metrics
from wharf_e2e.testing import free_port


async def test_health_readiness_and_metrics_endpoints() -> None:
    metrics = Metrics()
    metrics.reconciles.labels("InferenceService", "success").inc()
    metrics.queue_depth.labels("InferenceService").set(3)
    metrics.latency.labels("InferenceService").observe(0.01)
    ready = {"value": False}
    runner = web.AppRunner(health_app(metrics.registry, lambda: True, lambda: ready["value"]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status == 200
            assert (await http.get("/readyz")).status == 503
            ready["value"] = True
            assert (await http.get("/readyz")).status == 200
            text = await (await http.get("/metrics")).text()
    finally:
        await runner.cleanup()
    assert 'wharf_controller_reconciles_total{kind="InferenceService",result="success"} 1.0' in text
    assert 'wharf_controller_queue_depth{kind="InferenceService"} 3.0' in text
    assert "wharf_controller_reconcile_seconds_bucket" in text


async def test_a_410_event_ends_the_watch_for_a_relist_and_bookmarks_move_the_version() -> None:
    # The events as the API server sends them; a real 410 needs etcd compaction (minutes).
    informer = Informer(None, DEPLOYMENT)  # type: ignore[arg-type]
    version = await informer._apply(
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}, "7"
    )
    assert version == "42" and informer.store == {}
    added = {
        "metadata": {"name": "d", "namespace": "n", "resourceVersion": "43", "managedFields": [{}]}
    }
    assert await informer._apply({"type": "ADDED", "object": added}, version) == "43"
    assert "managedFields" not in informer.get("d", "n")["metadata"]  # type: ignore[index]
    with pytest.raises(_Gone):
        await informer._apply(
            {"type": "ERROR", "object": {"code": 410, "message": "too old"}}, "43"
        )
