"""What every REST inference route shares: bytes in, (status, headers, bytes) out.

``rest/v1.py`` and ``rest/v2.py`` say how their protocol decodes a body and encodes an answer;
:func:`run_inference` does the rest (the model lookup, the payload log, the data plane call,
metrics and errors). Both the raw ASGI fast path and the FastAPI routes call the protocol
modules, so the two never disagree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from wharf_model_server import metrics
from wharf_model_server.dataplane import DataPlane, as_wharf_error
from wharf_model_server.model import InferenceVerb
from wharf_model_server.utils import generate_uuid
from wharf_protocol.errors import WharfError
from wharf_protocol.infer_types import InferResponse
from wharf_protocol.rest import INFERENCE_HEADER_CONTENT_LENGTH, encode_infer_response

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

# Bodies at least this large are decoded (and their answers encoded) in a worker thread, so
# the event loop keeps answering health checks and small requests meanwhile. Below it, the hop
# to a thread costs more than the decode.
OFFLOAD_BYTES = 256 * 1024
# Requests with bodies at least this large are processed (decoded, run, encoded) a few at a
# time (DataPlane.large_payloads): decoded, a JSON body costs several times its size, so the
# others wait holding only their bytes. Smaller requests never wait for this.
LARGE_BYTES = 16 * 1024 * 1024


@dataclass
class HttpResult:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error_result(error: WharfError) -> HttpResult:
    return HttpResult(error.http_status, orjson.dumps(error.body()))


def json_result(obj: Any, status: int = 200) -> HttpResult:
    return HttpResult(status, orjson.dumps(obj, option=_ORJSON_OPTIONS))


def encode_result(response: Any, response_headers: dict[str, str]) -> HttpResult:
    if isinstance(response, InferResponse):
        body, json_length = encode_infer_response(response)
        if json_length is None:
            return HttpResult(200, body, JSON, response_headers)
        headers = {**response_headers, INFERENCE_HEADER_CONTENT_LENGTH: str(json_length)}
        return HttpResult(200, body, OCTET_STREAM, headers)
    if isinstance(response, bytes):
        return HttpResult(200, response, OCTET_STREAM, response_headers)
    if isinstance(response, str):
        return HttpResult(200, response.encode(), "text/plain; charset=utf-8", response_headers)
    try:
        body = orjson.dumps(response, option=_ORJSON_OPTIONS)
    except TypeError as exc:
        raise TypeError(f"the model returned a value that is not JSON: {exc}") from exc
    return HttpResult(200, body, JSON, response_headers)


def _event_id(headers: dict[str, str]) -> str:
    return headers.get("ce-id") or headers.get("x-request-id") or generate_uuid()


# (body, headers) -> (payload for the model, what the encoder needs to know about the request)
Decode = Callable[[bytes | bytearray, dict[str, str]], tuple[Any, Any]]
# (response, response headers, the decoder's context, request headers) -> the answer
Encode = Callable[[Any, dict[str, str], Any, dict[str, str]], HttpResult]


def _default_encode(
    response: Any, response_headers: dict[str, str], _context: Any, _headers: dict[str, str]
) -> HttpResult:
    return encode_result(response, response_headers)


def run_inference(
    dataplane: DataPlane,
    protocol: str,
    model_name: str,
    version: str | None,
    body: bytes | bytearray,
    headers: dict[str, str],
    decode: Decode,
    verb: InferenceVerb = InferenceVerb.PREDICT,
    encode: Encode = _default_encode,
) -> Coroutine[Any, Any, HttpResult]:
    """The request's processing, as a coroutine that alone holds the body (and lets go of it
    once decoded): callers pass it on without awaiting it in a frame of their own."""
    slots = dataplane.large_payloads if len(body) >= LARGE_BYTES else None
    return _process(
        dataplane, protocol, model_name, version, body, headers, decode, verb, encode, slots
    )


async def _process(
    dataplane: DataPlane,
    protocol: str,
    model_name: str,
    version: str | None,
    body: bytes | bytearray,
    headers: dict[str, str],
    decode: Decode,
    verb: InferenceVerb,
    encode: Encode,
    slots: asyncio.Semaphore | None,
) -> HttpResult:
    start = time.perf_counter()
    in_flight = dataplane.in_flight  # counted for the batcher (see batching.should_send)
    if in_flight is not None:
        in_flight.enter()
    if slots is not None:
        await slots.acquire()
    observed = False
    result: HttpResult
    offload = len(body) >= OFFLOAD_BYTES
    try:
        model = dataplane.get_ready_model(model_name, version)
        observed = True
        loop = asyncio.get_running_loop()
        if offload:
            payload, context = await loop.run_in_executor(None, decode, body, headers)
        else:
            payload, context = decode(body, headers)
        plog = dataplane.payload_logger
        event_id = _event_id(headers) if plog is not None else ""
        if plog is not None:
            plog.log_request(
                event_id, model_name, protocol, bytes(body), headers.get("content-type", JSON)
            )
        del body  # the decoded payload is all the model needs; let a large body go
        # errors map below, as DataPlane.infer would map them
        response, response_headers = await dataplane.start_inference(model, payload, headers, verb)
        del payload
        if offload:
            result = await loop.run_in_executor(
                None, encode, response, response_headers, context, headers
            )
        else:
            result = encode(response, response_headers, context, headers)
        if plog is not None:
            plog.log_response(event_id, model_name, protocol, result.body, result.content_type)
    except WharfError as exc:
        result = error_result(exc)
    except Exception as exc:
        result = error_result(as_wharf_error(exc))
    finally:
        if slots is not None:
            slots.release()
        if in_flight is not None:
            in_flight.leave()
    if observed:
        metrics.observe_inference(model_name, protocol, result.status, time.perf_counter() - start)
    return result
