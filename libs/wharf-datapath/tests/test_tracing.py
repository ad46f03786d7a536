"""Tracing's configuration from OTEL_* and its spans, with the real OpenTelemetry SDK (spans
kept in memory instead of exported)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wharf_datapath import tracing as tr

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


# -- settings from the environment ------------------------------------------------------------


def test_off_by_default() -> None:
    assert tr.settings_from_env({}, "svc") is None
    assert tr.setup("svc", env={}) is None


def test_an_endpoint_alone_turns_otlp_over_http_on() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert tr.settings_from_env(env, "svc") == tr.TracingSettings(
        service_name="svc",
        exporter="otlp",
        protocol="http/protobuf",
        sampler="parentbased_always_on",
        sampler_arg=None,
    )


def test_a_traces_endpoint_alone_turns_it_on_too() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}
    settings = tr.settings_from_env(env, "svc")
    assert settings is not None and settings.exporter == "otlp"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
        {"OTEL_TRACES_EXPORTER": "", "OTEL_TRACES_SAMPLER": ""},
    ],
)
def test_what_turns_it_off(env: dict[str, str]) -> None:
    assert tr.settings_from_env(env, "svc") is None


def test_kserves_env_with_empty_fields_means_the_defaults() -> None:
    """KServe's injectServerTracing writes every field, the unset ones as empty strings."""
    env = {
        "OTEL_SERVICE_NAME": "inference-server",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317",
        "OTEL_TRACES_EXPORTER": "",
        "OTEL_TRACES_SAMPLER": "",
        "OTEL_TRACES_SAMPLER_ARG": "",
    }
    settings = tr.settings_from_env(env, "svc")
    assert settings is not None
    assert (settings.service_name, settings.exporter, settings.sampler) == (
        "inference-server",
        "otlp",
        "parentbased_always_on",
    )


def test_explicit_otlp_and_console_exporters_and_the_grpc_protocol() -> None:
    explicit = tr.settings_from_env({"OTEL_TRACES_EXPORTER": "otlp"}, "svc")
    assert explicit is not None and explicit.exporter == "otlp"
    console = tr.settings_from_env({"OTEL_TRACES_EXPORTER": "console"}, "svc")
    assert console is not None and console.exporter == "console"
    grpc = tr.settings_from_env(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "svc"
    )
    assert grpc is not None and grpc.protocol == "grpc"
    traces_only = tr.settings_from_env(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        },
        "svc",
    )
    assert traces_only is not None and traces_only.protocol == "http/protobuf"


@pytest.mark.parametrize(
    ("sampler", "arg", "expected"),
    [
        ("traceidratio", "0.25", 0.25),
        ("parentbased_traceidratio", "", 1.0),
        ("parentbased_traceidratio", "0", 0.0),
        ("PARENTBASED_TRACEIDRATIO", " 1 ", 1.0),
        ("always_on", "not a number, and ignored", None),
        ("parentbased_always_off", "", None),
    ],
)
def test_sampler_parsing(sampler: str, arg: str, expected: float | None) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": sampler,
        "OTEL_TRACES_SAMPLER_ARG": arg,
    }
    settings = tr.settings_from_env(env, "svc")
    assert settings is not None
    assert settings.sampler == sampler.lower()
    assert settings.sampler_arg == expected


def test_samplers_are_the_sdks() -> None:
    def described(sampler: str, arg: float | None) -> str:
        settings = tr.TracingSettings("svc", "otlp", "http/protobuf", sampler, arg)
        return tr.make_sampler(settings).get_description()

    assert described("always_off", None) == "AlwaysOffSampler"
    assert described("traceidratio", 0.25) == "TraceIdRatioBased{0.25}"
    assert described("parentbased_traceidratio", 0.5).startswith(
        "ParentBased{root:TraceIdRatioBased{0.5}"
    )
    assert described("parentbased_always_on", None).startswith("ParentBased{root:AlwaysOnSampler")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "jaeger_remote"}, "SAMPLER="),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio",
             "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio",
             "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "x" * 2000}, "OTEL_SERVICE_NAME"),
    ],
)  # fmt: skip
def test_unusable_values_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(tr.TracingConfigError, match=named):
        tr.settings_from_env(env, "svc")


def test_setup_makes_the_exporter_the_environment_names() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "mine"}
    tracing = tr.setup("svc", env=env)
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == "mine"
        assert "traceparent" in tracing.propagator.fields
    finally:
        tracing.provider.shutdown()


def test_a_server_without_tracing_imports_no_opentelemetry() -> None:
    """Off, the data path and the setup import nothing of OpenTelemetry (start time, memory)."""
    code = (
        "import sys; import wharf_datapath.http_proxy, wharf_datapath.tracing as t; "
        "assert t.setup('svc', env={}) is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- spans --------------------------------------------------------------------------------------


@pytest.fixture
def traced() -> Iterator[tuple[tr.Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tr.Tracing(provider, TraceContextTextMapPropagator()), exporter
    provider.shutdown()


def _ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def test_server_span_continues_the_callers_trace_and_injects_its_own(
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    incoming = [(b"host", b"x"), (b"traceparent", TRACEPARENT.encode())]
    with tracing.server_span(incoming, tr.RequestInfo("POST", {tr.HTTP_METHOD: "POST"})):
        forwarded = tracing.inject(incoming)
        with tracing.client_span("step", {"url.full": "http://s/"}):
            text = tracing.inject_text([("Traceparent", "stale"), ("x-a", "1")])
    (server,) = (s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    (client,) = (s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    trace_id, server_id = _ids(server)
    assert trace_id == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    # the caller's traceparent is replaced by the span's: one header, the new parent
    assert [v for k, v in forwarded if k == b"traceparent"] == [
        f"00-{TRACE_ID}-{server_id}-01".encode()
    ]
    assert (b"host", b"x") in forwarded
    _, client_id = _ids(client)
    assert [v for k, v in text if k.lower() == "traceparent"] == [f"00-{TRACE_ID}-{client_id}-01"]
    assert ("x-a", "1") in text


def test_without_a_traceparent_a_new_trace_begins(
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    with tracing.server_span([], tr.RequestInfo("GET", {})):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and _ids(span)[0] != TRACE_ID


async def test_traced_app_records_status_and_passes_the_span_on(
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    seen: list[Any] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 503, "headers": [(b"x-rev", b"r-1")]})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    def describe(scope: Any) -> tr.RequestInfo | None:
        return None if scope["path"] == "/healthz" else tr.http_request_info(scope, "POST", "/p")

    wrapped = tr.traced_app(app, tracing, describe, (b"x-rev", tr.REVISION))
    headers = [(b"traceparent", TRACEPARENT.encode())]
    scope = {"type": "http", "method": "POST", "path": "/p", "headers": headers}
    await wrapped(scope, receive, send)
    await wrapped({**scope, "path": "/healthz", "headers": headers}, receive, send)

    (span,) = exporter.get_finished_spans()  # the health check has none
    assert span.attributes is not None
    assert span.attributes[tr.HTTP_STATUS] == 503
    assert span.attributes[tr.HTTP_ROUTE] == "/p"
    assert span.attributes[tr.REVISION] == "r-1"
    assert span.status.status_code is StatusCode.ERROR
    _, span_id = _ids(span)
    assert (b"traceparent", f"00-{TRACE_ID}-{span_id}-01".encode()) in seen[0]
    assert seen[1] == headers  # untraced: passed as it came
    assert [m["type"] for m in sent].count("http.response.start") == 2
