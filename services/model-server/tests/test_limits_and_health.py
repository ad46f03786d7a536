"""Request size limits (REST 413, gRPC message limits), garbage protobuf, and health endpoints
that keep answering while a large body decodes or a model runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from ms_testkit import ThreadServer

from wharf_model_server import InferInput, InferRequest, Model
from wharf_model_server.model_server import ModelServer, parse_args
from wharf_model_server.rest import handlers
from wharf_model_server.rest import v1 as rest_v1
from wharf_protocol.grpc import pb, pb_grpc
from wharf_protocol.grpc_codec import request_to_grpc
from wharf_protocol.limits import DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES_ENV

LIMIT = 4096
HEALTH = ("/v2/health/live", "/v2/health/ready", "/")


class Echo(Model):
    """Answers the number of rows; ``gate`` (when set) holds predict until it opens."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.ready = True
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(120)
        if isinstance(payload, InferRequest):
            return {"predictions": [payload.inputs[0].shape[0]]}
        return {"predictions": [len(payload["instances"])]}


def _raw_http(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Sends ``head`` (and ``body``) and reads the answer's status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


# -- REST body limit ----------------------------------------------------------------------------


def test_body_over_the_limit_answers_413_naming_the_limit_and_how_to_raise_it() -> None:
    with ThreadServer([Echo()], max_request_body_bytes=LIMIT) as server:
        rows = [[1.0, 2.0, 3.0, 4.0]] * 400  # about 7 KB of JSON
        over = httpx.post(f"{server.url}/v1/models/echo:predict", json={"instances": rows})
        under = httpx.post(f"{server.url}/v1/models/echo:predict", json={"instances": rows[:10]})
        tensor = {"name": "x", "shape": [2000], "datatype": "FP32", "data": [0.5] * 2000}
        v2_over = httpx.post(
            f"{server.url}/v2/models/echo/infer", content=orjson.dumps({"inputs": [tensor]})
        )
    assert under.status_code == 200, under.text
    assert over.status_code == 413
    message = over.json()["error"]
    assert str(LIMIT) in message
    assert "--max_request_body_bytes" in message and MAX_MESSAGE_BYTES_ENV in message
    assert v2_over.status_code == 413


def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent() -> None:
    with ThreadServer([Echo()], max_request_body_bytes=LIMIT) as server:
        # Only the headers go out: an answer arrives without the server waiting for the body.
        for path in ("/v1/models/echo:predict", "/v2/repository/models/echo/load"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
            ).encode()
            answer = _raw_http(server.http_port, head)
            assert answer.startswith(b"HTTP/1.1 413"), answer


def test_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    with ThreadServer([Echo()], max_request_body_bytes=LIMIT) as server:
        head = (
            b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" + b"1," * 1500  # never finished: the server must not wait for the end
        body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        answer = _raw_http(server.http_port, head, body * 2)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        # the server still serves
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_request_head_over_64_kib_answers_431() -> None:
    """Found by the abuse suite: 10,000 headers, or one header of 1 MiB, were served."""
    with ThreadServer([Echo()]) as server:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        big = b"X-Big: " + b"v" * (1024 * 1024) + b"\r\n"
        for headers in (many, big):
            head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
            try:
                answer = _raw_http(server.http_port, head)
            except (ConnectionResetError, BrokenPipeError):
                # closed with the head unread: the 431 may be lost with the reset; what matters
                # is that the head was refused and the server still serves
                answer = b"HTTP/1.1 431 (reset)"
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert httpx.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200


def test_limit_defaults_to_the_shared_message_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_MESSAGE_BYTES_ENV, raising=False)
    server = ModelServer(args=parse_args([]), configure_logging=False)
    assert server.max_request_body_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert server.grpc_max_send_message_length == DEFAULT_MAX_MESSAGE_BYTES
    assert server.grpc_max_receive_message_length == DEFAULT_MAX_MESSAGE_BYTES
    monkeypatch.setenv(MAX_MESSAGE_BYTES_ENV, "12345")
    server = ModelServer(args=parse_args([]), configure_logging=False)
    assert server.max_request_body_bytes == 12345
    assert server.grpc_max_receive_message_length == 12345
    # KServe's flags (and ours) still set each one.
    flags = parse_args(
        [
            "--grpc_max_send_message_length", "100", "--grpc_max_receive_message_length", "200",
            "--max_request_body_bytes", "300",
        ]
    )  # fmt: skip
    server = ModelServer(args=flags, configure_logging=False)
    assert server.grpc_max_send_message_length == 100
    assert server.grpc_max_receive_message_length == 200
    assert server.max_request_body_bytes == 300


# -- gRPC ---------------------------------------------------------------------------------------


def _grpc_infer(host: str, rows: int) -> Any:
    tensor = InferInput("x", [rows, 256], "FP32")
    tensor.set_data_from_numpy(np.zeros((rows, 256), dtype=np.float32))
    request = request_to_grpc(InferRequest("echo", [tensor]))
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(host, options=options) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)


def test_grpc_message_limit_follows_the_shared_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_MESSAGE_BYTES_ENV, str(64 * 1024))
    with ThreadServer([Echo()]) as server:
        small = _grpc_infer(server.grpc_host, 16)  # 16 KiB of tensor
        with pytest.raises(grpc.RpcError) as err:
            _grpc_infer(server.grpc_host, 128)  # 128 KiB
    assert small.outputs[0].shape == [1]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_garbage_protobuf_is_invalid_argument() -> None:
    with ThreadServer([Echo()]) as server, grpc.insecure_channel(server.grpc_host) as channel:
        for method in ("ModelInfer", "ModelMetadata", "ServerReady"):
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
            with pytest.raises(grpc.RpcError) as err:
                call(b"\xff\xff\xff\xff", timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        # well-formed requests still work through the same registration
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready


# -- health while work is under way -------------------------------------------------------------


def _health_answers(url: str) -> None:
    for path in HEALTH:
        reply = httpx.get(url + path, timeout=60)
        assert reply.status_code == 200, (path, reply.text)


def test_health_answers_while_a_large_body_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    decoding, release = threading.Event(), threading.Event()
    parse = rest_v1.parse_v1_body

    def held_parse(body: Any) -> Any:
        if len(body) > 1024 * 1024:
            decoding.set()
            assert release.wait(120)
        return parse(body)

    monkeypatch.setattr(rest_v1, "parse_v1_body", held_parse)
    with ThreadServer([Echo()]) as server, concurrent.futures.ThreadPoolExecutor(1) as pool:
        rows = [[0.25] * 64] * 8000  # about 4 MB of JSON
        big = pool.submit(
            httpx.post, f"{server.url}/v1/models/echo:predict", json={"instances": rows},
            timeout=120,
        )  # fmt: skip
        try:
            assert decoding.wait(120)
            # The decode is held: if it ran on the event loop, nothing below could be answered.
            _health_answers(server.url)
            assert not big.done()
        finally:
            release.set()
        reply = big.result(120)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [8000]}


def test_health_answers_while_inference_runs() -> None:
    model = Echo()
    model.gate = threading.Event()
    with ThreadServer([model]) as server, concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(
            httpx.post, f"{server.url}/v1/models/echo:predict", json={"instances": [[1]]},
            timeout=120,
        )  # fmt: skip
        try:
            assert model.entered.wait(120)
            _health_answers(server.url)
            assert not busy.done()
        finally:
            model.gate.set()
        assert busy.result(120).status_code == 200


def test_large_bodies_are_processed_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second large body waits (holding only its bytes) until the first is done; the
    health routes answer meanwhile."""
    entered: list[int] = []
    first_in, release = threading.Event(), threading.Event()
    parse = rest_v1.parse_v1_body

    def held_parse(body: Any) -> Any:
        entered.append(len(body))
        first_in.set()
        assert release.wait(120)
        return parse(body)

    monkeypatch.setattr(rest_v1, "parse_v1_body", held_parse)
    monkeypatch.setattr(handlers, "LARGE_BYTES", 1024 * 1024)
    with ThreadServer([Echo()]) as server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        slots = asyncio.Semaphore(1)
        server.server.dataplane.large_payloads = slots
        rows = [[0.25] * 64] * 8000  # about 4 MB of JSON
        url = f"{server.url}/v1/models/echo:predict"
        try:
            first = pool.submit(httpx.post, url, json={"instances": rows}, timeout=120)
            assert first_in.wait(120)
            second = pool.submit(httpx.post, url, json={"instances": rows[:6000]}, timeout=120)
            # until the second request is either decoding beside the first or waiting for a slot
            while len(entered) < 2 and not slots._waiters:
                assert not second.done(), second.result().text
                threading.Event().wait(0.01)
            assert len(entered) == 1
            _health_answers(server.url)
        finally:
            release.set()
        replies = [first.result(120), second.result(120)]
    assert [r.json() for r in replies] == [{"predictions": [8000]}, {"predictions": [6000]}]
    assert len(entered) == 2


def test_fastapi_routes_answer_as_the_fast_path_does() -> None:
    """The inference routes declared on the FastAPI app (for /docs) call the same protocol
    modules and the same body limit as the fast path in front of them."""
    from wharf_model_server import ModelRepository
    from wharf_model_server.dataplane import DataPlane
    from wharf_model_server.rest.app import build_fastapi_app

    repository = ModelRepository()
    repository.update(Echo())
    app = build_fastapi_app(DataPlane(repository), max_body_bytes=LIMIT)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}

            async def chunked() -> Any:
                for _ in range(3):
                    yield b" " * 2000  # no Content-Length: the limit applies as it streams

            return [
                await client.post("/v1/models/echo:predict", json={"instances": [[1], [2]]}),
                await client.post("/v2/models/echo/infer", json={"inputs": [tensor]}),
                await client.post("/v1/models/echo:predict", content=chunked()),
            ]

    v1, v2, too_big = asyncio.run(run())
    assert (v1.status_code, v1.json()) == (200, {"predictions": [2]})
    assert v2.status_code == 200, v2.text
    assert too_big.status_code == 413
    assert str(LIMIT) in too_big.json()["error"]


def test_inference_routes_are_the_same_remembered_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from wharf_model_server.rest import fast_path

    monkeypatch.setattr(fast_path, "_ROUTE_CACHE", {})
    monkeypatch.setattr(fast_path, "_ROUTE_CACHE_SIZE", 3)
    paths = [
        "/v2/models/iris/infer",
        "/v2/models/iris/versions/2/infer",
        "/v1/models/iris:predict",
        "/v1/models/iris:explain",
        "/v2/models/iris/ready",
        "/v2/models//infer",
        "/v2/models/a/b/infer",
        "/v1/models/iris:train",
    ]
    expected = [fast_path._match_inference_route(path) for path in paths]
    assert expected[:4] == [
        ("v2", "iris", None),
        ("v2", "iris", "2"),
        ("v1:predict", "iris", None),
        ("v1:explain", "iris", None),
    ]
    assert expected[4:] == [None] * 4
    for _ in range(3):
        assert [fast_path.match_inference_route(path) for path in paths] == expected
    assert list(fast_path._ROUTE_CACHE) == paths[:3]  # matches only, up to the bound


def test_a_long_inference_path_is_matched_but_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wharf_model_server.rest import fast_path

    monkeypatch.setattr(fast_path, "_ROUTE_CACHE", {})
    long = "/v2/models/" + "m" * 60_000 + "/infer"  # a client's head holds up to 64 KiB
    assert fast_path.match_inference_route(long) == ("v2", "m" * 60_000, None)
    assert fast_path.match_inference_route("/v2/models/iris/infer") == ("v2", "iris", None)
    assert list(fast_path._ROUTE_CACHE) == ["/v2/models/iris/infer"]
