"""Forwards a transformer's (or explainer's) request to its predictor over REST v1/v2 or gRPC v2.

Only the request id, trace and authorization headers travel on; everything else is local to the
hop (content length, host, encoding).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import orjson

from wharf_model_server.predictor_config import PredictorConfig, PredictorProtocol
from wharf_protocol.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Unsupported,
    WharfError,
)
from wharf_protocol.grpc import pb, pb_grpc
from wharf_protocol.grpc_codec import request_to_grpc, response_from_grpc
from wharf_protocol.infer_types import InferRequest, InferResponse
from wharf_protocol.rest import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    decode_infer_response,
    encode_infer_request,
)

FORWARDED_HEADERS = frozenset(
    {
        "x-request-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "b3",
        "traceparent",
        "tracestate",
        "authorization",
    }
)


def forwarded_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}


def _error_from_response(response: httpx.Response, model_name: str) -> WharfError:
    """The predictor's error, with its status kept (a 400 stays a 400 for the client)."""
    try:
        message = str(orjson.loads(response.content).get("error", response.text))
    except (orjson.JSONDecodeError, AttributeError):
        message = response.text
    status = response.status_code
    if status == 404:
        return ModelNotFound(model_name)
    if status == 503:
        return ModelNotReady(model_name)
    detail = f"predictor answered {status}: {message}"
    if status == 400:
        return InvalidInput(detail)
    if status == 501:
        return Unsupported(detail)
    return InferenceError(detail)


class PredictorClient:
    def __init__(self, config: PredictorConfig) -> None:
        self.config = config
        self._http: httpx.AsyncClient | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.config.predictor_base_url,
                timeout=self.config.predictor_request_timeout_seconds,
                transport=httpx.AsyncHTTPTransport(retries=self.config.predictor_request_retries),
            )
        return self._http

    def _grpc_stub(self) -> Any:
        if self._stub is None:
            host = self.config.predictor_host or ""
            host = host.split("://", 1)[-1]
            if self.config.predictor_use_ssl:
                self._channel = grpc.aio.secure_channel(host, grpc.ssl_channel_credentials())
            else:
                self._channel = grpc.aio.insecure_channel(host)
            self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def _post(
        self, model_name: str, path: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        response = await self._http_client().post(path, content=content, headers=headers)
        if response.status_code != 200:
            raise _error_from_response(response, model_name)
        return response

    async def predict(self, model_name: str, payload: Any, headers: dict[str, str]) -> Any:
        protocol = str(self.config.predictor_protocol)
        outgoing = forwarded_headers(headers)
        if protocol == PredictorProtocol.GRPC_V2:
            return await self._predict_grpc(model_name, payload, outgoing)
        if protocol == PredictorProtocol.REST_V2:
            return await self._predict_v2(model_name, payload, outgoing)
        if protocol == PredictorProtocol.REST_V1:
            outgoing["content-type"] = "application/json"
            body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
            response = await self._post(
                model_name, f"/v1/models/{model_name}:predict", body, outgoing
            )
            return orjson.loads(response.content)
        raise InvalidInput(f"unsupported predictor protocol {protocol!r}")

    async def _predict_v2(self, model_name: str, payload: Any, headers: dict[str, str]) -> Any:
        path = f"/v2/models/{model_name}/infer"
        if isinstance(payload, InferRequest):
            body, json_length = encode_infer_request(payload, binary=False)
            headers["content-type"] = "application/json"
            if json_length is not None:
                headers[INFERENCE_HEADER_CONTENT_LENGTH] = str(json_length)
                headers["content-type"] = "application/octet-stream"
        else:
            body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
            headers["content-type"] = "application/json"
        response = await self._post(model_name, path, body, headers)
        length = response.headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
        return decode_infer_response(response.content, int(length) if length else None)

    async def _predict_grpc(
        self, model_name: str, payload: Any, headers: dict[str, str]
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("a grpc-v2 predictor needs an InferRequest from preprocess")
        payload.model_name = model_name
        try:
            reply = await self._grpc_stub().ModelInfer(
                request_to_grpc(payload),
                metadata=tuple(headers.items()),
                timeout=self.config.predictor_request_timeout_seconds,
            )
        except grpc.aio.AioRpcError as exc:
            raise InferenceError(f"predictor answered {exc.code().name}: {exc.details()}") from exc
        return response_from_grpc(reply)

    async def model_ready(self, model_name: str) -> bool:
        """Whether the predictor serves ``model_name``; any failure counts as not ready."""
        protocol = str(self.config.predictor_protocol)
        try:
            if protocol == PredictorProtocol.GRPC_V2:
                reply = await self._grpc_stub().ModelReady(
                    pb.ModelReadyRequest(name=model_name), timeout=5
                )
                return bool(reply.ready)
            path = (
                f"/v1/models/{model_name}"
                if protocol == PredictorProtocol.REST_V1
                else f"/v2/models/{model_name}/ready"
            )
            response = await self._http_client().get(path, timeout=5)
            return response.status_code == 200
        except (grpc.aio.AioRpcError, httpx.HTTPError):
            return False

    async def explain(
        self, explainer_host: str, model_name: str, payload: Any, headers: dict[str, str]
    ) -> Any:
        base = explainer_host if "://" in explainer_host else f"http://{explainer_host}"
        outgoing = {**forwarded_headers(headers), "content-type": "application/json"}
        response = await self._http_client().post(
            f"{base.rstrip('/')}/v1/models/{model_name}:explain",
            content=orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
            headers=outgoing,
        )
        if response.status_code != 200:
            raise _error_from_response(response, model_name)
        return orjson.loads(response.content)

    async def close(self) -> None:
        closers = []
        if self._http is not None:
            closers.append(self._http.aclose())
        if self._channel is not None:
            closers.append(self._channel.close())
        await asyncio.gather(*closers, return_exceptions=True)
