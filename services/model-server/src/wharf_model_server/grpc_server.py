"""The gRPC transport: ``inference.GRPCInferenceService`` over the data plane (grpc.aio)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import numpy as np
import orjson
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from wharf_model_server import metrics
from wharf_model_server.dataplane import DataPlane, as_wharf_error
from wharf_model_server.utils import generate_uuid, get_predict_response
from wharf_protocol.errors import InferenceError, InvalidInput, WharfError
from wharf_protocol.grpc import SERVICE_NAME, pb, pb_grpc
from wharf_protocol.grpc_codec import request_from_grpc, response_to_grpc
from wharf_protocol.infer_types import InferRequest, InferResponse
from wharf_protocol.rest import decode_infer_response

if TYPE_CHECKING:
    from wharf_datapath.tracing import Tracing

PROTOCOL = "grpc-v2"
# the request field that names the model, per rpc (the span's `wharf.model` when tracing)
MODEL_FIELDS = {
    "ModelReady": "name",
    "ModelMetadata": "name",
    "ModelInfer": "model_name",
    "RepositoryModelLoad": "model_name",
    "RepositoryModelUnload": "model_name",
}


def to_infer_response(response: Any, request: InferRequest) -> InferResponse:
    """Custom models may answer a gRPC request with a V2 or V1 dict; turn it into a response."""
    if isinstance(response, InferResponse):
        return response
    if isinstance(response, dict) and "outputs" in response:
        body = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        return decode_infer_response(body, None)
    if isinstance(response, dict) and "predictions" in response:
        converted = get_predict_response(request, np.asarray(response["predictions"]), "")
        assert isinstance(converted, InferResponse)
        converted.model_name = request.model_name
        return converted
    raise InferenceError(
        f"model {request.model_name!r} returned {type(response).__name__}, not an InferResponse"
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: WharfError) -> NoReturn:
    await context.abort(error.grpc_status, error.message)
    raise AssertionError("unreachable")  # abort always raises


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.dp.live)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=await self.dp.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ready = await self.dp.model_ready(request.name, request.version or None)
        except WharfError as exc:
            await _abort(context, exc)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        meta = self.dp.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            meta = self.dp.model_metadata(request.name, request.version or None)
        except WharfError as exc:
            await _abort(context, exc)

        def tensors(items: list[dict[str, Any]]) -> list[Any]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(
                    name=t["name"], datatype=str(t["datatype"]), shape=list(t["shape"])
                )
                for t in items
            ]

        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta.get("versions", []),
            platform=meta["platform"],
            inputs=tensors(meta["inputs"]),
            outputs=tensors(meta["outputs"]),
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        start = time.perf_counter()
        name = request.model_name
        observed = False
        error: WharfError | None = None
        reply: Any = None
        in_flight = self.dp.in_flight  # counted for the batcher (see batching.should_send)
        if in_flight is not None:
            in_flight.enter()
        try:
            model = self.dp.get_ready_model(name, request.model_version or None)
            observed = True
            infer_request = request_from_grpc(request)
            headers = {m.key: m.value for m in context.invocation_metadata() or ()}
            plog = self.dp.payload_logger
            event_id = ""
            if plog is not None:
                event_id = headers.get("x-request-id") or request.id or generate_uuid()
                plog.log_request(
                    event_id, name, PROTOCOL, request.SerializeToString(), "application/grpc"
                )
            response, _ = await self.dp.infer(model, infer_request, headers)
            reply = response_to_grpc(to_infer_response(response, infer_request))
            if plog is not None:
                plog.log_response(
                    event_id, name, PROTOCOL, reply.SerializeToString(), "application/grpc"
                )
        except WharfError as exc:
            error = exc
        except Exception as exc:
            error = as_wharf_error(exc)
        finally:
            if in_flight is not None:
                in_flight.leave()
        if observed:
            status = 200 if error is None else error.http_status
            metrics.observe_inference(name, PROTOCOL, status, time.perf_counter() - start)
        if error is not None:
            await _abort(context, error)
        return reply

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        try:
            await self.dp.load(request.model_name)
        except WharfError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        try:
            await self.dp.unload(request.model_name)
        except WharfError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


Handler = Callable[[Any, Any], Awaitable[Any]]


def _parsing(method: Handler, request_type: Any) -> Handler:
    """``method`` called with the message parsed from raw bytes. grpc answers UNKNOWN when its
    own deserializer fails; a request that is not the rpc's message is INVALID_ARGUMENT."""

    async def handle(raw: bytes, context: Any) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            await _abort(
                context, InvalidInput(f"the request is not a {request_type.DESCRIPTOR.name}: {exc}")
            )
        return await method(request, context)

    return handle


def _parsing_traced(method: Handler, request_type: Any, field: str, tracing: Tracing) -> Handler:
    """`_parsing` that also names the model on the call's span (tracing on only: the untraced
    server keeps `_parsing`, with no per-call check)."""
    from wharf_datapath.tracing import MODEL

    async def handle(raw: bytes, context: Any) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            await _abort(
                context, InvalidInput(f"the request is not a {request_type.DESCRIPTOR.name}: {exc}")
            )
        name = getattr(request, field)
        if name:
            tracing.annotate({MODEL: name})
        return await method(request, context)

    return handle


def add_servicer(
    servicer: InferenceServicer, server: grpc.aio.Server, tracing: Tracing | None = None
) -> None:
    """Registers every rpc of ``inference.GRPCInferenceService`` (what the generated
    ``add_GRPCInferenceServiceServicer_to_server`` does, with requests parsed by us); with
    `tracing`, the calls that name a model put its name on their span."""
    service = pb.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        behavior = getattr(servicer, method.name)
        field = MODEL_FIELDS.get(method.name)
        parsing = (
            _parsing(behavior, request_type)
            if tracing is None or field is None
            else _parsing_traced(behavior, request_type, field, tracing)
        )
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            parsing,
            request_deserializer=None,
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def build_grpc_server(
    dataplane: DataPlane,
    port: int,
    max_send_message_length: int,
    max_receive_message_length: int,
    host: str = "[::]",
    reuse_port: bool = False,
    tracing: Tracing | None = None,
) -> grpc.aio.Server:
    """The gRPC server; with `tracing` (OTEL_* asked for it), a server span per call
    (`wharf_datapath.tracing.grpc_server_interceptor`). Without, no interceptor at all: the
    calls take the untraced path, with nothing checked per call."""
    interceptors = None
    if tracing is not None:
        from wharf_datapath.tracing import grpc_server_interceptor

        interceptors = [grpc_server_interceptor(tracing)]
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", max_send_message_length),
            ("grpc.max_receive_message_length", max_receive_message_length),
            # A port clash must fail loudly rather than silently share the port; the workers
            # of one server (--workers) share it on purpose.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    servicer = InferenceServicer(dataplane)
    add_servicer(servicer, server, tracing)
    server.add_insecure_port(f"{host}:{port}")
    return server
