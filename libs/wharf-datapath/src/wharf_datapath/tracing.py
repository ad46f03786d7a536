"""OpenTelemetry tracing for the data path, configured from the standard `OTEL_*` environment.

Off unless the environment asks for it (`settings_from_env` returns None): then nothing of
OpenTelemetry is imported and a service's request path is the untraced one. A service asks
`setup(default_service_name)` once at start; when it gets a `Tracing`, it wraps its ASGI app with
`traced_app` (a server span per request, the W3C `traceparent` taken from the incoming headers
and replaced in them by the span's own, so a proxy passes it on; the answer carries the span's
too) and opens a `client_span` around each upstream call it makes itself, whose context `inject`
writes into that call's headers. A grpc.aio server installs `grpc_server_interceptor` (a server
span per call, named and described by OpenTelemetry's RPC conventions, the `traceparent` taken
from the call's metadata). A bad value stops the service at start, naming the variable.

The environment (the OpenTelemetry SDK's names, as KServe's `tracing` sets them for vLLM):

- `OTEL_TRACES_EXPORTER`: `otlp` or `console` (`none` or unset: off, unless an OTLP endpoint is
  set, which alone means `otlp`); `OTEL_SDK_DISABLED=true` turns it off whatever else is set.
- `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (and the exporter's other
  `OTEL_EXPORTER_OTLP_*` settings: headers, timeout, compression, certificates).
- `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `grpc` (the default, as KServe's model server and
  vLLM have it: the same `OTEL_*` that KServe's `tracing` gives an engine, a collector's port
  4317, works here) or `http/protobuf`.
- `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`: `parentbased_always_on` (default),
  `always_on`, `always_off`, `traceidratio`, `parentbased_always_off`,
  `parentbased_traceidratio`, with the ratio in [0, 1].
- `OTEL_SERVICE_NAME` (default: the service's own name) and `OTEL_RESOURCE_ATTRIBUTES`.
- `OTEL_PROPAGATORS` picks the propagators (default W3C trace context and baggage).

Spans are exported in batches from a background thread (`OTEL_BSP_*` tune it); the SDK flushes
them when the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wharf_datapath.relay import passes_body

if TYPE_CHECKING:
    import grpc.aio
    from opentelemetry.propagators.textmap import Getter, TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "SAMPLERS",
    "RequestInfo",
    "Tracing",
    "TracingConfigError",
    "TracingSettings",
    "grpc_request_info",
    "grpc_server_interceptor",
    "http_request_info",
    "settings_from_env",
    "setup",
    "traced_app",
]

log = logging.getLogger("wharf.tracing")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# loose: services type their own apps' scope and channels in their own ways
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)
EXPORTERS = ("otlp", "console")
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "grpc"
DEFAULT_SAMPLER = "parentbased_always_on"
MAX_VALUE_CHARS = 1024

# attribute names (OpenTelemetry's HTTP semantic conventions, and Wharf's own under `wharf.`)
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
MODEL = "wharf.model"
LLM_MODEL = "gen_ai.request.model"
POD = "wharf.pod"
REVISION = "wharf.revision"
ROLE = "wharf.role"
# OpenTelemetry's RPC semantic conventions, for gRPC servers
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
# The gRPC codes that mark a server span failed, the conventions' list for servers: UNKNOWN,
# DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. The others, NOT_FOUND or
# INVALID_ARGUMENT among them, are the client's error, as a 4xx is over HTTP.
GRPC_SERVER_ERROR_CODES = frozenset({2, 4, 12, 13, 14, 15})
GRPC_OK, GRPC_CANCELLED, GRPC_UNKNOWN = 0, 1, 2


class TracingConfigError(ValueError):
    """An `OTEL_*` variable holds a value this process cannot use (the message names it)."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What the environment asks for; plain values, so deciding needs no OpenTelemetry."""

    service_name: str
    exporter: str  # one of EXPORTERS
    protocol: str  # one of PROTOCOLS (for the otlp exporter)
    sampler: str  # one of SAMPLERS
    sampler_arg: float | None  # the ratio of the *traceidratio samplers


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if len(value) > MAX_VALUE_CHARS:
        raise TracingConfigError(f"{name} is longer than {MAX_VALUE_CHARS} characters")
    return value


def settings_from_env(env: Mapping[str, str], default_service_name: str) -> TracingSettings | None:
    """The tracing `env` asks for, or None when it asks for none (the default). Pure.

    Empty values count as unset: KServe writes every `tracing` field, given or not."""
    if _get(env, "OTEL_SDK_DISABLED").lower() == "true":
        return None
    exporters = [e.strip() for e in _get(env, "OTEL_TRACES_EXPORTER").lower().split(",")]
    exporters = [e for e in exporters if e]
    endpoint = _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _get(
        env, "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if "none" in exporters:
        return None
    if not exporters:
        if not endpoint:
            return None
        exporters = ["otlp"]
    if len(exporters) > 1 or exporters[0] not in EXPORTERS:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(exporters)!r} is not supported: "
            f"give one of {', '.join(EXPORTERS)} or none"
        )
    protocol_var = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    protocol = _get(env, protocol_var).lower() or DEFAULT_PROTOCOL
    if protocol not in PROTOCOLS:
        raise TracingConfigError(
            f"{protocol_var}={protocol!r} is not supported: give {' or '.join(PROTOCOLS)}"
        )
    sampler = _get(env, "OTEL_TRACES_SAMPLER").lower() or DEFAULT_SAMPLER
    if sampler not in SAMPLERS:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER={sampler!r} is not supported: give one of "
            + ", ".join(sorted(SAMPLERS))
        )
    return TracingSettings(
        service_name=_get(env, "OTEL_SERVICE_NAME") or default_service_name,
        exporter=exporters[0],
        protocol=protocol,
        sampler=sampler,
        sampler_arg=_sampler_arg(sampler, _get(env, "OTEL_TRACES_SAMPLER_ARG")),
    )


def _sampler_arg(sampler: str, raw: str) -> float | None:
    if not sampler.endswith("traceidratio"):
        return None  # the SDK ignores the argument of the other samplers too
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number (a ratio in [0, 1])"
        ) from None
    if not 0.0 <= ratio <= 1.0:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio in [0, 1]")
    return ratio


def make_sampler(settings: TracingSettings) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    ratio = settings.sampler_arg if settings.sampler_arg is not None else 1.0
    root: Sampler = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[settings.sampler.removeprefix("parentbased_")]
    if settings.sampler.startswith("parentbased_"):
        return sampling.ParentBased(root)
    return root


def make_provider(settings: TracingSettings) -> TracerProvider:
    """A TracerProvider that exports in batches as `settings` say; the exporter reads the rest
    of its `OTEL_EXPORTER_OTLP_*` settings (endpoint, headers, timeout) from the environment."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    elif settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        exporter = GrpcExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter()
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; the service name is decided here
    resource = Resource.create({SERVICE_NAME: settings.service_name})
    provider = TracerProvider(resource=resource, sampler=make_sampler(settings))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup(default_service_name: str) -> Tracing | None:
    """This process's tracing, from its environment (the exporter and the resource read their
    own `OTEL_*` there too), or None when it asks for none: then nothing is imported.

    Raises TracingConfigError, naming the variable, for a value that cannot be used."""
    import os

    settings = settings_from_env(os.environ, default_service_name)
    if settings is None:
        return None
    from opentelemetry.propagate import get_global_textmap

    provider = make_provider(settings)
    log.info(
        "tracing on: service %s, exporter %s (%s), sampler %s",
        settings.service_name,
        settings.exporter,
        settings.protocol,
        settings.sampler,
    )
    return Tracing(provider, get_global_textmap())


def _header_getter() -> Getter[Sequence[tuple[bytes, bytes]]]:
    """The propagators' view of ASGI's (name, value) byte pairs (names are lower case)."""
    from opentelemetry.propagators.textmap import Getter

    class HeaderGetter(Getter[Sequence[tuple[bytes, bytes]]]):
        def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
            name = key.lower().encode("latin-1")
            values = [v.decode("latin-1") for k, v in carrier if k == name]
            return values or None

        def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
            return [k.decode("latin-1") for k, _ in carrier]

    return HeaderGetter()


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """How one request is traced: its span's name and first attributes."""

    name: str
    attributes: Mapping[str, str | int]


class Tracing:
    """One process's tracer and propagator; only made when tracing is on."""

    def __init__(self, provider: TracerProvider, propagator: TextMapPropagator) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("wharf")
        self.propagator = propagator
        self._getter = _header_getter()
        self._fields = frozenset(f.lower().encode("latin-1") for f in propagator.fields)

    def shutdown(self) -> None:
        """Export what is pending and stop (the SDK also does this at exit)."""
        self.provider.shutdown()

    @contextlib.contextmanager
    def server_span(
        self, headers: Sequence[tuple[bytes, bytes]], info: RequestInfo
    ) -> Iterator[Span]:
        """A server span, current while the request runs, child of the caller's `traceparent`."""
        from opentelemetry import context
        from opentelemetry.trace import SpanKind

        parent = self.propagator.extract(headers, getter=self._getter)
        token = context.attach(parent)  # keeps the caller's baggage beside the span
        try:
            with self.tracer.start_as_current_span(
                info.name, kind=SpanKind.SERVER, attributes=dict(info.attributes)
            ) as span:
                yield span
        finally:
            context.detach(token)

    @contextlib.contextmanager
    def client_span(self, name: str, attributes: Mapping[str, str | int]) -> Iterator[Span]:
        """A client span for one upstream call, child of the current span."""
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=dict(attributes)
        ) as span:
            yield span

    def inject(self, headers: Sequence[tuple[bytes, bytes]], span: Span | None = None) -> Headers:
        """`headers` with the context of `span` (default: the current span) in place of any
        the caller sent."""
        out = [(k, v) for k, v in headers if k.lower() not in self._fields]
        carried = self.context_headers(span)
        out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carried]
        return out

    def inject_text(self, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """`inject` for headers held as text."""
        out = [(k, v) for k, v in headers if k.lower().encode("latin-1") not in self._fields]
        return out + self.context_headers()

    def context_headers(self, span: Span | None = None) -> list[tuple[str, str]]:
        """The context of `span` (default: the current span) as headers (`traceparent`, ...),
        by the propagators."""
        carrier: dict[str, str] = {}
        if span is None:
            self.propagator.inject(carrier)
        else:
            from opentelemetry import trace

            self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return list(carrier.items())

    def annotate(self, attributes: Mapping[str, str | int]) -> None:
        """Adds `attributes` to the current span (the request's, outside a client span)."""
        from opentelemetry import trace

        trace.get_current_span().set_attributes(dict(attributes))


def record_status(span: Span, status: int) -> None:
    """The response status on `span`; a 5xx marks it failed (a 4xx is the client's error)."""
    from opentelemetry.trace import StatusCode

    span.set_attribute(HTTP_STATUS, status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


def traced_app(
    app: ASGIApp,
    tracing: Tracing,
    describe: Callable[[Scope], RequestInfo | None],
    response_header: tuple[bytes, str] | None = None,
) -> ASGIApp:
    """`app` with a server span around each HTTP request `describe` names (None: untraced).

    The request's trace-context headers are replaced by the span's, so whatever the app
    forwards carries it; the response carries the span's too (as KServe's model server answers
    with its `traceparent`), so a client can find its trace, and of a chain of hops the one the
    client called answers with its own. `response_header` (name, attribute) copies a response
    header onto the span. Only used when tracing is on: the untraced app is served as is."""

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        info = describe(scope) if scope["type"] == "http" else None
        if info is None:
            await app(scope, receive, send)
            return
        with tracing.server_span(scope["headers"], info) as span:
            scope["headers"] = tracing.inject(scope["headers"])

            async def send_recording(message: Message) -> None:
                if message["type"] == "http.response.start":
                    record_status(span, message["status"])
                    headers = message.get("headers", ())
                    if response_header is not None:
                        name, attribute = response_header
                        for key, value in headers:
                            if key == name:
                                span.set_attribute(attribute, value.decode("latin-1"))
                    message = {**message, "headers": tracing.inject(headers, span)}
                await send(message)

            # it changes only the head: a body may be written below it (wharf_datapath.relay)
            await app(scope, receive, passes_body(send_recording, send))

    return traced


def http_request_info(scope: Scope, name: str, route: str | None = None) -> RequestInfo:
    """The usual server-span description: `name`, the method, the path and the route."""
    attributes: dict[str, str | int] = {HTTP_METHOD: scope["method"], URL_PATH: scope["path"]}
    if route is not None:
        attributes[HTTP_ROUTE] = route
    return RequestInfo(name, attributes)


# -- gRPC servers -------------------------------------------------------------------------------


def grpc_request_info(method: str) -> RequestInfo | None:
    """The server span of a gRPC call to `method` (`/package.Service/Method`, as grpc names it):
    `package.Service/Method` with `rpc.system`, `rpc.service` and `rpc.method`, as
    OpenTelemetry's RPC conventions have it; None for a name that is not of that form."""
    service, sep, name = method.removeprefix("/").partition("/")
    if not sep or not service or not name or "/" in name:
        return None
    return RequestInfo(
        f"{service}/{name}", {RPC_SYSTEM: "grpc", RPC_SERVICE: service, RPC_METHOD: name}
    )


def record_grpc_status(span: Span, code: int) -> None:
    """The call's gRPC status code on `span`; a server-side failure (UNKNOWN, INTERNAL,
    UNAVAILABLE, ...) marks it failed, a client's error (NOT_FOUND, INVALID_ARGUMENT) does not."""
    from opentelemetry.trace import StatusCode

    span.set_attribute(RPC_GRPC_STATUS_CODE, code)
    if code in GRPC_SERVER_ERROR_CODES:
        span.set_status(StatusCode.ERROR)


def grpc_server_interceptor(
    tracing: Tracing, describe: Callable[[str], RequestInfo | None] = grpc_request_info
) -> grpc.aio.ServerInterceptor:
    """A grpc.aio server interceptor: a server span around
    each unary call that `describe` names from its method (None: untraced), child of the W3C
    `traceparent` in the call's metadata. The answer's trailing metadata carries the span's own
    `traceparent`, as an HTTP answer's headers do. The handler can add attributes to the span,
    which is current while it runs (`Tracing.annotate`). Only installed when tracing is on.

    Not opentelemetry-instrumentation-grpc's `aio_server_interceptor`, although its version
    matches the SDK's: it names spans `/package.Service/Method` (not the conventions'
    `package.Service/Method`), adds the deprecated `net.peer.*` attributes, and records
    `rpc.grpc.status_code` 0 when a handler raises (the client gets UNKNOWN); what is needed here
    is these few lines over `Tracing.server_span`."""
    import grpc
    import grpc.aio

    # wrapped handlers, per method: only registered methods get one (an unknown method's
    # handler is None), so the map is as small as the service
    wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]]
    wrapped = {}

    def traced(
        behavior: Callable[..., Any], info: RequestInfo
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            # metadata values are text except for `-bin` keys, which carry no trace context
            headers = [
                (key.encode("latin-1"), value.encode("latin-1"))
                for key, value in context.invocation_metadata() or ()
                if isinstance(value, str)
            ]
            failure: BaseException | None = None
            with tracing.server_span(headers, info) as span:
                context.set_trailing_metadata(tuple(tracing.context_headers(span)))
                try:
                    reply = await behavior(request, context)
                except BaseException as exc:  # re-raised below, once the span is complete
                    failure = exc
                record_grpc_status(span, _grpc_code(context, failure))
                if failure is not None and not isinstance(
                    failure, (grpc.aio.AbortError, asyncio.CancelledError)
                ):
                    span.record_exception(failure)
            if failure is not None:
                # outside the span: its context manager would mark every abort failed
                raise failure
            return reply

        return call

    def _grpc_code(
        context: grpc.aio.ServicerContext[Any, Any], failure: BaseException | None
    ) -> int:
        code = context.code()  # what the handler set or aborted with
        if isinstance(code, grpc.StatusCode):
            return int(code.value[0])
        if failure is None:
            return GRPC_OK
        if isinstance(failure, asyncio.CancelledError):
            return GRPC_CANCELLED  # the client went away
        return GRPC_UNKNOWN  # what grpc answers for an exception the handler let through

    class Interceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(
            self,
            continuation: Callable[
                [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
            ],
            handler_call_details: grpc.HandlerCallDetails,
        ) -> grpc.RpcMethodHandler[Any, Any] | None:
            handler = await continuation(handler_call_details)
            method = handler_call_details.method
            if handler is None or handler.request_streaming or handler.response_streaming:
                return handler  # streaming calls are not traced (no service here has any)
            known = wrapped.get(method)
            if known is not None and known[0] is handler:
                return known[1]
            info = describe(method)
            if info is None or handler.unary_unary is None:
                return handler
            traced_handler = grpc.unary_unary_rpc_method_handler(
                traced(handler.unary_unary, info),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            wrapped[method] = (handler, traced_handler)
            return traced_handler

    return Interceptor()
