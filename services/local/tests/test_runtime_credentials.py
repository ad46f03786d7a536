"""Storage credentials and download events in `wharf up`: a Secret and a ServiceAccount applied
with the InferenceService reach the download as KServe's storage initializer gets them, and
retries show as events. A real S3 server (moto) and a real HTTP server on loopback."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from wharf_e2e.testing import free_port, until
from wharf_local.home import Home
from wharf_local.runtime import LocalRuntime, Service
from wharf_local.settings import Settings

STANDIN = Path(__file__).with_name("standin_server.py")
KEY_ID, SECRET_KEY = "AKIDWHARFTEST", "wharf-secret-value-not-to-be-shown"


def standin_runtime() -> dict[str, Any]:
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


def isvc(uri: str, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "standin"}, "storageUri": uri},
                **predictor,
            }
        },
    }


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    rt = LocalRuntime(Home(tmp_path / "home"), Settings(activation_timeout_s=30))
    rt.start()
    yield rt
    await rt.close()


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # nothing in this process's environment points at the server: only the Secret does
    for var in ("AWS_ENDPOINT_URL", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="iris/version.txt", Body=b"from-s3")
    yield f"{host}:{port}"
    server.stop()


def ready_reason(svc: Service) -> tuple[str, str | None]:
    cond = next((c for c in svc.conditions if c.type == "Ready"), None)
    return (cond.status, cond.reason) if cond else ("Unknown", None)


def secret(endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s3creds",
            "annotations": {
                "serving.kserve.io/s3-endpoint": endpoint,
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": "us-east-1",
            },
        },
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
    }


SERVICE_ACCOUNT = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {"name": "sa"},
    "secrets": [{"name": "s3creds"}],
}


async def test_service_account_secrets_reach_the_download(
    runtime: LocalRuntime, s3_endpoint: str
) -> None:
    docs = [secret(s3_endpoint), SERVICE_ACCOUNT, standin_runtime(),
            isvc("s3://models/iris", serviceAccountName="sa")]  # fmt: skip
    results = runtime.apply(docs)
    assert [(r.kind, r.action) for r in results] == [
        ("Secret", "created"),
        ("ServiceAccount", "created"),
        ("ServingRuntime", "created"),
        ("InferenceService", "created"),
    ]
    svc = runtime.services[("default", "m")]
    await until(lambda: ready_reason(svc) == ("True", None), "ready from S3")
    shown = repr(runtime.describe(svc)["status"]) + repr([e.message for e in svc.events])
    assert SECRET_KEY not in shown


async def test_without_the_service_account_the_endpoint_is_unknown(
    runtime: LocalRuntime, s3_endpoint: str
) -> None:
    runtime.apply([secret(s3_endpoint), standin_runtime(), isvc("s3://models/iris")])
    svc = runtime.services[("default", "m")]
    await until(lambda: ready_reason(svc)[1] == "ModelDownloadFailed", "the download to fail")


async def test_a_missing_secret_is_named(runtime: LocalRuntime) -> None:
    runtime.apply([SERVICE_ACCOUNT, standin_runtime(), isvc("s3://models/iris", serviceAccountName="sa")])  # fmt: skip
    svc = runtime.services[("default", "m")]
    await until(lambda: ready_reason(svc)[1] == "ModelDownloadFailed", "the failure")
    message = next(c.message for c in svc.conditions if c.type == "Ready") or ""
    assert "s3creds" in message


def test_other_kinds_are_skipped_with_a_note(tmp_path: Path) -> None:
    rt = LocalRuntime(Home(tmp_path / "home"), Settings())
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    results = rt.apply([config_map, deployment])
    assert [r.action for r in results] == ["skipped", "skipped"]
    assert all(r.error is None and r.note and "not a kind wharf runs" in r.note for r in results)
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "../up"}}
    [invalid] = rt.apply([bad])
    assert invalid.action == "invalid" and "metadata.namespace" in (invalid.error or "")


class FlakyOnce(SimpleHTTPRequestHandler):
    failures: list[int]

    def do_GET(self) -> None:
        if self.failures:
            self.send_error(self.failures.pop())
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


async def test_download_retries_show_as_events(runtime: LocalRuntime, tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "version.txt").write_text("v1")
    handler = type("H", (FlakyOnce,), {"failures": [503]})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/version.txt"
        runtime.apply([standin_runtime(), isvc(uri)])
        svc = runtime.services[("default", "m")]
        await until(lambda: ready_reason(svc) == ("True", None), "ready after a retry")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    retries = [e for e in svc.events if e.reason == "DownloadRetry"]
    assert retries and "attempt 1" in retries[0].message and retries[0].type == "Warning"
