"""An InferenceGraph under `wharf up`, as a user runs it: the CLI, the daemon, the real router
and the real model server. The graph and its InferenceService go up from one file; the graph
answers through the ingress by Host and by path; get, describe and delete handle it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wharf_e2e.servers import WharfDaemon, make_iris
from wharf_e2e.testing import wait_until

# `up` starts a model server and a router; a loaded machine takes minutes
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

BODY = {"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}
HOST = "chain-default.example.com"


def manifests(model: Path) -> str:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"sklearn": {"storageUri": model.as_uri()}}},
    }
    graph = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "chain"},
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Ensemble",
                    "steps": [
                        {"name": "direct", "serviceName": "iris"},
                        {"name": "chained", "nodeName": "twice"},
                    ],
                },
                "twice": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "iris"},
                        {"serviceName": "iris", "data": "$request", "dependency": "Hard"},
                    ],
                },
            }
        },
    }
    return "---\n".join(json.dumps(doc) + "\n" for doc in (isvc, graph))


@pytest.fixture(scope="module")
def wharf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfDaemon]:
    root = tmp_path_factory.mktemp("graph-up")
    # a graph whose service is missing holds its requests this long
    daemon = WharfDaemon(root, WHARF_ACTIVATION_TIMEOUT="2")
    model = make_iris(root / "iris")
    (root / "all.yaml").write_text(manifests(model))
    try:
        yield daemon
    finally:
        daemon.down()


def ingress(wharf: WharfDaemon) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{wharf.port}", timeout=60)


def item(wharf: WharfDaemon, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(wharf.run("get", *args, "-o", "json", timeout_s=60))
    return out


def test_up_applies_the_graph_and_waits_for_ready(wharf: WharfDaemon) -> None:
    out = wharf.run("up", "-f", str(wharf.root / "all.yaml"))
    assert "inferenceservice/iris created" in out
    assert "inferencegraph/chain created" in out
    assert f"chain is ready: http://{HOST}" in out
    assert f"curl -H 'Host: {HOST}'" in out


def test_the_graph_answers_through_the_ingress_by_host_and_by_path(wharf: WharfDaemon) -> None:
    with ingress(wharf) as client:
        iris = client.post(
            "/v1/models/iris:predict", json=BODY, headers={"host": "iris-default.example.com"}
        ).json()
        by_host = client.post("/", json=BODY, headers={"host": HOST})
        assert by_host.status_code == 200, by_host.text
        assert by_host.json() == {"direct": iris, "chained": iris}
        assert by_host.headers["x-wharf-revision"] == "chain"
        by_path = client.post("/serving/default/chain/", json=BODY)
        assert by_path.status_code == 200, by_path.text
        assert by_path.json() == by_host.json()


def test_get_lists_every_served_kind_and_describe_shows_the_router(wharf: WharfDaemon) -> None:
    table = wharf.run("get")
    blocks = table.split("\n\n")
    assert blocks[0].splitlines()[0].split() == ["NAME", "URL", "READY", "PREV", "LATEST", "AGE"]
    assert blocks[1].splitlines()[0].split() == ["NAME", "URL", "READY", "AGE"]
    assert blocks[1].splitlines()[1].split()[:3] == ["chain", f"http://{HOST}", "True"]
    everywhere = wharf.run("get", "-A").splitlines()
    assert everywhere[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == ["default", "chain"] for line in everywhere)
    graph = item(wharf, "ig", "chain")
    assert graph["status"]["url"] == f"http://{HOST}"
    assert graph["local"]["router"]["state"] == "ready"
    described = wharf.run("describe", "ig", "chain")
    assert "Router:      ready" in described
    assert "twice (Sequence):" in described
    logs = wharf.run("logs", "ig", "chain", "--tail", "5")
    assert "==> router.log <==" in logs


def test_a_graph_naming_a_missing_service_waits_for_it(wharf: WharfDaemon) -> None:
    graph = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "orphan"},
        "spec": {
            "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "ghost"}]}}
        },
    }
    path = wharf.root / "orphan.json"
    path.write_text(json.dumps(graph))
    assert "inferencegraph/orphan created" in wharf.run("up", "-f", str(path), "--no-wait")
    found = item(wharf, "ig", "orphan")
    ready = found["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ServiceNotFound")
    assert "ghost" in ready["message"]
    assert found["local"]["router"]["pid"] is None
    assert "Waiting for: ghost" in wharf.run("describe", "ig", "orphan")
    with ingress(wharf) as client:
        held = client.post(
            "/", json=BODY, headers={"host": "orphan-default.example.com"}, timeout=None
        )
    # the ingress holds the request for WHARF_ACTIVATION_TIMEOUT, then answers 503 naming why
    assert held.status_code == 503
    assert "InferenceService not found: ghost" in held.text
    wharf.run("delete", "ig", "orphan")


def test_delete_stops_the_router_and_the_host_is_gone(wharf: WharfDaemon) -> None:
    pid = item(wharf, "ig", "chain")["local"]["router"]["pid"]
    out = wharf.run("delete", "ig", "chain")
    assert 'inferencegraph "chain" deleted' in out

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"

    wait_until(gone, "the router process to exit", 30)
    with ingress(wharf) as client:
        assert client.post("/", json=BODY, headers={"host": HOST}).status_code == 404
    assert "chain" not in wharf.run("get", "ig")
