"""The benchmark's floor: the least a Python server on this stack can do per request.

A raw ASGI app on uvicorn (uvloop + httptools, no access log) that reads the request body and
answers every POST with a constant V1 or V2 response, and a bare `grpc.aio` server whose
`inference.GRPCInferenceService/ModelInfer` returns a constant, pre-serialized response without
parsing the request. Both run on one event loop in one process, like the servers they bound.

Run: `python bench/floor_server.py --http_port P --grpc_port G`.
"""

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import uvicorn
import uvloop

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

V1_BODY = b'{"predictions":[1,1]}'
V2_BODY = (
    b'{"model_name":"iris","id":"0","outputs":[{"name":"output-0","shape":[2],'
    b'"datatype":"INT64","data":[1,1]}]}'
)
READY_BODY = b'{"ready":true}'


def _grpc_infer_response() -> bytes:
    """ModelInferResponse{model_name: "iris", outputs: [output-0 INT64 [2] = [1, 1]]}, encoded
    by hand (protobuf wire format) so the floor needs no generated stubs."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    shape = field(3, bytes([2]))  # shape: [2], packed
    contents = field(3, bytes([1, 1]))  # InferTensorContents.int64_contents, packed
    tensor = field(1, b"output-0") + field(2, b"INT64") + shape + field(5, contents)
    return field(1, b"iris") + field(5, tensor)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = scope["method"] == "POST"
    while more:  # drain the body, as any real server must
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        body = READY_BODY
    elif scope["path"].startswith("/v1/"):
        body = V1_BODY
    else:
        body = V2_BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve(http_port: int, grpc_port: int) -> None:
    response = _grpc_infer_response()

    async def model_infer(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return response

    grpc_server = grpc.aio.server()
    grpc_server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService",
                {"ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)},
            ),
        )
    )
    grpc_server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await grpc_server.start()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=http_port,
        loop="none",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    await uvicorn.Server(config).serve()
    await grpc_server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.http_port, args.grpc_port))


if __name__ == "__main__":
    main()
