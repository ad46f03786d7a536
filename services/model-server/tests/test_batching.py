"""Concurrent requests are merged into one model call on V1, V2 and gRPC, and each caller gets
back its own rows."""

from __future__ import annotations

import asyncio
import threading
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
    """Answers 2*x per row and records how many rows each call saw. While `hold` is set, the
    first call blocks until `release` is set, keeping the model busy so that requests queue."""

    def __init__(self) -> None:
        super().__init__("doubler")
        self.batch_sizes: list[int] = []
        self.ready = True
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if self.hold and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60), "the test never released the first call"
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
    model.hold = True
    # A long max latency: a batch is sent because the model became free, never because time ran
    # out.
    with ThreadServer([model], batch_config=BatchConfig(BATCH + 1, 600_000)) as server:
        yield server, model


async def _until(check: Any) -> None:
    for _ in range(6000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _while_busy(server: Any, model: Doubler, first: Any, rest: list[Any]) -> list[Any]:
    """Sends `first`, which occupies the model, then `rest`; frees the model only once all of
    `rest` waits in the batcher, so they must go as one batch."""
    first_task = asyncio.ensure_future(first)
    await _until(model.entered.is_set)
    dataplane = server.server.dataplane
    batcher = dataplane._batcher(dataplane.get_ready_model("doubler", None))
    rest_task = asyncio.gather(*rest)
    await _until(lambda: batcher.pending_rows == len(rest))
    model.release.set()
    return [await first_task, *await rest_task]


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
        return await _while_busy(
            server, model, _v1(server.url, 0), [_v1(server.url, i) for i in range(1, BATCH + 1)]
        )

    results = asyncio.run(run())
    assert model.batch_sizes == [1, BATCH]
    assert results == [[[2 * i, 2 * i + 1]] for i in range(BATCH + 1)]


def test_v2_requests_are_merged(batching_server: Any) -> None:
    server, model = batching_server

    async def run() -> list[Any]:
        return await _while_busy(
            server, model, _v2(server.url, 0), [_v2(server.url, i) for i in range(1, BATCH + 1)]
        )

    results = asyncio.run(run())
    assert model.batch_sizes == [1, BATCH]
    assert results == [[2 * i, 2 * i + 1] for i in range(BATCH + 1)]


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
            return await _while_busy(
                server, model, one(stub, 0), [one(stub, i) for i in range(1, BATCH + 1)]
            )

    results = asyncio.run(run())
    assert model.batch_sizes == [1, BATCH]
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


def test_a_lone_request_is_not_held_for_company() -> None:
    model = Doubler()
    # Ten minutes of max latency: were the idle model's request held for it, the client's 60 s
    # timeout would fail the test.
    with ThreadServer([model], batch_config=BatchConfig(BATCH, 600_000)) as server:
        results = [asyncio.run(_v1(server.url, i)) for i in range(3)]
    assert model.batch_sizes == [1, 1, 1]
    assert results == [[[2 * i, 2 * i + 1]] for i in range(3)]
