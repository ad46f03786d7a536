"""Wharf's ASGI middleware inside vLLM's OpenAI server (loaded with vLLM's `--middleware`).

It counts requests per route and status and those in flight, and appends Wharf's metrics to
vLLM's `/metrics` response, so one scrape gets both. It never buffers a token stream: for every
route but `/metrics` it only watches the response's start message.

Plain ASGI (no Starlette import) so that it loads in the engine environment and is tested in
the workspace one.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from wharf_llm_worker.launch import KV_CONNECTOR_ENV, ROLE_ENV, SERVED_NAME_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes get their own label; anything else is "other" so a client cannot grow the label set.
_ROUTES = (
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/load_lora_adapter",
    "/v1/unload_lora_adapter",
    "/health",
    "/tokenize",
    "/detokenize",
)
# vLLM's metrics body for a small model is tens of KiB; anything far past that is not ours to
# rewrite, it is passed through unchanged.
MAX_METRICS_BODY = 8 * 1024 * 1024


def route_label(path: str) -> str:
    return path if path in _ROUTES else "other"


class WorkerMetrics:
    """Wharf's own metrics of one worker, in a registry of their own."""

    def __init__(self, role: str, model: str, kv_connector: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        info = Gauge(
            "wharf_llm_worker_info",
            "The worker's role, served model name and KV connector (always 1).",
            ["role", "model", "kv_connector"],
            registry=self.registry,
        )
        info.labels(role=role, model=model, kv_connector=kv_connector).set(1)
        self.in_flight = Gauge(
            "wharf_llm_worker_requests_in_flight",
            "Requests being answered, streams included, by route.",
            ["route"],
            registry=self.registry,
        )
        self.requests = Counter(
            "wharf_llm_worker_requests",
            "Requests answered, by route and HTTP status.",
            ["route", "code"],
            registry=self.registry,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerMetrics:
        return cls(
            role=environ.get(ROLE_ENV, "both"),
            model=environ.get(SERVED_NAME_ENV, ""),
            kv_connector=environ.get(KV_CONNECTOR_ENV, "none"),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WharfMiddleware:
    def __init__(self, app: ASGIApp, metrics: WorkerMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics if metrics is not None else WorkerMetrics.from_env(os.environ)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/metrics" or path == "/metrics/":
            await self._metrics(scope, receive, send)
            return
        route = route_label(path)
        status = 500  # if the app raises before answering

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        gauge = self.metrics.in_flight.labels(route=route)
        gauge.inc()
        try:
            await self.app(scope, receive, watch)
        finally:
            gauge.dec()
            self.metrics.requests.labels(route=route, code=str(status)).inc()

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Ask vLLM's exporter for plain text (it gzips when asked), so ours can be appended.
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        plain_scope = dict(scope, headers=headers)
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                chunks.append(body)
                size += len(body)
                if size > MAX_METRICS_BODY:
                    raise ValueError("vLLM's /metrics body is over the size limit")
                return
            await send(message)

        await self.app(plain_scope, receive, capture)
        if start is None:
            return
        body = b"".join(chunks)
        if int(start["status"]) == 200:
            body = (
                body + (b"" if body.endswith(b"\n") or not body else b"\n") + self.metrics.render()
            )
        out_headers = [
            (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
        ]
        out_headers.append((b"content-length", str(len(body)).encode()))
        await send(dict(start, headers=out_headers))
        await send({"type": "http.response.body", "body": body, "more_body": False})
