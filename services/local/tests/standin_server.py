"""A stand-in model server for process-management tests only (not a model server).

It speaks just enough of the model server's surface for the supervisor and the ingress:
`GET /v2/health/ready`, `POST /v1/models/{name}:predict` (answers with the model folder's
`version.txt`) and a gRPC echo on every method. `crash` in the model folder makes it exit
at once, with code 3. Without `--model_dir` and with `--predictor_host URL` it is a
transformer: it forwards predict requests to that base URL and wraps the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path

import grpc


class Echo(grpc.GenericRpcHandler):
    def service(self, details):  # type: ignore[no-untyped-def]
        async def echo(request: bytes, context: object) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name")
    parser.add_argument("--model_dir")
    parser.add_argument("--http_port", type=int)
    parser.add_argument("--grpc_port", type=int)
    parser.add_argument("--predictor_host")
    args, _ = parser.parse_known_args()
    version, delay = "transformer", 0.0
    if args.model_dir:
        model_dir = Path(args.model_dir)
        if (model_dir / "crash").exists():
            print("crash requested", flush=True)
            sys.exit(3)
        version = (model_dir / "version.txt").read_text().strip()
        if (model_dir / "delay.txt").exists():
            delay = float((model_dir / "delay.txt").read_text())

    def forward(body: bytes) -> object:
        url = f"{args.predictor_host}/v1/models/{args.model_name}:predict"
        request = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            return {"transformed": json.loads(resp.read()), "via": url}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                body = await reader.readexactly(length) if length else b""
                if path == "/v2/health/ready":
                    status, payload = 200, {"ready": True}
                elif path == f"/v1/models/{args.model_name}:predict" and args.predictor_host:
                    status, payload = 200, await asyncio.to_thread(forward, body)
                elif path == f"/v1/models/{args.model_name}:predict" and method == "POST":
                    await asyncio.sleep(delay)
                    status = 200
                    payload = {"predictions": [version], "echo": json.loads(body or b"null")}
                else:
                    status, payload = 404, {"error": f"no route {path}"}
                out = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(out)}\r\n\r\n".encode()
                    + out
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.http_port)
    if args.grpc_port:
        grpc_server = grpc.aio.server(handlers=[Echo()])
        grpc_server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
        await grpc_server.start()
    print(f"serving {args.model_name} {version} on {args.http_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
