"""One trace through `wharf up`: ingress -> InferenceGraph router -> ingress -> model server.

The daemon runs with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver in this
test (a loopback HTTP server that decodes the protobuf `ExportTraceServiceRequest` with
opentelemetry-proto); the router and the model server inherit the environment from it. A request
that carries a W3C `traceparent` must come back as spans of all three processes in the caller's
trace, each the child of the hop before it.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from wharf_e2e.servers import WharfDaemon, make_iris
from wharf_e2e.testing import wait_until

# `up` starts a model server and a router; a loaded machine takes a while
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

TRACE_ID = "5b8efff798038103d269b633813fc60c"
CALLER_SPAN = "eee19b7ec3c1b174"
BODY = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
GRAPH_HOST = "traced-default.example.com"
MAX_EXPORT_BYTES = 16 << 20


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpReceiver(ThreadingHTTPServer):
    """What an OpenTelemetry collector's OTLP/HTTP receiver does, for traces: POST /v1/traces."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    span = Span(
                        service=resource.get("service.name", ""),
                        name=s.name,
                        kind=s.kind,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                    )
                    with self.lock:
                        self.spans.append(span)

    def in_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


class _ExportHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        if self.path != "/v1/traces" or not 0 < length <= MAX_EXPORT_BYTES:
            self.send_error(404 if self.path != "/v1/traces" else 400)
            return
        data = self.rfile.read(length)
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        request = ExportTraceServiceRequest()
        request.ParseFromString(data)
        self.server.record(request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def manifests(model: Path) -> str:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"sklearn": {"storageUri": model.as_uri()}}},
    }
    graph = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "traced"},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "iris"}]}}},
    }
    return "---\n".join(json.dumps(doc) + "\n" for doc in (isvc, graph))


@pytest.fixture(scope="module")
def wharf(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[WharfDaemon]:
    root = tmp_path_factory.mktemp("traced-up")
    daemon = WharfDaemon(
        root,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        # export within a fraction of a second instead of the default 5 s
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    (root / "all.yaml").write_text(manifests(make_iris(root / "iris")))
    try:
        daemon.run("up", "-f", str(root / "all.yaml"))
        yield daemon
    finally:
        daemon.down()


def _one(spans: list[Span], service: str, kind: int, **attributes: Any) -> Span:
    found = [
        s
        for s in spans
        if s.service == service
        and s.kind == kind
        and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{service} {kind} {attributes}: {found} of {spans}"
    return found[0]


def test_one_trace_covers_ingress_router_and_model_server(
    wharf: WharfDaemon, receiver: OtlpReceiver
) -> None:
    traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
    with httpx.Client(base_url=f"http://127.0.0.1:{wharf.port}", timeout=60) as client:
        answer = client.post(
            "/", json=BODY, headers={"host": GRAPH_HOST, "traceparent": traceparent}
        )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 1

    server, client_kind = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_CLIENT
    wait_until(lambda: len(receiver.in_trace(TRACE_ID)) >= 5, "the five spans of the request", 60)
    spans = receiver.in_trace(TRACE_ID)
    # the ingress, for the graph: child of the caller's span
    ingress = _one(spans, "wharf-ingress", server, **{"wharf.revision": "traced"})
    assert ingress.parent_id == CALLER_SPAN
    # the answer names the span of the hop the client called
    assert answer.headers.get_list("traceparent") == [f"00-{TRACE_ID}-{ingress.span_id}-01"]
    assert ingress.attributes["http.response.status_code"] == 200
    # the router: its request is the ingress's child, its step call the request's
    router = _one(spans, "wharf-router", server)
    assert router.parent_id == ingress.span_id
    step = _one(spans, "wharf-router", client_kind)
    assert step.parent_id == router.span_id
    assert step.attributes["url.full"].endswith("/serving/default/iris/v1/models/iris:predict")
    # the step goes through the ingress again, to the predictor's revision
    [step_ingress] = [s for s in spans if s.service == "wharf-ingress" and s is not ingress]
    assert step_ingress.parent_id == step.span_id
    assert str(step_ingress.attributes["wharf.revision"]).startswith("iris-predictor")
    # the model server: child of the ingress hop that reached it, with the model and the route
    model = _one(spans, "wharf-model-server", server)
    assert model.parent_id == step_ingress.span_id
    assert model.attributes["wharf.model"] == "iris"
    assert model.attributes["http.route"] == "/v1/models/{model_name}:predict"
    assert model.attributes["http.response.status_code"] == 200
    assert len(spans) == 5, spans


def test_a_request_without_traceparent_starts_a_trace_and_probes_have_none(
    wharf: WharfDaemon, receiver: OtlpReceiver
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{wharf.port}", timeout=60) as client:
        answer = client.post(
            "/v1/models/iris:predict", json=BODY, headers={"host": "iris-default.example.com"}
        )
    assert answer.status_code == 200, answer.text

    def direct() -> list[Span]:
        with receiver.lock:
            ingress = [
                s
                for s in receiver.spans
                if s.service == "wharf-ingress"
                and s.parent_id == ""
                and s.attributes.get("url.path") == "/v1/models/iris:predict"
            ]
        return ingress

    wait_until(lambda: len(direct()) == 1, "the ingress span of a new trace", 60)
    [root] = direct()
    wait_until(
        lambda: any(s.service == "wharf-model-server" for s in receiver.in_trace(root.trace_id)),
        "the model server's span in the same trace",
        60,
    )
    [model] = [s for s in receiver.in_trace(root.trace_id) if s.span_id != root.span_id]
    assert model.parent_id == root.span_id
    # readiness probes (GET) of the model server are not traced
    with receiver.lock:
        assert not any(
            s.service == "wharf-model-server" and "/health" in str(s.attributes.get("url.path"))
            for s in receiver.spans
        )
