"""The daemon's control API in-process: malformed /apply bodies, and every kind it applies can be
listed, read and deleted (built-in ClusterServingRuntimes are listed but never deleted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_local.daemon import control_app
from wharf_local.home import Home
from wharf_local.runtime import LocalRuntime
from wharf_local.settings import Settings

REPO = Path(__file__).resolve().parents[3]


def runtime_doc(kind: str = "ServingRuntime", name: str = "team-sklearn") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": [{"name": "kserve-container", "image": "x", "args": ["--a"]}],
        },
    }


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    home = Home(tmp_path / "home")
    home.root.mkdir(parents=True)
    runtime = LocalRuntime(home, Settings())
    app = control_app(runtime, asyncio.Event(), home)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://wharf"
    ) as client:
        yield client
    await runtime.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[]", 'a JSON object with "documents"'),
        (b'{"docs": []}', 'a JSON object with "documents"'),
        (b'{"documents": {"kind": "InferenceService"}}', '"documents" must be a list'),
        (b'{"documents": [3]}', "documents[0] must be a mapping"),
        (b'{"documents": [{"kind": "InferenceService", "metadata": []}]}', "metadata must be"),
    ],
)
async def test_a_malformed_apply_is_a_400_with_the_reason(
    api: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    resp = await api.post("/apply", content=body)
    assert resp.status_code == 400, resp.text
    assert reason in resp.json()["error"]


async def test_serving_runtimes_are_listed_read_and_deleted(api: httpx.AsyncClient) -> None:
    applied = await api.post("/apply", json={"documents": [runtime_doc()]})
    assert applied.json()["results"][0]["action"] == "created"
    listed = (await api.get("/objects", params={"kind": "ServingRuntime"})).json()["items"]
    assert [i["metadata"]["name"] for i in listed] == ["team-sklearn"]
    assert listed[0]["metadata"]["namespace"] == "default"
    elsewhere = await api.get("/objects", params={"kind": "ServingRuntime", "namespace": "x"})
    assert elsewhere.json()["items"] == []
    one = await api.get("/objects/ServingRuntime/team-sklearn", params={"namespace": "default"})
    assert one.status_code == 200
    assert one.json()["spec"]["containers"][0]["args"] == ["--a"]
    gone = await api.delete("/objects/ServingRuntime/team-sklearn")
    assert gone.status_code == 200
    assert (await api.get("/objects", params={"kind": "ServingRuntime"})).json()["items"] == []
    again = await api.delete("/objects/ServingRuntime/team-sklearn")
    assert again.status_code == 404
    assert "not found" in again.json()["error"]


async def test_cluster_runtimes_include_the_builtins_which_cannot_be_deleted(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/apply", json={"documents": [runtime_doc("ClusterServingRuntime", "mine")]})
    listed = (await api.get("/objects", params={"kind": "ClusterServingRuntime"})).json()["items"]
    builtin = {i["metadata"]["name"]: i.get("local", {}).get("builtin") for i in listed}
    assert builtin["kserve-sklearnserver"] is True
    assert builtin["mine"] is False
    refused = await api.delete("/objects/ClusterServingRuntime/kserve-sklearnserver")
    assert refused.status_code == 409
    assert "built in" in refused.json()["error"]
    assert (await api.delete("/objects/ClusterServingRuntime/mine")).status_code == 200
    names = [
        i["metadata"]["name"]
        for i in (await api.get("/objects", params={"kind": "ClusterServingRuntime"})).json()[
            "items"
        ]
    ]
    assert "mine" not in names and "kserve-sklearnserver" in names
