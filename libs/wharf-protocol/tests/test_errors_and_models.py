from __future__ import annotations

import grpc
import pytest

from wharf_protocol import errors, v1, v2
from wharf_protocol.errors import WharfError

MAPPING = [
    (errors.InvalidInput("bad"), 400, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelNotFound("m"), 404, grpc.StatusCode.NOT_FOUND),
    (errors.ModelNotReady("m"), 503, grpc.StatusCode.UNAVAILABLE),
    (errors.ServerNotReady(), 503, grpc.StatusCode.UNAVAILABLE),
    (errors.ServerNotLive(), 503, grpc.StatusCode.UNAVAILABLE),
    (errors.Unsupported("versions"), 501, grpc.StatusCode.UNIMPLEMENTED),
    (errors.InferenceError("boom"), 500, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("error", "status", "code"), MAPPING, ids=lambda v: type(v).__name__)
def test_error_mapping(error: WharfError, status: int, code: grpc.StatusCode) -> None:
    assert error.http_status == status
    assert error.grpc_status == code
    assert error.body() == {"error": error.message}
    assert str(error) == error.message


def test_model_errors_name_the_model() -> None:
    assert "iris" in errors.ModelNotFound("iris").message
    assert errors.ModelNotReady("iris").name == "iris"


def test_v2_models_accept_the_spec_examples() -> None:
    req = v2.InferenceRequest.model_validate(
        {
            "id": "42",
            "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32",
                        "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    )  # fmt: skip
    assert req.inputs[0].datatype == "UINT32"
    resp = v2.InferenceResponse.model_validate(
        {"model_name": "m", "outputs": [{"name": "o", "shape": [1], "datatype": "FP32",
                                          "data": [1.5]}]}
    )  # fmt: skip
    assert resp.outputs[0].data == [1.5]
    meta = v2.ModelMetadataResponse(
        name="m", platform="sklearn", inputs=[v2.TensorMetadata(name="x", datatype="FP32",
                                                                shape=[-1, 4])]
    )  # fmt: skip
    assert meta.model_dump(exclude_none=True)["inputs"][0]["shape"] == [-1, 4]
    assert v2.ErrorResponse(error="x").error == "x"
    for model in (v2.ServerLiveResponse(live=True), v2.ServerReadyResponse(ready=True)):
        assert model.model_dump()
    assert v2.ModelReadyResponse(name="m", ready=False).ready is False
    assert v2.RepositoryLoadResponse(name="m", load=True).load
    assert v2.RepositoryUnloadResponse(name="m", unload=True).unload
    assert v2.ServerMetadataResponse(name="wharf", version="0.1").extensions == []
    with pytest.raises(ValueError, match="datatype"):
        v2.RequestInput(name="x", shape=[1], datatype="FP8", data=[1])  # type: ignore[arg-type]


def test_v1_models() -> None:
    assert v1.PredictRequest(instances=[[1, 2]]).instances == [[1, 2]]
    assert v1.PredictResponse(predictions=[0]).predictions == [0]
