"""Wharf's ASGI middleware, around a small ASGI app that stands in for vLLM's server.

The real vLLM server with the middleware is exercised in test_vllm_worker.py (marker `vllm`);
here the stand-in makes the metrics merge and the counting checkable in milliseconds.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx

from wharf_llm_worker.middleware import Receive, Scope, Send, WharfMiddleware, WorkerMetrics

VLLM_METRICS = (
    b'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="tiny"} 0.0\n'
)


async def stand_in(scope: Scope, receive: Receive, send: Send) -> None:
    """Like vLLM: a gzip-capable /metrics, a streamed completion, and a 404."""
    headers = dict(scope["headers"])
    if scope["path"] == "/metrics":
        body = VLLM_METRICS
        out: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain; version=0.0.4")]
        if b"gzip" in headers.get(b"accept-encoding", b""):
            body = gzip.compress(body)
            out.append((b"content-encoding", b"gzip"))
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": body})
    elif scope["path"] == "/v1/chat/completions":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"data: a\n\n", b"data: b\n\n", b"data: [DONE]\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})


def _client(metrics: WorkerMetrics) -> httpx.AsyncClient:
    app: Any = WharfMiddleware(stand_in, metrics=metrics)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker")


async def test_metrics_carry_vllms_and_wharfs_even_when_gzip_is_asked() -> None:
    metrics = WorkerMetrics(role="decode", model="tiny", kv_connector="NixlConnector")
    async with _client(metrics) as client:
        response = await client.get("/metrics", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    text = response.text
    assert 'vllm:num_requests_running{model_name="tiny"} 0.0' in text
    assert (
        'wharf_llm_worker_info{kv_connector="NixlConnector",model="tiny",role="decode"} 1.0' in text
    )
    assert int(response.headers["content-length"]) == len(response.content)


async def test_streams_pass_through_and_are_counted_by_route_and_status() -> None:
    metrics = WorkerMetrics(role="both", model="tiny", kv_connector="none")
    async with _client(metrics) as client:
        streamed = await client.post("/v1/chat/completions", json={})
        await client.get("/some/unknown/path")
        scraped = (await client.get("/metrics")).text
    assert streamed.text == "data: a\n\ndata: b\n\ndata: [DONE]\n\n"
    assert 'wharf_llm_worker_requests_total{code="200",route="/v1/chat/completions"} 1.0' in scraped
    # Unknown paths share one label, so clients cannot grow the label set.
    assert 'wharf_llm_worker_requests_total{code="404",route="other"} 1.0' in scraped
    assert 'wharf_llm_worker_requests_in_flight{route="/v1/chat/completions"} 0.0' in scraped


async def test_in_flight_counts_a_request_while_it_streams() -> None:
    metrics = WorkerMetrics(role="both", model="tiny", kv_connector="none")
    seen: list[float] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(metrics.in_flight.labels(route="/v1/completions")._value.get())
        await send({"type": "http.response.body", "body": b"x"})

    app: Any = WharfMiddleware(slow, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
        await c.post("/v1/completions")
    assert seen == [1.0]
    assert metrics.in_flight.labels(route="/v1/completions")._value.get() == 0.0


def test_worker_metrics_read_the_launch_environment() -> None:
    metrics = WorkerMetrics.from_env(
        {
            "WHARF_LLM_WORKER_ROLE": "prefill",
            "WHARF_LLM_WORKER_MODEL": "m",
            "WHARF_LLM_WORKER_KV_CONNECTOR": "NixlConnector",
        }
    )
    assert b'role="prefill"' in metrics.render()
