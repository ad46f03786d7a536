"""Real clients (tritonclient HTTP and gRPC, JSON and binary) against a real server process
serving sklearn, xgboost, lightgbm and onnx models; answers equal the framework's own predict."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from ms_testkit import ServerProcess, framework_predict, iris

from wharf_protocol.grpc import pb, pb_grpc

MODELS = ["sklearn-iris", "xgboost-iris", "lightgbm-iris", "onnx-iris"]


def _input_name(model: str) -> str:
    return "input" if model.startswith("onnx") else "input-0"


def _output_name(model: str) -> str:
    return "scores" if model.startswith("onnx") else "output-0"


def _close(expected: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_http(
    multi_server: ServerProcess, model_repository: Path, model: str, binary: bool
) -> None:
    x, _ = iris()
    batch = x[::10]
    client = httpclient.InferenceServerClient(url=multi_server.http_host)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(model)
        infer_input = httpclient.InferInput(_input_name(model), list(batch.shape), "FP32")
        infer_input.set_data_from_numpy(batch, binary_data=binary)
        output = httpclient.InferRequestedOutput(_output_name(model), binary_data=binary)
        result = client.infer(model, [infer_input], outputs=[output])
        got = result.as_numpy(_output_name(model))
    finally:
        client.close()
    assert got is not None
    _close(framework_predict(model_repository, model, batch), got)


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_grpc(multi_server: ServerProcess, model_repository: Path, model: str) -> None:
    x, _ = iris()
    batch = x[5::13]
    client = grpcclient.InferenceServerClient(url=multi_server.grpc_host)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(model)
        metadata = client.get_model_metadata(model)
        assert metadata.name == model
        infer_input = grpcclient.InferInput(_input_name(model), list(batch.shape), "FP32")
        infer_input.set_data_from_numpy(batch)
        result = client.infer(model, [infer_input])
        got = result.as_numpy(_output_name(model))
    finally:
        client.close()
    assert got is not None
    _close(framework_predict(model_repository, model, batch), got)


@pytest.mark.parametrize("model", MODELS)
def test_v1_predict(multi_server: ServerProcess, model_repository: Path, model: str) -> None:
    x, _ = iris()
    batch = x[:7]
    response = httpx.post(
        f"{multi_server.url}/v1/models/{model}:predict", json={"instances": batch.tolist()}
    )
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"])
    expected = framework_predict(model_repository, model, batch)
    _close(expected, got.astype(expected.dtype))


def test_v1_and_v2_listing_and_metadata(multi_server: ServerProcess) -> None:
    assert sorted(httpx.get(f"{multi_server.url}/v1/models").json()["models"]) == sorted(MODELS)
    assert httpx.get(f"{multi_server.url}/v1/models/sklearn-iris").json() == {
        "name": "sklearn-iris",
        "ready": True,
    }
    server = httpx.get(f"{multi_server.url}/v2").json()
    assert "model_repository_extension" in server["extensions"]
    onnx_meta = httpx.get(f"{multi_server.url}/v2/models/onnx-iris").json()
    assert onnx_meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert httpx.get(f"{multi_server.url}/v2/models/onnx-iris/ready").json()["ready"] is True


def test_repository_unload_and_load(multi_server: ServerProcess) -> None:
    url = multi_server.url
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    unloaded = httpx.post(f"{url}/v2/repository/models/lightgbm-iris/unload")
    assert unloaded.json() == {"name": "lightgbm-iris", "unload": True}
    assert httpx.post(f"{url}/v2/models/lightgbm-iris/infer", json=body).status_code == 404
    assert httpx.get(f"{url}/v2/models/lightgbm-iris/ready").status_code == 404
    loaded = httpx.post(f"{url}/v2/repository/models/lightgbm-iris/load", timeout=60)
    assert loaded.json() == {"name": "lightgbm-iris", "load": True}
    assert httpx.post(f"{url}/v2/models/lightgbm-iris/infer", json=body).status_code == 200
    missing = httpx.post(f"{url}/v2/repository/models/no-such-model/load")
    assert missing.status_code == 404
    assert "no-such-model" in missing.json()["error"]


def test_grpc_repository_rpcs(multi_server: ServerProcess) -> None:
    # tritonclient's repository messages number their fields differently from KServe's proto
    # (repository_name comes first there), so this speaks KServe's proto through our stubs.
    with grpc.insecure_channel(multi_server.grpc_host) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name="xgboost-iris")
        )
        assert reply.isUnloaded
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelReady(pb.ModelReadyRequest(name="xgboost-iris"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        reply = stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="xgboost-iris"))
        assert reply.isLoaded
        assert stub.ModelReady(pb.ModelReadyRequest(name="xgboost-iris")).ready
