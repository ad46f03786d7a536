"""Concurrent requests are merged into one model call on V1, V2 and gRPC, and each caller gets
back its own rows."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from ms_testkit import ThreadServer, iris

from wharf_model_server import (
    BatchConfig,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
)
from wharf_model_server.batching import EAGER_BELOW, Batcher, InFlight, should_send
from wharf_model_server.runtimes.sklearn import SKLearnModel
from wharf_protocol.grpc import pb_grpc
from wharf_protocol.grpc_codec import request_to_grpc, response_from_grpc
from wharf_protocol.rest import INFERENCE_HEADER_CONTENT_LENGTH, encode_infer_request

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
    # A long max latency: the batch is sent because it is full, not because time ran out (and
    # KServe's rule alone: the first request must not leave before the others arrive).
    config = BatchConfig(BATCH, 30_000, send_when_idle=False)
    with ThreadServer([model], batch_config=config) as server:
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
    config = BatchConfig(BATCH, 50, send_when_idle=False)
    with ThreadServer([model], batch_config=config) as server:

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


# -- one bad request does not fail its batch ------------------------------------------------------

GOOD = 6


class CountingIris(SKLearnModel):
    """The built-in sklearn runtime on an iris model, recording the rows of each call."""

    def __init__(self, model_file: str) -> None:
        super().__init__("iris", model_file)
        self.calls: list[int] = []
        self.load()

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        if isinstance(payload, InferRequest):
            self.calls.append(payload.inputs[0].shape[0])
        else:
            self.calls.append(len(payload["instances"]))
        return super().predict(payload, headers)


@pytest.fixture
def iris_batching(model_repository: Path) -> Any:
    model = CountingIris(str(model_repository / "sklearn-iris" / "model.joblib"))
    # The good requests fill a batch; a bad one left alone is sent after max_latency.
    config = BatchConfig(GOOD, 200, send_when_idle=False)
    with ThreadServer([model], batch_config=config) as server:
        yield server, model


def _rows(bad: str) -> tuple[list[list[Any]], list[Any]]:
    x, _ = iris()
    good = [x[i : i + 1].tolist() for i in range(GOOD)]
    if bad == "width":
        return good, [[5.1, 3.5, 1.4]]
    return good, [[float("nan"), 3.5, 1.4, 0.2]]


async def _post_v1(client: httpx.AsyncClient, url: str, rows: list[Any]) -> httpx.Response:
    return await client.post(f"{url}/v1/models/iris:predict", json={"instances": rows})


async def _post_v2(client: httpx.AsyncClient, url: str, rows: list[Any]) -> httpx.Response:
    array = np.asarray(rows, dtype=np.float32)
    tensor = InferInput("x", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=True)  # binary: NaN has no JSON spelling
    body, json_length = encode_infer_request(InferRequest("iris", [tensor]), binary=True)
    headers = {} if json_length is None else {INFERENCE_HEADER_CONTENT_LENGTH: str(json_length)}
    return await client.post(f"{url}/v2/models/iris/infer", content=body, headers=headers)


@pytest.mark.parametrize("bad", ["width", "nan"])
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_bad_rest_request_fails_alone(iris_batching: Any, protocol: str, bad: str) -> None:
    server, model = iris_batching
    good, wrong = _rows(bad)
    if protocol == "v1" and bad == "nan":
        wrong = [["a", 3.5, 1.4, 0.2]]  # JSON has no NaN: a string among numbers instead
    post = _post_v1 if protocol == "v1" else _post_v2

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(post(client, server.url, rows) for rows in [*good[:3], wrong, *good[3:]])
            )

    replies = asyncio.run(run())
    statuses = [r.status_code for r in replies]
    assert statuses == [200, 200, 200, 400, 200, 200, 200], [r.text for r in replies]
    assert "error" in replies[3].json()
    assert GOOD in model.calls, model.calls  # the good ones did share a batch


@pytest.mark.parametrize("bad", ["width", "nan"])
def test_a_bad_grpc_request_fails_alone(iris_batching: Any, bad: str) -> None:
    server, model = iris_batching
    good, wrong = _rows(bad)

    async def one(stub: Any, rows: list[Any]) -> grpc.StatusCode:
        tensor = InferInput("x", [1, len(rows[0])], "FP32")
        tensor.set_data_from_numpy(np.asarray(rows, dtype=np.float32))
        try:
            await stub.ModelInfer(request_to_grpc(InferRequest("iris", [tensor])))
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def run() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(server.grpc_host) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return await asyncio.gather(*(one(stub, r) for r in [*good[:3], wrong, *good[3:]]))

    codes = asyncio.run(run())
    ok, invalid = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
    assert codes == [ok, ok, ok, invalid, ok, ok, ok]
    assert GOOD in model.calls, model.calls  # the good ones did share a batch


def test_a_failed_batch_reruns_its_members_alone() -> None:
    """The split on failure, below the transports: only the member the model rejects fails."""
    calls: list[list[Any]] = []

    async def run_model(payload: Any, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
        calls.append(payload["instances"])
        if any(row == ["bad"] for row in payload["instances"]):
            raise ValueError("rejected")
        return {"predictions": payload["instances"]}, {}

    async def run() -> list[Any]:
        batcher = Batcher(BatchConfig(3, 60_000), run_model)
        return await asyncio.gather(
            *(batcher.submit({"instances": [row]}, {}) for row in (["a"], ["bad"], ["c"])),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    assert results[0] == ({"predictions": [["a"]]}, {})
    assert isinstance(results[1], ValueError)
    assert results[2] == ({"predictions": [["c"]]}, {})
    assert calls[0] == [["a"], ["bad"], ["c"]]  # merged first
    assert sorted(map(str, calls[1:])) == sorted(map(str, [[["a"]], [["bad"]], [["c"]]]))


# -- when a batch leaves: the rule, then the server -------------------------------------------

CLASSIC = BatchConfig(max_batch_size=8, max_latency_ms=5, send_when_idle=False)
IDLE = BatchConfig(max_batch_size=8, max_latency_ms=5)


@pytest.mark.parametrize(
    ("rows", "waiting", "in_flight", "recent", "config", "send"),
    [
        (8, 4, 9, 9.0, CLASSIC, True),  # full: leaves whatever else is going on
        (8, 4, 9, 9.0, IDLE, True),
        (1, 1, 1, 1.0, IDLE, True),  # a lone request at low load goes at once
        (1, 1, 1, 1.0, CLASSIC, False),  # KServe's rule: it waits for company or max latency
        (2, 2, 3, 1.5, IDLE, False),  # another request is being served: wait for it
        (3, 3, 3, 1.5, IDLE, True),  # everything in flight waits here: nobody else can join
        (2, 5, 5, 1.5, IDLE, True),  # ... counting the waiting in other batches (other shapes)
        (1, 1, 1, 6.0, IDLE, False),  # under load (gRPC's queued calls unseen): gather
        (1, 1, None, 0.0, IDLE, False),  # nobody counts the requests: the timer decides
    ],
)
def test_should_send(
    rows: int, waiting: int, in_flight: int | None, recent: float, config: BatchConfig, send: bool
) -> None:
    assert should_send(rows, waiting, in_flight, recent, config) is send


def test_the_recent_average_follows_the_load() -> None:
    """At concurrency 1 the average stays at 1 (eager); with many requests in flight it rises
    above EAGER_BELOW and the departure of one no longer sends the waiting batch."""
    flushed: list[int] = []
    tracker = InFlight(IDLE)
    tracker.on_idle = lambda: flushed.append(tracker.count)
    for _ in range(50):
        tracker.enter()
        tracker.leave()
    assert tracker.recent < EAGER_BELOW
    for _ in range(30):
        tracker.enter()
    tracker.waiting = 29
    assert tracker.recent > EAGER_BELOW
    tracker.leave()  # 29 in flight, all waiting, but the load is high: the timer decides
    assert flushed == []


class GatedDoubler(Doubler):
    """A Doubler whose first call blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(60)
        return super().predict(payload, headers)


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(6000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_lone_request_does_not_wait_for_max_latency() -> None:
    """With a max latency longer than the test's timeouts, sequential requests are answered
    one by one: each is sent alone because nothing else is in flight."""
    model = Doubler()
    with ThreadServer([model], batch_config=BatchConfig(BATCH, 600_000)) as server:
        results = [asyncio.run(_v1(server.url, i)) for i in range(3)]
        assert asyncio.run(_v2(server.url, 7)) == [14, 15]
    assert results == [[[2 * i, 2 * i + 1]] for i in range(3)]
    assert model.batch_sizes == [1, 1, 1, 1]


def test_requests_that_arrive_while_one_is_served_leave_together_when_it_is_answered() -> None:
    model = GatedDoubler()
    others = BATCH - 1  # fewer than a full batch: only the "nothing else in flight" rule sends
    with ThreadServer([model], batch_config=BatchConfig(BATCH + 10, 600_000)) as server:
        in_flight = server.server.dataplane.in_flight
        assert in_flight is not None

        async def run() -> list[Any]:
            first = asyncio.create_task(_v1(server.url, 0))
            await _until(model.entered.is_set, "the first request reached predict")
            rest = [asyncio.create_task(_v1(server.url, i)) for i in range(1, others + 1)]
            await _until(lambda: in_flight.waiting == others, "the others wait in a batch")
            assert model.batch_sizes == []  # the first is still in predict
            model.gate.set()
            return await asyncio.gather(first, *rest)

        results = asyncio.run(run())
    assert results == [[[2 * i, 2 * i + 1]] for i in range(others + 1)]
    assert model.batch_sizes == [1, others]
