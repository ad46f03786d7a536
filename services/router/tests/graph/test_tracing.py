"""The graph router with tracing on: each step call is a client span whose context the step
receives in place of the caller's; a bad OTEL_* value stops the router with its name.
(The whole chain through real processes is e2e/local/test_tracing_up.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wharf_datapath import tracing as tr
from wharf_router.graph.cli import main
from wharf_router.graph.client import TracedHttpCaller

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def traced() -> Iterator[tuple[tr.Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tr.Tracing(provider, TraceContextTextMapPropagator()), exporter
    provider.shutdown()


@pytest.fixture
async def step() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A step on loopback that records each request head and answers 200."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        heads.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/models/m:predict", heads


async def test_a_step_call_is_a_client_span_and_carries_its_context(
    traced: tuple[tr.Tracing, InMemorySpanExporter], step: tuple[str, list[bytes]]
) -> None:
    tracing, exporter = traced
    url, heads = step
    caller = TracedHttpCaller(tracing, timeout_s=10)
    incoming = [(b"traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode())]
    try:
        with tracing.server_span(incoming, tr.RequestInfo("POST graph", {})):
            # a propagated stale traceparent (PROPAGATE_HEADERS) is replaced, not doubled
            answer = await caller(url, b"{}", [("traceparent", "stale"), ("x-a", "1")])
    finally:
        await caller.aclose()
    assert answer.status == 200
    [call] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert call.attributes is not None
    assert call.attributes["url.full"] == url
    assert call.attributes[tr.HTTP_STATUS] == 200
    assert call.context is not None
    expected = f"traceparent: 00-{TRACE_ID}-{call.context.span_id:016x}-01".encode()
    lines = heads[0].lower().split(b"\r\n")
    assert [line for line in lines if line.startswith(b"traceparent")] == [expected]
    assert b"x-a: 1" in lines


def test_a_bad_otel_value_stops_the_router_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    graph = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://h"}]}}}
    with caplog.at_level(logging.ERROR, logger="wharf.router.graph"):
        assert main(["--graph-json", json.dumps(graph), "--port", "1"]) == 2
    assert "OTEL_TRACES_SAMPLER='sometimes'" in caplog.text
