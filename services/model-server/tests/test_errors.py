"""Errors are ``{"error": msg}`` with 400/404/501/503, over REST and gRPC; never a 500."""

from __future__ import annotations

import grpc
import httpx
import orjson
import pytest
from ms_testkit import ServerProcess, ThreadServer

from wharf_model_server import Model
from wharf_protocol.grpc import pb, pb_grpc

IRIS_ROW = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}


def _post(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "Unrecognized request format"),
        (b"[1, 2]", ""),
        (b'{"inputs": 3}', "inputs"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}', "data"),
        (b'{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1]}]}', ""),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1]}]}', ""),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1,2,3]}]}', ""),
    ],
)
def test_v2_malformed_is_400(multi_server: ServerProcess, body: bytes, fragment: str) -> None:
    response = _post(multi_server, "/v2/models/sklearn-iris/infer", content=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_binary_lengths_that_do_not_add_up(multi_server: ServerProcess) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    )
    raw = b"\x00" * 12  # 3 floats where 4 were announced
    for length in (len(header), len(header) + 100, -1, "abc"):
        response = _post(
            multi_server,
            "/v2/models/sklearn-iris/infer",
            content=header + raw,
            headers={"inference-header-content-length": str(length)},
        )
        assert response.status_code == 400, response.text
        assert "error" in response.json()


def test_v1_malformed_is_400(multi_server: ServerProcess) -> None:
    for body in (b"{", b'{"instances": 1}', b'{"instances": [[1, 2], [3]]}', b'"x"'):
        response = _post(multi_server, "/v1/models/sklearn-iris:predict", content=body)
        assert response.status_code == 400, (body, response.text)


def test_unknown_model_is_404(multi_server: ServerProcess) -> None:
    for path in ("/v2/models/nope/infer", "/v1/models/nope:predict"):
        response = _post(multi_server, path, json={"inputs": [IRIS_ROW]})
        assert response.status_code == 404
        assert response.json() == {"error": "Model with name nope does not exist."}
    assert httpx.get(multi_server.url + "/v2/models/nope").status_code == 404


def test_versions_unsupported_is_501(multi_server: ServerProcess) -> None:
    response = _post(multi_server, "/v2/models/sklearn-iris/versions/7/infer", json={})
    assert response.status_code == 501
    assert "versions" in response.json()["error"]


def test_explain_without_explainer_is_501(multi_server: ServerProcess) -> None:
    response = _post(multi_server, "/v1/models/sklearn-iris:explain", json={"instances": [[1]]})
    assert response.status_code == 501


class _NotReady(Model):
    def predict(self, payload: object, headers: object = None) -> object:
        return {"predictions": []}


def test_not_ready_is_503_rest_and_grpc() -> None:
    ready = _NotReady("up")
    ready.ready = True
    down = _NotReady("down")
    with ThreadServer([ready]) as server:
        server.server.register_model(down)  # registered, never loaded
        response = httpx.post(f"{server.url}/v1/models/down:predict", json={"instances": [1]})
        assert response.status_code == 503
        assert response.json() == {"error": "Model with name down is not ready."}
        assert httpx.get(f"{server.url}/v1/models/down").status_code == 503
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
        with grpc.insecure_channel(server.grpc_host) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(pb.ModelInferRequest(model_name="down"))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_errors_map_to_status_codes(multi_server: ServerProcess) -> None:
    with grpc.insecure_channel(multi_server.grpc_host) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelInfer(pb.ModelInferRequest(model_name="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        bad = pb.ModelInferRequest(model_name="sklearn-iris")
        tensor = bad.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        tensor.contents.fp32_contents.extend([1.0, 2.0])  # 2 values for 4
        with pytest.raises(grpc.RpcError) as invalid:
            stub.ModelInfer(bad)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.ServerLive(pb.ServerLiveRequest()).live


def test_sklearn_rejects_nan_with_400(multi_server: ServerProcess) -> None:
    for body in (
        b'{"instances": [[NaN, 1, 2, 3]]}',
        b'{"instances": [[1e999, 1, 2, 3]]}',
    ):
        response = _post(multi_server, "/v1/models/sklearn-iris:predict", content=body)
        assert response.status_code == 400, response.text
    binary_nan = {"name": "x", "shape": [1, 4], "datatype": "FP64", "parameters": {}}
    header = orjson.dumps({"inputs": [{**binary_nan, "parameters": {"binary_data_size": 32}}]})
    raw = b"\x00" * 24 + b"\x00\x00\x00\x00\x00\x00\xf8\x7f"  # 0, 0, 0, NaN
    response = _post(
        multi_server,
        "/v2/models/sklearn-iris/infer",
        content=header + raw,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert response.status_code == 400, response.text
    assert "NaN" in response.json()["error"]
