"""Tracing of the gRPC transport: a server span per call of `inference.GRPCInferenceService`,
named and described by OpenTelemetry's RPC conventions, child of the caller's `traceparent`.

Real grpc.aio servers on loopback and real clients (tritonclient's gRPC client, the generated
stub); the real OpenTelemetry SDK keeps the spans in memory instead of exporting them, except in
the last test, where a `wharf-model-server` configured from `OTEL_*` exports them over OTLP/gRPC
to a receiver on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio_grpcclient
from ms_testkit import ThreadServer, free_port
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
from wharf_model_server import Model
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.grpc_server import build_grpc_server
from wharf_model_server.model_repository import ModelRepository
from wharf_protocol.grpc import pb, pb_grpc

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SERVICE = "inference.GRPCInferenceService"
MAX_MESSAGE = 16 << 20


class Doubler(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        return {"predictions": [2 * v for v in payload.inputs[0].data]}


class Broken(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        raise RuntimeError("the weights are gone")


def _dataplane() -> DataPlane:
    repository = ModelRepository()
    repository.update(Doubler("doubler"))
    repository.update(Broken("broken"))
    return DataPlane(repository)


@pytest.fixture
def traced() -> Iterator[tuple[tr.Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tr.Tracing(provider, TraceContextTextMapPropagator()), exporter
    provider.shutdown()


@pytest.fixture
async def traced_server(
    traced: tuple[tr.Tracing, InMemorySpanExporter],
) -> AsyncIterator[tuple[str, InMemorySpanExporter]]:
    tracing, exporter = traced
    port = free_port()
    server = build_grpc_server(
        _dataplane(), port, MAX_MESSAGE, MAX_MESSAGE, host="127.0.0.1", tracing=tracing
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}", exporter
    finally:
        await server.stop(None)


def _infer_inputs(client: Any) -> list[Any]:
    infer_input = client.InferInput("x", [3], "FP32")
    infer_input.set_data_from_numpy(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    return [infer_input]


def _infer_request(model: str) -> Any:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="x",
                datatype="FP32",
                shape=[1],
                contents=pb.InferTensorContents(fp32_contents=[1.0]),
            )
        ],
    )


def _ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def _only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


async def _aborted_call_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The span of a call the server aborted. grpc.aio sends the status from `abort` and only
    then raises into the handler, so the client can hold the error before the span has ended;
    the server runs on this loop, so it ends once the loop turns (bounded by the test timeout)."""
    for _ in range(2000):
        if exporter.get_finished_spans():
            break
        await asyncio.sleep(0.005)
    return _only_span(exporter)


async def test_a_call_with_a_traceparent_continues_the_callers_trace(
    traced_server: tuple[str, InMemorySpanExporter],
) -> None:
    address, exporter = traced_server
    client = aio_grpcclient.InferenceServerClient(address)
    try:
        result = await client.infer(
            "doubler", _infer_inputs(aio_grpcclient), headers={"traceparent": TRACEPARENT}
        )
    finally:
        await client.close()
    assert result.as_numpy("output-0").tolist() == [2.0, 4.0, 6.0]  # served as untraced
    span = _only_span(exporter)
    assert span.name == f"{SERVICE}/ModelInfer"
    assert span.kind is SpanKind.SERVER
    assert _ids(span)[0] == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert dict(span.attributes or {}) == {
        tr.RPC_SYSTEM: "grpc",
        tr.RPC_SERVICE: SERVICE,
        tr.RPC_METHOD: "ModelInfer",
        tr.RPC_GRPC_STATUS_CODE: 0,
        tr.MODEL: "doubler",
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_the_answer_carries_the_spans_own_traceparent(
    traced_server: tuple[str, InMemorySpanExporter],
) -> None:
    address, exporter = traced_server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelReady(
            pb.ModelReadyRequest(name="doubler"), metadata=(("traceparent", TRACEPARENT),)
        )
        assert (await call).ready
        trailing = await call.trailing_metadata()
    span = _only_span(exporter)
    assert span.name == f"{SERVICE}/ModelReady"
    assert (span.attributes or {})[tr.MODEL] == "doubler"
    _, span_id = _ids(span)
    assert dict(trailing or ())["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"


async def test_a_call_without_a_traceparent_begins_a_trace(
    traced_server: tuple[str, InMemorySpanExporter],
) -> None:
    address, exporter = traced_server
    client = aio_grpcclient.InferenceServerClient(address)
    try:
        assert await client.is_server_live()
    finally:
        await client.close()
    span = _only_span(exporter)
    assert span.name == f"{SERVICE}/ServerLive"
    assert span.parent is None
    assert _ids(span)[0] != TRACE_ID
    assert tr.MODEL not in (span.attributes or {})  # ServerLive names no model
    assert (span.attributes or {})[tr.RPC_METHOD] == "ServerLive"


async def test_an_unknown_model_records_not_found_as_the_clients_error(
    traced_server: tuple[str, InMemorySpanExporter],
) -> None:
    """NOT_FOUND is recorded; the span is not marked failed: OpenTelemetry's RPC conventions
    leave a server span's status unset for a client's error, as a 404 over REST is."""
    address, exporter = traced_server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(_infer_request("nope"), metadata=(("traceparent", TRACEPARENT),))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    span = await _aborted_call_span(exporter)
    assert _ids(span)[0] == TRACE_ID
    assert (span.attributes or {})[tr.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.NOT_FOUND.value[0]
    assert (span.attributes or {})[tr.MODEL] == "nope"
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events  # an abort is a status, not an exception
    # a failed call's answer names the span too
    _, span_id = _ids(span)
    trailing = dict(err.value.trailing_metadata() or ())
    assert trailing["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"


async def test_a_model_that_fails_marks_the_span_failed(
    traced_server: tuple[str, InMemorySpanExporter],
) -> None:
    address, exporter = traced_server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(_infer_request("broken"))
    assert err.value.code() is grpc.StatusCode.INTERNAL
    span = await _aborted_call_span(exporter)
    assert (span.attributes or {})[tr.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.INTERNAL.value[0]
    assert (span.attributes or {})[tr.MODEL] == "broken"
    assert span.status.status_code is StatusCode.ERROR


async def test_without_tracing_no_interceptor_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off, the server is built without interceptors, so a call has no per-call tracing work."""
    made: list[Any] = []
    real_server = grpc.aio.server

    def recording_server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        made.append(kwargs.get("interceptors"))
        return real_server(*args, **kwargs)

    monkeypatch.setattr(grpc.aio, "server", recording_server)
    port = free_port()
    server = build_grpc_server(_dataplane(), port, MAX_MESSAGE, MAX_MESSAGE, host="127.0.0.1")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            call = stub.ModelReady(
                pb.ModelReadyRequest(name="doubler"), metadata=(("traceparent", TRACEPARENT),)
            )
            assert (await call).ready
            trailing = await call.trailing_metadata()
    finally:
        await server.stop(None)
    assert made == [None]
    assert "traceparent" not in dict(trailing or ())


def test_an_untraced_grpc_server_imports_no_opentelemetry() -> None:
    """Off, serving gRPC calls loads nothing of OpenTelemetry (start time, memory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = """
import asyncio, sys
import grpc
from wharf_datapath import tracing
from wharf_model_server.dataplane import DataPlane
from wharf_model_server.grpc_server import build_grpc_server
from wharf_model_server.model_repository import ModelRepository
from wharf_protocol.grpc import pb, pb_grpc

async def main():
    port = int(sys.argv[1])
    server = build_grpc_server(
        DataPlane(ModelRepository()), port, 1 << 20, 1 << 20, host="127.0.0.1",
        tracing=tracing.setup("wharf-model-server"),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        live = await pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest())
    await server.stop(None)
    assert live.live
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- a model server configured from OTEL_* ---------------------------------------------------


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received: list[ExportTraceServiceRequest] = []

    def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        self.received.append(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    servicer = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", servicer.received
    server.stop(None)


def test_a_model_server_traces_grpc_calls_when_otel_asks(
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    endpoint, received = otlp_receiver
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # OTLP over gRPC by default
    with ThreadServer([Doubler("doubler")]) as server:
        client = grpcclient.InferenceServerClient(server.grpc_host)
        try:
            result = client.infer(
                "doubler", _infer_inputs(grpcclient), headers={"traceparent": TRACEPARENT}
            )
        finally:
            client.close()
        assert result.as_numpy("output-0").tolist() == [2.0, 4.0, 6.0]
    # the server's stop flushed the batch
    spans = [
        (rs, span)
        for request in received
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    ((resource_spans, span),) = spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "wharf-model-server"
    assert span.name == f"{SERVICE}/ModelInfer"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes[tr.MODEL].string_value == "doubler"
    assert attributes[tr.RPC_GRPC_STATUS_CODE].int_value == 0
