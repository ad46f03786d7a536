"""The local runtime in-process: supervision, crash restarts, rollout, canary, scale to zero.

The processes are the stand-in server from `standin_server.py` (process management only); the
ingress is called through its ASGI interface.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_e2e.testing import until
from wharf_local.home import Home
from wharf_local.ingress import HttpIngress
from wharf_local.runtime import LocalRuntime, Service
from wharf_local.settings import Settings

HOST = "m-default.example.com"
STANDIN = Path(__file__).with_name("standin_server.py")


def standin_runtime() -> dict[str, Any]:
    """A ServingRuntime whose container is the stand-in server (process management tests)."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "standin"},
        "spec": {
            "supportedModelFormats": [{"name": "standin", "autoSelect": True}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "none",
                    "command": [sys.executable],
                    "args": [
                        str(STANDIN),
                        "--model_name={{.Name}}",
                        "--model_dir=/mnt/models",
                        "--http_port=8080",
                        "--grpc_port=8081",
                    ],
                }
            ],
        },
    }


def standin_isvc(name: str, model_dir: Path, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "standin"}, "storageUri": f"file://{model_dir}"},
                **predictor,
            }
        },
    }


def model_dir(root: Path, version: str) -> Path:
    path = root / f"model-{version}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "version.txt").write_text(version)
    return path


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    settings = Settings(autoscale_window_s=0.5, scale_to_zero_after_s=1.0, activation_timeout_s=30)
    rt = LocalRuntime(Home(tmp_path / "home"), settings)
    rt.start()
    yield rt
    await rt.close()


@pytest.fixture
async def client(runtime: LocalRuntime) -> AsyncIterator[httpx.AsyncClient]:
    ingress = HttpIngress(runtime)
    transport = httpx.ASGITransport(app=ingress)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as c:
        yield c
    await ingress.aclose()


def ready(svc: Service) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in svc.conditions) and (
        svc.observed_generation == svc.generation
    )


async def predict(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        "/v1/models/m:predict", json={"instances": [1]}, headers={"host": HOST}
    )


async def test_unknown_service_is_a_clear_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/models/x", headers={"host": "x-default.example.com"})
    assert resp.status_code == 404
    assert "no InferenceService for host 'x-default.example.com'" in resp.json()["error"]


async def test_crash_restarts_with_backoff_and_recovers(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = model_dir(tmp_path, "v1")
    (folder / "crash").write_text("")
    runtime.apply([standin_runtime(), standin_isvc("m", folder)])
    svc = runtime.services[("default", "m")]
    await until(lambda: any(e.reason == "BackOff" for e in svc.events), "a BackOff event")
    await until(
        lambda: any(c.type == "Ready" and c.reason == "CrashLoopBackOff" for c in svc.conditions),
        "Ready=False with reason CrashLoopBackOff",
    )
    backoff = next(e for e in svc.events if e.reason == "BackOff")
    assert "exited with code 3" in backoff.message
    assert "crash requested" in backoff.message  # the log tail says why
    (folder / "crash").unlink()
    await until(lambda: ready(svc), "Ready after the restart")
    resp = await predict(client)
    assert resp.json()["predictions"] == ["v1"]


async def test_changed_model_rolls_out_without_failed_requests(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    runtime.apply([standin_runtime(), standin_isvc("m", model_dir(tmp_path, "v1"))])
    svc = runtime.services[("default", "m")]
    await until(lambda: ready(svc), "v1 ready")
    statuses: Counter[int] = Counter()
    served: Counter[str] = Counter()
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            resp = await predict(client)
            statuses[resp.status_code] += 1
            served[resp.json().get("predictions", ["?"])[0]] += 1

    loops = [asyncio.create_task(loop()) for _ in range(4)]
    await until(lambda: served["v1"] >= 10, "traffic on v1")
    runtime.apply([standin_runtime(), standin_isvc("m", model_dir(tmp_path, "v2"))])
    await until(lambda: ready(svc), "v2 rolled out")
    await until(lambda: len(svc.components["predictor"].revisions) == 1, "v1 drained")
    after_drain = served["v2"]
    await until(lambda: served["v2"] >= after_drain + 10, "traffic on v2 after the drain")
    stop.set()
    await asyncio.gather(*loops)
    assert set(statuses) == {200}, statuses
    assert served["v1"] > 0 and served["v2"] > 0
    comp = svc.components["predictor"]
    assert comp.rollout.latest_rolledout == "m-predictor-00002"
    assert comp.rollout.previous_rolledout == "m-predictor-00001"


async def test_canary_gets_its_percent_of_requests(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    runtime.apply([standin_runtime(), standin_isvc("m", model_dir(tmp_path, "v1"))])
    svc = runtime.services[("default", "m")]
    await until(lambda: ready(svc), "v1 ready")
    canary = standin_isvc("m", model_dir(tmp_path, "v2"), canaryTrafficPercent=20)
    runtime.apply([standin_runtime(), canary])
    await until(lambda: ready(svc), "canary ready")
    revisions: Counter[str] = Counter()
    for _ in range(50):
        resp = await predict(client)
        revisions[resp.headers["x-wharf-revision"]] += 1
    assert revisions == {"m-predictor-00002": 10, "m-predictor-00001": 40}
    # promotion: drop the percent; the canary takes everything and the old revision drains
    runtime.apply([standin_runtime(), standin_isvc("m", model_dir(tmp_path, "v2"))])
    await until(lambda: len(svc.components["predictor"].revisions) == 1, "v1 drained")
    resp = await predict(client)
    assert resp.headers["x-wharf-revision"] == "m-predictor-00002"


async def test_scale_to_zero_then_the_activator_holds_the_first_request(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    isvc = standin_isvc("m", model_dir(tmp_path, "v1"), minReplicas=0, maxReplicas=2)
    runtime.apply([standin_runtime(), isvc])
    svc = runtime.services[("default", "m")]
    await until(lambda: ready(svc), "ready")
    rev = next(iter(svc.components["predictor"].revisions.values()))
    await until(lambda: not rev.replicas, "scaled to zero")
    assert ready(svc)  # a revision at zero is still Ready, as in Knative
    resp = await predict(client)
    assert resp.status_code == 200
    assert resp.json()["predictions"] == ["v1"]
    assert [e.message for e in svc.events if e.reason == "Scaled"][-1] == "0 -> 1 replicas"


async def test_concurrency_adds_replicas_up_to_max(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = model_dir(tmp_path, "v1")
    (folder / "delay.txt").write_text("0.3")
    isvc = standin_isvc(
        "m", folder, minReplicas=1, maxReplicas=3, scaleMetric="concurrency", scaleTarget=1
    )
    runtime.apply([standin_runtime(), isvc])
    svc = runtime.services[("default", "m")]
    await until(lambda: ready(svc), "ready")
    rev = next(iter(svc.components["predictor"].revisions.values()))
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            assert (await predict(client)).status_code == 200

    loops = [asyncio.create_task(loop()) for _ in range(6)]
    await until(lambda: len(rev.ready_replicas()) == 3, "3 ready replicas")
    stop.set()
    await asyncio.gather(*loops)
    await until(lambda: len(rev.replicas) == 1, "back to minReplicas")


async def test_a_second_service_with_the_same_uri_downloads_nothing(
    runtime: LocalRuntime, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = model_dir(tmp_path, "from-http")
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            requests.append(self.command)

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{server.server_address[1]}/version.txt"
    try:
        first = standin_isvc("m", folder)
        first["spec"]["predictor"]["model"]["storageUri"] = uri
        runtime.apply([standin_runtime(), first])
        svc = runtime.services[("default", "m")]
        await until(lambda: ready(svc), "the first service ready")
        assert (await predict(client)).json()["predictions"] == ["from-http"]
        fetched = len(requests)
        assert fetched > 0
        second = standin_isvc("other", folder)
        second["spec"]["predictor"]["model"]["storageUri"] = uri
        runtime.apply([second])
        other = runtime.services[("default", "other")]
        await until(lambda: ready(other), "the second service ready")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(requests) == fetched
    first_event, second_event = (
        next(e.message for e in s.events if e.reason == "ModelReady") for s in (svc, other)
    )
    assert "nothing downloaded" not in first_event and "downloaded" in first_event
    assert "nothing downloaded" in second_event


async def test_transformer_reaches_the_predictor_through_the_ingress(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # the transformer calls the predictor over a real socket: the ingress must listen
    import uvicorn

    from wharf_local.routing import route

    ingress = HttpIngress(runtime)
    config = uvicorn.Config(ingress, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started, "the ingress to listen")
    port = server.servers[0].sockets[0].getsockname()[1]
    runtime.settings = Settings(ingress_port=port)
    isvc = standin_isvc("m", model_dir(tmp_path, "v1"))
    isvc["spec"]["transformer"] = {
        "containers": [{"name": "t", "command": [sys.executable, str(STANDIN)]}]
    }
    try:
        runtime.apply([standin_runtime(), isvc])
        svc = runtime.services[("default", "m")]
        await until(lambda: ready(svc), "transformer and predictor ready")
        assert {c.type for c in svc.conditions} >= {"TransformerReady", "PredictorReady"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            resp = await c.post("/v1/models/m:predict", json={"x": 1}, headers={"host": HOST})
        assert resp.headers["x-wharf-revision"] == "m-transformer-00001"
        body = resp.json()
        assert body["transformed"]["predictions"] == ["v1"]
        assert body["via"].endswith("/serving/default/m-predictor/v1/models/m:predict")
        assert route(None, "/serving/default/m-predictor/x", runtime.hosts) is not None
    finally:
        server.should_exit = True
        await serving
        await ingress.aclose()


async def test_secrets_in_a_storage_uri_stay_out_of_events_and_status(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    isvc = standin_isvc("m", tmp_path)
    # A SAS-style token and user info: the download fails (nothing listens on port 9), and
    # neither may appear in what `wharf describe` shows.
    uri = "https://user:hunter2@127.0.0.1:9/model.joblib?sv=2024&sig=SECRETSIG"
    isvc["spec"]["predictor"]["model"]["storageUri"] = uri
    runtime.apply([standin_runtime(), isvc])
    svc = runtime.services[("default", "m")]
    await until(
        lambda: any(e.reason == "ModelDownloadFailed" for e in svc.events), "the download failure"
    )
    described = runtime.describe(svc)
    # The spec is the user's own manifest (as `kubectl get -o yaml` shows it); what Wharf
    # writes itself, status and events, must not repeat the secrets.
    shown = repr(described["status"]) + repr([e.message for e in svc.events])
    assert "127.0.0.1:9/model.joblib" in shown
    assert "hunter2" not in shown
    assert "SECRETSIG" not in shown
