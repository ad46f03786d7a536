"""Compatibility smoke check with KServe's own clients: runs in the bench's KServe environment.

Sends the iris request once through `kserve.InferenceRESTClient` (V1 and V2) and
`kserve.InferenceGRPCClient` (V2) and compares the predictions with the expected classes. Prints
one JSON object `{check: {"ok": bool, "detail": str}}` on stdout; exits 0 even on failures (the
caller reports them).

Run: `<kserve-venv>/bin/python bench/kserve_client_check.py HTTP_URL GRPC_TARGET MODEL
INSTANCES_JSON EXPECTED_JSON`. Positional only: importing `kserve` parses `sys.argv` with KServe's
server options, which abbreviated options like `--grpc` or `--model` would collide with.
"""

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    RESTConfig,
)


def _v2_request(model: str, instances: list[list[float]]) -> Any:
    tensor = InferInput(name="input-0", shape=[len(instances), len(instances[0])], datatype="FP32")
    tensor.set_data_from_numpy(np.asarray(instances, dtype=np.float32))
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id="smoke")


async def _rest_v1(args: argparse.Namespace, instances: list[list[float]]) -> list[Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=10))
    try:
        result = await client.infer(args.http, {"instances": instances}, model_name=args.model)
    finally:
        await client.close()
    return list(result["predictions"])


async def _rest_v2(args: argparse.Namespace, instances: list[list[float]]) -> list[Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=10))
    try:
        response = await client.infer(
            args.http, _v2_request(args.model, instances), model_name=args.model
        )
    finally:
        await client.close()
    return [int(x) for x in response.outputs[0].as_numpy().ravel()]


async def _grpc_v2(args: argparse.Namespace, instances: list[list[float]]) -> list[Any]:
    client = InferenceGRPCClient(args.grpc, timeout=10)
    try:
        response = await client.infer(_v2_request(args.model, instances))
    finally:
        await client.close()
    return [int(x) for x in response.outputs[0].as_numpy().ravel()]


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    instances = json.loads(args.instances)
    expected = json.loads(args.expected)
    checks: dict[str, Callable[[argparse.Namespace, list[list[float]]], Awaitable[list[Any]]]] = {
        "InferenceRESTClient v1": _rest_v1,
        "InferenceRESTClient v2": _rest_v2,
        "InferenceGRPCClient v2": _grpc_v2,
    }
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            got = await check(args, instances)
            ok = got == expected
            detail = f"predictions {got}" + ("" if ok else f", expected {expected}")
        except Exception as e:  # any failure is a failed check, reported with its cause
            ok, detail = False, f"{type(e).__name__}: {e}"
        results[name] = {"ok": ok, "detail": detail}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("http", help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("grpc", help="host:port")
    parser.add_argument("model")
    parser.add_argument("instances", help="JSON list of feature rows")
    parser.add_argument("expected", help="JSON list of expected classes")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
