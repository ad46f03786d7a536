"""Transformer -> predictor over REST v1, REST v2 and gRPC v2: two real servers, the request id,
trace and authorization headers travel on, other headers do not."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from ms_testkit import ThreadServer

from wharf_model_server import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    PredictorConfig,
)

FORWARDED = {
    "x-request-id": "rid-42",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "authorization": "Bearer token-1",
}


class Predictor(Model):
    """Multiplies by 10 and remembers the headers it was called with."""

    def __init__(self) -> None:
        super().__init__("pipeline")
        self.seen: list[dict[str, str]] = []
        self.ready = True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.seen.append(dict(headers or {}))
        if isinstance(payload, InferRequest):
            x = payload.inputs[0].as_numpy() * 10
            out = InferOutput("y", list(x.shape), "FP64")
            out.set_data_from_numpy(x.astype(np.float64))
            return InferResponse(payload.id, self.name, [out])
        return {"predictions": [[v * 10 for v in row] for row in payload["instances"]]}


class Transformer(Model):
    """Adds 1 before the predictor; speaks V2 to it when asked to."""

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        rows = [[v + 1 for v in row] for row in payload["instances"]]
        if self.protocol == "v1":
            return {"instances": rows}
        tensor = InferInput("x", [len(rows), len(rows[0])], "FP64")
        tensor.set_data_from_numpy(np.asarray(rows, dtype=np.float64), binary_data=False)
        return InferRequest(self.name, [tensor])

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(result, InferResponse):
            return {"predictions": result.outputs[0].as_numpy().tolist()}
        return result


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc-v2"])
def test_transformer_forwards_to_predictor(protocol: str) -> None:
    predictor = Predictor()
    with ThreadServer([predictor]) as upstream:
        host = upstream.grpc_host if protocol == "grpc-v2" else upstream.http_host
        transformer = Transformer(
            "pipeline", PredictorConfig(predictor_host=host, predictor_protocol=protocol)
        )
        transformer.ready = True
        with ThreadServer([transformer]) as front:
            response = httpx.post(
                f"{front.url}/v1/models/pipeline:predict",
                json={"instances": [[1, 2], [3, 4]]},
                headers={**FORWARDED, "x-not-forwarded": "secret"},
                timeout=60,
            )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[20, 30], [40, 50]]}
    (seen,) = predictor.seen
    for key, value in FORWARDED.items():
        assert seen.get(key) == value, (key, seen)
    assert "x-not-forwarded" not in seen


def test_predictor_errors_keep_their_status() -> None:
    predictor = Predictor()
    with ThreadServer([predictor]) as upstream:
        transformer = Transformer("missing", PredictorConfig(predictor_host=upstream.http_host))
        transformer.ready = True
        with ThreadServer([transformer]) as front:
            response = httpx.post(
                f"{front.url}/v1/models/missing:predict", json={"instances": [[1]]}, timeout=60
            )
    assert response.status_code == 404
    assert "missing" in response.json()["error"]


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc-v2"])
def test_predictor_health_check_gates_readiness(protocol: str) -> None:
    with ThreadServer([Predictor()]) as upstream:
        host = upstream.grpc_host if protocol == "grpc-v2" else upstream.http_host

        def transformer(name: str) -> Transformer:
            config = PredictorConfig(
                predictor_host=host, predictor_protocol=protocol, predictor_health_check=True
            )
            model = Transformer(name, config)
            model.ready = True
            return model

        with ThreadServer([transformer("pipeline")]) as front:
            assert httpx.get(f"{front.url}/v2/health/ready").json() == {"ready": True}
        with ThreadServer([transformer("orphan")]) as front:
            ready = httpx.get(f"{front.url}/v2/health/ready")
            assert ready.status_code == 503
            assert httpx.get(f"{front.url}/v2/models/orphan/ready").json()["ready"] is False
