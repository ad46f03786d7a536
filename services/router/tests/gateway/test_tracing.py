"""The gateway's spans with tracing on: a server span per generation request in the caller's
trace, and a client span per engine call naming the pod and its P/D role, whose `traceparent`
the engine receives. The engines are the fake engines of `gateway_testkit` (a test double of
vLLM's server that records what it was sent); the spans are the real SDK's, kept in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from gateway_testkit import Served, Start
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wharf_datapath import tracing as tr
from wharf_e2e.testing import until
from wharf_router.gateway.config import GatewayConfig
from wharf_router.gateway.endpoints import Endpoint, StaticEndpoints
from wharf_router.gateway.pool import Probing
from wharf_router.gateway.scheduling import Policy
from wharf_router.gateway.traced import TracedGateway, describe_request

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
PROBING = Probing(
    scrape_interval=0.05, probe_interval=0.05, models_interval=0.2, timeout=1.0, eject_after=1
)


@pytest.fixture
def traced() -> Iterator[tuple[tr.Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tr.Tracing(provider, TraceContextTextMapPropagator()), exporter
    provider.shutdown()


async def _traced_gateway(
    endpoints: list[Endpoint],
    tracing: tr.Tracing,
    servers: list[Served],
    policy: Policy = "default",
) -> Served:
    config = replace(GatewayConfig(probing=PROBING), policy=policy)
    gateway = TracedGateway(tracing, config, StaticEndpoints(endpoints))
    served = await Served(tr.traced_app(gateway, tracing, describe_request)).start()
    servers.append(served)
    await until(
        lambda: (
            len(gateway.pool.pods) == len(endpoints)
            and all(p.models is not None for p in gateway.pool.pods.values())
        ),
        "the gateway to learn its pods' models",
        timeout_s=20,
    )
    prefills = sum(1 for e in endpoints if e.role == "prefill")
    pairs = prefills * (len(endpoints) - prefills)
    # P/D pairs are used once warm (pd_warmup.py); the warm-ups themselves are not traced
    await until(
        lambda: gateway.warmer is None or gateway.warmer.warm_pairs() == pairs,
        "the P/D pairs to warm up",
        timeout_s=20,
    )
    return served


def _hex(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


async def test_prefill_and_decode_calls_are_spans_of_the_callers_trace(
    start_engine: Start,
    servers: list[Served],
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    prefill, _, ep = await start_engine("pre", role="prefill")
    decode, _, ed = await start_engine("dec", role="decode")
    gw = await _traced_gateway([ep, ed], tracing, servers)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        answer = await client.post(
            "/v1/completions",
            json={"model": "tiny", "prompt": "a prompt", "max_tokens": 3},
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        )
        health = await client.get("/health")
    assert answer.status_code == 200, answer.text
    assert health.status_code == 200

    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]  # /health has none
    assert server.name == "POST /v1/completions"
    assert _hex(server)[0] == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert answer.headers["traceparent"] == f"00-{TRACE_ID}-{_hex(server)[1]}-01"
    assert server.attributes is not None
    assert server.attributes[tr.HTTP_STATUS] == 200
    assert server.attributes[tr.HTTP_ROUTE] == "/v1/completions"
    calls = {s.name: s for s in spans if s.kind is SpanKind.CLIENT}
    assert set(calls) == {"prefill", "decode"}
    for name, engine in (("prefill", prefill), ("decode", decode)):
        call = calls[name]
        assert call.parent is not None and call.parent.span_id == server.context.span_id
        assert call.attributes is not None
        assert call.attributes[tr.ROLE] == name
        assert call.attributes[tr.POD] == engine.name
        assert call.attributes[tr.LLM_MODEL] == "tiny"
        # the engine was sent this span's context, not the caller's
        trace_id, span_id = _hex(call)
        assert engine.seen[-1].headers["traceparent"] == f"00-{trace_id}-{span_id}-01"
    assert calls["prefill"].attributes is not None
    assert calls["prefill"].attributes["wharf.kv_transfer_params"] is True
    assert calls["decode"].attributes is not None
    assert calls["decode"].attributes[tr.HTTP_STATUS] == 200


async def test_a_retried_pod_is_a_span_of_its_own(
    start_engine: Start,
    servers: list[Served],
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    _, _, bad = await start_engine("bad", fail_status=503)
    _, _, good = await start_engine("good")
    gw = await _traced_gateway([bad, good], tracing, servers, policy="round-robin")
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        for _ in range(4):
            answer = await client.post(
                "/v1/completions", json={"model": "tiny", "prompt": "p", "max_tokens": 2}
            )
            assert answer.status_code == 200, answer.text
    calls = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    failed = [s for s in calls if s.attributes is not None and s.attributes[tr.POD] == "bad"]
    served = [s for s in calls if s.attributes is not None and s.attributes[tr.POD] == "good"]
    assert len(served) == 4
    assert failed  # round robin sent at least one request to the failing pod first
    for span in calls:
        assert span.name == "generate" and span.attributes is not None
        assert span.attributes[tr.ROLE] == "both"
    for span in failed:
        assert span.attributes is not None
        assert span.attributes["wharf.outcome"] == "status 503"


def test_a_bad_otel_value_stops_the_gateway_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from wharf_router.cli import main

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(SystemExit, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        main(["gateway", "--endpoint", "http://h:1"])
