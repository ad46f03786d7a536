"""The KServe-style custom model API: sync and async handlers, sync code off the event loop,
response headers, the argparse parent, explain."""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import uuid
from typing import Any

import httpx
from ms_testkit import ThreadServer

from wharf_model_server import InferRequest, Model, model_server


class SyncModel(Model):
    """A KServe example shape: load() in __init__, sync predict returning a V1 dict."""

    def __init__(self, name: str) -> None:
        super().__init__(name, return_response_headers=True)
        self.loop_thread: int | None = None
        self.predict_thread: int | None = None
        self.release = threading.Event()
        self.entered = threading.Event()
        self.block = False
        self.load()

    def load(self) -> bool:
        self.weights = 3
        self.ready = True
        return self.ready

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.loop_thread = threading.get_ident()
        return payload

    def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        self.predict_thread = threading.get_ident()
        if self.block:
            self.entered.set()
            assert self.release.wait(60)
        if response_headers is not None:
            response_headers["x-model-says"] = "hi"
        return {"predictions": [v * self.weights for v in payload["instances"]]}

    def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"explanations": ["because"] * len(payload["instances"])}


class AsyncModel(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        await asyncio.sleep(0)
        if isinstance(payload, InferRequest):
            # A V2 answer as a plain dict is sent as JSON, as in KServe.
            data = payload.inputs[0].as_numpy().tolist()
            return {"model_name": self.name, "outputs": [{"name": "echo", "data": data}]}
        return {"predictions": payload["instances"][::-1]}


def test_sync_and_async_models() -> None:
    sync_model, async_model = SyncModel("sync"), AsyncModel("async")
    with ThreadServer([sync_model, async_model]) as server:
        sync_reply = httpx.post(f"{server.url}/v1/models/sync:predict", json={"instances": [1, 2]})
        async_reply = httpx.post(
            f"{server.url}/v1/models/async:predict", json={"instances": [1, 2]}
        )
        v2_body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [7, 8]}]}
        v2_reply = httpx.post(f"{server.url}/v2/models/async/infer", json=v2_body)
        explained = httpx.post(f"{server.url}/v1/models/sync:explain", json={"instances": [1]})
    assert sync_reply.json() == {"predictions": [3, 6]}
    assert sync_reply.headers["x-model-says"] == "hi"
    assert async_reply.json() == {"predictions": [2, 1]}
    assert v2_reply.json()["outputs"][0]["data"] == [7, 8]
    assert explained.json() == {"explanations": ["because"]}


def test_sync_predict_runs_off_the_event_loop() -> None:
    model = SyncModel("blocking")
    model.block = True
    with ThreadServer([model]) as server, httpx.Client(timeout=60) as client:
        result: dict[str, Any] = {}

        def call() -> None:
            result["reply"] = client.post(
                f"{server.url}/v1/models/blocking:predict", json={"instances": [1]}
            )

        caller = threading.Thread(target=call)
        caller.start()
        assert model.entered.wait(60)
        # predict is blocked; the loop must still answer.
        live = httpx.get(f"{server.url}/v2/health/live", timeout=10)
        assert live.json() == {"live": True}
        model.release.set()
        caller.join(60)
    assert result["reply"].json() == {"predictions": [3]}
    assert model.loop_thread is not None and model.predict_thread is not None
    assert model.predict_thread != model.loop_thread


def test_argparse_parent_like_kserve() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--custom_flag", default="x")
    args, _ = parser.parse_known_args(
        ["--model_name", "custom", "--http_port", "9000", "--workers", "1", "--custom_flag", "y"]
    )
    assert (args.model_name, args.http_port, args.grpc_port, args.custom_flag) == (
        "custom",
        9000,
        8081,
        "y",
    )
    assert args.enable_docs_url is False
    assert args.max_threads == 4


def test_docs_url_when_enabled() -> None:
    with ThreadServer([AsyncModel("documented")], enable_docs_url=True) as server:
        assert httpx.get(f"{server.url}/docs").status_code == 200
        schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v2/models/{model_name}/infer" in schema["paths"]
    assert "InferenceRequest" in schema["components"]["schemas"]
    with ThreadServer([AsyncModel("undocumented")]) as server:
        assert httpx.get(f"{server.url}/docs").status_code == 404


class BytesModel(Model):
    def __init__(self) -> None:
        super().__init__("raw")
        self.ready = True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        assert isinstance(payload, bytes)
        return {"predictions": [len(payload)]}


def test_v1_non_json_body_reaches_the_model_as_bytes() -> None:
    with ThreadServer([BytesModel()]) as server:
        reply = httpx.post(
            f"{server.url}/v1/models/raw:predict",
            content=b"\x89PNG\r\n",
            headers={"content-type": "image/png"},
        )
        bad_json = httpx.post(
            f"{server.url}/v1/models/raw:predict",
            content=b"{",
            headers={"content-type": "application/json"},
        )
    assert reply.json() == {"predictions": [6]}
    assert bad_json.status_code == 400


def test_kserve_module_names_exist() -> None:
    # KServe examples import these names; porting changes only the package.
    from wharf_model_server import logging as wharf_logging
    from wharf_model_server.errors import InvalidInput, ModelMissingError
    from wharf_model_server.utils import generate_uuid, get_predict_input

    assert callable(wharf_logging.configure_logging)
    assert InvalidInput("x").http_status == 400
    assert str(ModelMissingError("/m")) == "no model file found in /m"
    assert len(generate_uuid()) == 36
    assert get_predict_input({"instances": [[1, 2]]}).shape == (1, 2)


def test_generate_uuid_is_what_uuid_makes_of_the_same_random_bits() -> None:
    from wharf_model_server.utils import generate_uuid

    for seed in range(200):
        random.seed(seed)
        made = generate_uuid()
        random.seed(seed)
        assert made == str(uuid.UUID(int=random.getrandbits(128), version=4))
        assert uuid.UUID(made).version == 4
        assert uuid.UUID(made).variant == uuid.RFC_4122
    random.seed()
    assert len({generate_uuid() for _ in range(1000)}) == 1000


def test_v1_cloudevents_in_both_modes() -> None:
    with ThreadServer([AsyncModel("ce")]) as server:
        binary = httpx.post(
            f"{server.url}/v1/models/ce:predict",
            json={"instances": [1, 2]},
            headers={
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "test",
                "ce-type": "org.example.request",
            },
        )
        structured = httpx.post(
            f"{server.url}/v1/models/ce:predict",
            json={
                "specversion": "1.0",
                "id": "2",
                "source": "test",
                "type": "org.example.request",
                "time": "2026-11-23T00:00:00Z",
                "data": {"instances": [3, 4]},
            },
            headers={"content-type": "application/cloudevents+json"},
        )
    assert binary.json() == {"predictions": [2, 1]}
    assert binary.headers["ce-type"] == "io.kserve.inference.response"
    assert binary.headers["ce-source"] == "io.kserve.inference.ce"
    assert structured.headers["content-type"] == "application/cloudevents+json"
    envelope = structured.json()
    assert envelope["data"] == {"predictions": [4, 3]}
    assert envelope["specversion"] == "1.0"
