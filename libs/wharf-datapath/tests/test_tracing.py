"""Tracing's configuration from OTEL_* and its spans, with the real OpenTelemetry SDK (spans
kept in memory instead of exported)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
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


OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_off_by_default(clean_env: pytest.MonkeyPatch) -> None:
    assert tr.settings_from_env({}, "svc") is None
    assert tr.setup("svc") is None


def test_an_endpoint_alone_turns_otlp_over_grpc_on_as_kserve_does() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert tr.settings_from_env(env, "svc") == tr.TracingSettings(
        service_name="svc",
        exporter="otlp",
        protocol="grpc",
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
    http = tr.settings_from_env(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "svc"
    )
    assert http is not None and http.protocol == "http/protobuf"
    traces_only = tr.settings_from_env(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        },
        "svc",
    )
    assert traces_only is not None and traces_only.protocol == "grpc"


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


class _HttpReceiver(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
        self.received.append(request)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received: list[ExportTraceServiceRequest] = []

    def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        self.received.append(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Handler", (_HttpReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    servicer = _GrpcReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", servicer.received
    server.stop(None)


def _exported(received: list[ExportTraceServiceRequest]) -> list[tuple[str, str, str]]:
    """(service name, span name, trace id) of every exported span."""
    out = []
    for request in received:
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                out += [(attrs["service.name"], s.name, s.trace_id.hex()) for s in ss.spans]
    return out


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_reach_an_otlp_receiver_over_either_protocol(
    protocol: str,
    clean_env: pytest.MonkeyPatch,
    http_receiver: tuple[str, list[ExportTraceServiceRequest]],
    grpc_receiver: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    endpoint, received = grpc_receiver if protocol == "grpc" else http_receiver
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    tracing = tr.setup("svc")
    assert tracing is not None
    incoming = [(b"traceparent", TRACEPARENT.encode())]
    with tracing.server_span(incoming, tr.RequestInfo("POST /x", {})):
        pass
    tracing.shutdown()  # exports what the batch holds
    assert _exported(received) == [("svc", "POST /x", TRACE_ID)]
    resource = received[0].resource_spans[0].resource.attributes
    assert {a.key: a.value.string_value for a in resource}["deployment.environment"] == "test"


def test_the_service_name_comes_from_the_environment_first(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_env.setenv("OTEL_SERVICE_NAME", "mine")
    tracing = tr.setup("svc")
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == "mine"
        assert "traceparent" in tracing.propagator.fields
    finally:
        tracing.shutdown()


def test_a_server_without_tracing_imports_no_opentelemetry() -> None:
    """Off, the data path and the setup import nothing of OpenTelemetry (start time, memory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys; import wharf_datapath.http_proxy, wharf_datapath.tracing as t; "
        "assert t.setup('svc') is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
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
    own = (b"traceparent", f"00-{TRACE_ID}-{span_id}-01".encode())
    assert own in seen[0]
    assert seen[1] == headers  # untraced: passed as it came
    # the answer names the span (as KServe's model server does); the untraced one is as sent
    assert sent[0]["headers"] == [(b"x-rev", b"r-1"), own]
    assert sent[2]["headers"] == [(b"x-rev", b"r-1")]
    assert [m["type"] for m in sent].count("http.response.start") == 2


# -- gRPC servers -------------------------------------------------------------------------------


def test_grpc_request_info_follows_the_rpc_conventions() -> None:
    info = tr.grpc_request_info("/inference.GRPCInferenceService/ModelInfer")
    assert info == tr.RequestInfo(
        "inference.GRPCInferenceService/ModelInfer",
        {
            tr.RPC_SYSTEM: "grpc",
            tr.RPC_SERVICE: "inference.GRPCInferenceService",
            tr.RPC_METHOD: "ModelInfer",
        },
    )
    for odd in ("", "/", "/svc", "/svc/", "//m", "/svc/m/extra"):
        assert tr.grpc_request_info(odd) is None, odd


def _bytes_handler(behavior: Any, kind: str = "unary") -> grpc.RpcMethodHandler[Any, Any]:
    if kind == "unary":
        return grpc.unary_unary_rpc_method_handler(behavior)
    return grpc.unary_stream_rpc_method_handler(behavior)


async def test_grpc_interceptor_records_what_the_handler_let_through(
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> None:
    """An exception the handler does not turn into a status reaches the client as UNKNOWN:
    the span says so, fails, and keeps the exception. A streaming call is passed on untraced,
    and a method the server does not have makes no span."""
    tracing, exporter = traced

    async def boom(request: bytes, context: Any) -> bytes:
        raise ValueError("no")

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def stream(request: bytes, context: Any) -> Any:
        yield request

    handlers = {
        "Boom": _bytes_handler(boom),
        "Echo": _bytes_handler(echo),
        "Stream": _bytes_handler(stream, "stream"),
    }
    server = grpc.aio.server(interceptors=[tr.grpc_server_interceptor(tracing)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary("/t.S/Boom")(b"x")
            assert err.value.code() is grpc.StatusCode.UNKNOWN
            for _ in range(2):  # the second call takes the wrapped handler kept for the method
                assert await channel.unary_unary("/t.S/Echo")(b"hi") == b"hi"
            assert [m async for m in channel.unary_stream("/t.S/Stream")(b"s")] == [b"s"]
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await channel.unary_unary("/t.S/Missing")(b"x")
            assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["t.S/Boom", "t.S/Echo", "t.S/Echo"]
    boom_span = spans[0]
    assert boom_span.attributes is not None
    assert boom_span.attributes[tr.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.UNKNOWN.value[0]
    assert boom_span.status.status_code is StatusCode.ERROR
    assert [e.name for e in boom_span.events] == ["exception"]
    assert spans[1].attributes is not None
    assert spans[1].attributes[tr.RPC_GRPC_STATUS_CODE] == 0
    assert spans[1].status.status_code is StatusCode.UNSET
    assert spans[1].context is not None and spans[2].context is not None
    assert spans[1].context.span_id != spans[2].context.span_id
