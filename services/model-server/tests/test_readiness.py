"""Server readiness follows the models: a server holding no ready model is not ready, on REST
and gRPC, and is ready again once a model is loaded."""

from __future__ import annotations

import grpc
import httpx
from ms_testkit import ServerProcess, ThreadServer

from wharf_model_server import Model
from wharf_protocol.grpc import pb, pb_grpc


class Constant(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def predict(self, payload: object, headers: dict[str, str] | None = None) -> object:
        return {"predictions": [0]}


def _grpc_ready(host: str) -> bool:
    with grpc.insecure_channel(host) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready)


def test_unloading_the_only_model_makes_the_server_not_ready() -> None:
    with ThreadServer([Constant("only")]) as server:
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        assert _grpc_ready(server.grpc_host)
        unloaded = httpx.post(f"{server.url}/v2/repository/models/only/unload")
        assert unloaded.json() == {"name": "only", "unload": True}
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False}
        assert not _grpc_ready(server.grpc_host)
        # still live: the process is fine, it just has nothing to serve
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_a_server_with_a_model_not_ready_is_not_ready() -> None:
    model = Constant("warming")
    with ThreadServer([model, Constant("other")]) as server:
        model.ready = False
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
        model.ready = True
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_a_multi_model_server_stays_ready_while_other_models_remain(
    multi_server: ServerProcess,
) -> None:
    with grpc.insecure_channel(multi_server.grpc_host) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="xgboost-iris"))
        try:
            assert _grpc_ready(multi_server.grpc_host)
            assert httpx.get(f"{multi_server.url}/v2/health/ready").status_code == 200
        finally:
            stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name="xgboost-iris"), timeout=120
            )
        assert stub.ModelReady(pb.ModelReadyRequest(name="xgboost-iris"), timeout=30).ready
