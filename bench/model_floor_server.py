"""The benchmark's model floor: the least a Python server on this stack can do per request while
running the model.

Like `floor_server.py` (a raw ASGI app on uvicorn with uvloop + httptools, no access log, and a
bare `grpc.aio` generic handler, on one event loop in one process), but every request is decoded
(V1 `instances`, a V2 JSON tensor, a gRPC `ModelInferRequest` with `fp32_contents`), passed to the
joblib-loaded model's own `predict` inline on the event loop, and the answer encoded (V1
`predictions`, a V2 INT64 output, a `ModelInferResponse` with `int64_contents`). Nothing else: no
validation beyond what decoding needs, no metrics, no logging, no thread hop.

Run: `python bench/model_floor_server.py --model_dir DIR --http_port P --grpc_port G`.
"""

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import joblib  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import orjson
import uvicorn
import uvloop

from wharf_protocol.grpc import pb

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

READY_BODY = b'{"ready":true}'
HEADERS = [(b"content-type", b"application/json")]


def make_app(model: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = scope["method"] == "POST"
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status = 200
        if scope["method"] == "GET":
            body = READY_BODY
        else:
            try:
                request = orjson.loads(b"".join(chunks))
                if scope["path"].startswith("/v1/"):
                    x = np.asarray(request["instances"], dtype=np.float64)
                    body = orjson.dumps({"predictions": model.predict(x).tolist()})
                else:
                    tensor = request["inputs"][0]
                    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
                    y = model.predict(x)
                    output = {"name": "output-0", "shape": [len(y)], "datatype": "INT64"}
                    body = orjson.dumps(
                        {"model_name": "iris", "outputs": [{**output, "data": y.tolist()}]}
                    )
            except Exception as exc:
                status, body = 400, orjson.dumps({"error": str(exc)})
        await send({"type": "http.response.start", "status": status, "headers": HEADERS})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve(model: Any, http_port: int, grpc_port: int) -> None:
    async def model_infer(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        message = pb.ModelInferRequest.FromString(request)
        tensor = message.inputs[0]
        x = np.asarray(tensor.contents.fp32_contents, dtype=np.float32).reshape(tensor.shape)
        y = model.predict(x)
        reply = pb.ModelInferResponse(model_name=message.model_name, id=message.id)
        out = reply.outputs.add(name="output-0", datatype="INT64", shape=[len(y)])
        out.contents.int64_contents.extend(y.tolist())
        data: bytes = reply.SerializeToString()
        return data

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
        make_app(model),
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
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    args, _ = parser.parse_known_args()
    model = joblib.load(args.model_dir / "model.joblib")
    uvloop.run(serve(model, args.http_port, args.grpc_port))


if __name__ == "__main__":
    main()
