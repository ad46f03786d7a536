"""The InferenceGraph controller against a real API server (etcd, kube-apiserver,
kube-controller-manager with its garbage collector, kwok running the pods): a graph whose
InferenceService does not exist yet says so; once it has an address, the router Deployment and
Service appear with owner references, the graph becomes Ready with its URL, and deleting the
graph garbage-collects them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_controller.controller import Controller
from wharf_controller.graph_controller import GraphController
from wharf_controller.kube.api import Api
from wharf_e2e.kube import Kube, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
CRDS = [
    REPO / "deploy" / "base" / "crds" / f"serving.kserve.io_{plural}.yaml"
    for plural in (
        "inferenceservices",
        "inferencegraphs",
        "servingruntimes",
        "clusterservingruntimes",
        "clusterstoragecontainers",
    )
]
RUNTIME = REPO / "deploy" / "base" / "runtimes" / "kserve-sklearnserver.yaml"
GRAPH = "serving.kserve.io/v1alpha1"
ISVC = "serving.kserve.io/v1beta1"


def _configmap(namespace: str, router_image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": namespace},
        "data": {
            "deploy": json.dumps({"defaultDeploymentMode": "Standard"}),
            # an Ingress: the Gateway API CRDs are not needed here
            "ingress": json.dumps({"ingressDomain": "models.test", "ingressClassName": "nginx"}),
            "router": json.dumps({"image": router_image}),
        },
    }


@pytest.fixture
async def controllers(
    kube: Kube, kube_namespace: str
) -> AsyncIterator[tuple[Controller, GraphController]]:
    for path in CRDS:
        crd = yaml.safe_load(path.read_text())
        await kube.install_crd(crd)
    await kube.apply(yaml.safe_load(RUNTIME.read_text()))
    await kube.apply(_configmap(kube_namespace, "router:test"), namespace=kube_namespace)
    services = Controller(Api(kube.api), config_namespace=kube_namespace, workers=1, resync_s=3600)
    graphs = GraphController(services, workers=1)
    await services.start_caches()
    await graphs.start_caches()
    await services.start_workers()
    await graphs.start_workers()
    yield services, graphs
    await graphs.stop()
    await services.stop()


def _graph() -> dict[str, Any]:
    return {
        "apiVersion": GRAPH,
        "kind": "InferenceGraph",
        "metadata": {"name": "chain"},
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 1,
            "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "iris"}]}},
        },
    }


def _isvc() -> dict[str, Any]:
    return {
        "apiVersion": ISVC,
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/iris"}
            }
        },
    }


async def _async(value: bool) -> bool:
    return value


async def _idle(services: Controller, graphs: GraphController) -> None:
    """Wait until both queues are empty and no worker holds a key."""

    def idle() -> bool:
        return all(len(q) == 0 and not q._processing for q in (services.queue, graphs.queue))

    await wait_for(lambda: _async(idle()), "idle queues")


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_a_graph_waits_for_its_service_then_runs_its_router_until_deleted(
    kube: Kube, controllers: tuple[Controller, GraphController], kube_namespace: str
) -> None:
    ns = kube_namespace

    async def get(api_version: str, kind: str, name: str) -> dict[str, Any]:
        return await kube.get(api_version, kind, name, ns) or {}

    created = await kube.apply(_graph(), namespace=ns)
    uid = created["metadata"]["uid"]

    # the step's InferenceService does not exist: the status names it, no router is made
    async def waiting() -> dict[str, Any]:
        got = await get(GRAPH, "InferenceGraph", "chain")
        return got if _ready(got).get("reason") == "ServiceNotFound" else {}

    got = await wait_for(waiting, "Ready=False naming the missing InferenceService")
    assert _ready(got)["message"] == (
        "spec.nodes.root.steps[0].serviceName: InferenceService iris not found"
    )
    assert not await get("apps/v1", "Deployment", "chain")

    # the InferenceService appears; once it has an address the router is made
    await kube.apply(_isvc(), namespace=ns)
    deployment = await wait_for(partial(get, "apps/v1", "Deployment", "chain"), "the router")
    for api_version, kind in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "Ingress"),
    ]:
        child = await wait_for(partial(get, api_version, kind, "chain"), kind)
        refs = child["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == uid and refs[0]["controller"] is True, kind
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "router:test"
    sent = json.loads(container["args"][1])
    assert sent["nodes"]["root"]["steps"][0]["serviceUrl"] == (
        f"http://iris-predictor.{ns}.svc.cluster.local/v1/models/iris:predict"
    )
    assert deployment["spec"]["replicas"] == 1  # min == max: no HPA

    async def ready() -> dict[str, Any]:
        got = await get(GRAPH, "InferenceGraph", "chain")
        return got if _ready(got).get("status") == "True" else {}

    graph = await wait_for(ready, "the graph Ready", within=90)
    assert graph["status"]["url"] == f"http://chain-{ns}.models.test"
    assert graph["status"]["observedGeneration"] == 1

    # once the InferenceService is Ready too, a resync of the graph writes nothing
    async def service_ready() -> dict[str, Any]:
        got = await get(ISVC, "InferenceService", "iris")
        return got if _ready(got).get("status") == "True" else {}

    await wait_for(service_ready, "the InferenceService Ready", within=90)
    services, graphs = controllers
    await _idle(services, graphs)
    writes, runs = services.api.writes_in(ns), graphs.reconciled
    graphs._enqueue_all()
    await wait_for(lambda: _async(graphs.reconciled > runs), "a resync reconcile")
    await _idle(services, graphs)
    assert services.api.writes_in(ns) == writes

    # a new router image in the ConfigMap rolls out to the graph
    await kube.apply(_configmap(ns, "router:test2"), namespace=ns)

    async def rolled() -> bool:
        dep = await get("apps/v1", "Deployment", "chain")
        return bool(dep) and dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "router:test2"
        )

    await wait_for(rolled, "the new router image")

    # deleting the graph garbage-collects its router (kube-controller-manager's collector)
    await kube.delete(GRAPH, "InferenceGraph", "chain", ns)

    async def collected() -> bool:
        return not await get("apps/v1", "Deployment", "chain") and not await get(
            "v1", "Service", "chain"
        )

    await wait_for(collected, "the router garbage-collected", within=90)
    # the InferenceService is not the graph's: it stays
    assert await get(ISVC, "InferenceService", "iris")
