"""Concurrent requests are merged into one model call on V1, V2 and gRPC, and each caller gets
back its own rows."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from ms_testkit import ThreadServer

from wharf_model_server import (
    BatchConfig,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
)
from wharf_protocol.grpc import pb_grpc
from wharf_protocol.grpc_codec import request_to_grpc, response_from_grpc

BATCH = 4


class Doubler(Model):
    """Answers 2*x per row and records how many rows each call saw."""

    def __init__(self) -> None:
        super().__init__("doubler")
        self.batch_sizes: list[int] = []
        self.ready = True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            x = payload.inputs[0].as_numpy()
            self.batch_sizes.append(x.shape[0])
            out = InferOutput("y", list(x.shape), "FP32")
            out.set_data_from_numpy((x * 2).astype(np.float32))
            return InferResponse(payload.id, self.name, [out])
        self.batch_sizes.append(len(payload["instances"]))
        return {"predictions": [[2 * v for v in row] for row in payload["instances"]]}


@pytest.fixture
def batching_server() -> Any:
    model = Doubler()
    # A long max latency: the batch is sent because it is full, not because time ran out.
    with ThreadServer([model], batch_config=BatchConfig(BATCH, 30_000)) as server:
        yield server, model


async def _v1(url: str, i: int) -> list[list[float]]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{url}/v1/models/doubler:predict", json={"instances": [[i, i + 0.5]]}
        )
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])


async def _v2(url: str, i: int) -> list[float]:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [i, i + 0.5]}]}
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{url}/v2/models/doubler/infer", json=body)
        assert response.status_code == 200, response.text
        return list(response.json()["outputs"][0]["data"])


def test_v1_requests_are_merged(batching_server: Any) -> None:
    server, model = batching_server

    async def run() -> list[Any]:
        return await asyncio.gather(*(_v1(server.url, i) for i in range(BATCH)))

    results = asyncio.run(run())
    assert model.batch_sizes == [BATCH]
    assert results == [[[2 * i, 2 * i + 1]] for i in range(BATCH)]


def test_v2_requests_are_merged(batching_server: Any) -> None:
    server, model = batching_server

    async def run() -> list[Any]:
        return await asyncio.gather(*(_v2(server.url, i) for i in range(BATCH)))

    results = asyncio.run(run())
    assert model.batch_sizes == [BATCH]
    assert results == [[2 * i, 2 * i + 1] for i in range(BATCH)]


def test_grpc_requests_are_merged(batching_server: Any) -> None:
    server, model = batching_server

    async def one(stub: Any, i: int) -> np.ndarray:
        tensor = InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[i, i + 0.5]], dtype=np.float32))
        request = InferRequest("doubler", [tensor], request_id=f"r{i}")
        reply = await stub.ModelInfer(request_to_grpc(request))
        response = response_from_grpc(reply)
        assert response.id == f"r{i}"
        return response.outputs[0].as_numpy()

    async def run() -> list[np.ndarray]:
        async with grpc.aio.insecure_channel(server.grpc_host) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return await asyncio.gather(*(one(stub, i) for i in range(BATCH)))

    results = asyncio.run(run())
    assert model.batch_sizes == [BATCH]
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, np.array([[2 * i, 2 * i + 1]], dtype=np.float32))


def test_max_latency_sends_a_partial_batch() -> None:
    model = Doubler()
    with ThreadServer([model], batch_config=BatchConfig(BATCH, 50)) as server:

        async def run() -> list[Any]:
            return await asyncio.gather(_v1(server.url, 1), _v1(server.url, 2))

        results = asyncio.run(run())
    assert sum(model.batch_sizes) == 2
    assert results == [[[2, 3]], [[4, 5]]]


def test_batching_is_off_by_default() -> None:
    model = Doubler()
    with ThreadServer([model]) as server:

        async def run() -> list[Any]:
            return await asyncio.gather(*(_v1(server.url, i) for i in range(3)))

        asyncio.run(run())
    assert model.batch_sizes == [1, 1, 1]
