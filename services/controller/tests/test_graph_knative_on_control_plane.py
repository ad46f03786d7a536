"""An InferenceGraph in Knative mode against a real API server: the controller creates one
Knative Service running the router (owned by the graph; no Deployment, Service or route of its
own), the graph is not Ready until Knative says so, then Ready with Knative's URL.

No Knative controller runs on the test control plane (Knative is not installable here), so the
test writes the Knative Service's status itself, as Knative would once the revision is ready.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from wharf_controller.controller import Controller
from wharf_controller.graph_controller import GraphController
from wharf_controller.kube.api import KNATIVE_SERVICE, Api
from wharf_e2e.crds import load_crd, third_party_crd_file
from wharf_e2e.kube import Kube, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[3]
WHARF_CRDS = [
    *(
        REPO / "deploy" / "base" / "crds" / f"serving.kserve.io_{plural}.yaml"
        for plural in (
            "inferenceservices",
            "inferencegraphs",
            "servingruntimes",
            "clusterservingruntimes",
            "clusterstoragecontainers",
        )
    ),
]
GRAPH = "serving.kserve.io/v1alpha1"
KSVC = "serving.knative.dev/v1"


@pytest.fixture
async def controllers(
    kube: Kube, kube_namespace: str
) -> AsyncIterator[tuple[Controller, GraphController]]:
    # KServe's, then the real Knative Service CRD (e2e/cluster/third-party-crds.sh)
    for path in [*WHARF_CRDS, third_party_crd_file("serving.knative.dev_services.yaml")]:
        crd = load_crd(path)
        await kube.install_crd(crd)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": kube_namespace},
        "data": {
            # KServe's shipped default: a graph without the annotation runs in Knative mode
            "deploy": json.dumps({"defaultDeploymentMode": "Serverless"}),
            "router": json.dumps({"image": "router:test"}),
        },
    }
    await kube.apply(configmap, namespace=kube_namespace)
    services = Controller(Api(kube.api), config_namespace=kube_namespace, workers=1, resync_s=3600)
    graphs = GraphController(services, workers=1)
    await services.start_caches()
    await graphs.start_caches()
    await services.start_workers()
    await graphs.start_workers()
    yield services, graphs
    await graphs.stop()
    await services.stop()


def _ready(obj: dict[str, Any] | None) -> dict[str, Any]:
    conditions = (obj or {}).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def test_a_knative_graph_runs_in_one_knative_service_ready_when_knative_says(
    kube: Kube, controllers: tuple[Controller, GraphController], kube_namespace: str
) -> None:
    ns = kube_namespace
    graph = {
        "apiVersion": GRAPH,
        "kind": "InferenceGraph",
        "metadata": {"name": "chain"},
        "spec": {
            "maxReplicas": 3,
            "nodes": {
                "root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://x/predict"}]}
            },
        },
    }
    created = await kube.apply(graph, namespace=ns)

    ksvc = await wait_for(partial(kube.get, KSVC, "Service", "chain", ns), "the Knative Service")
    assert ksvc["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    template = ksvc["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "router:test"
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "3"
    assert await kube.get("apps/v1", "Deployment", "chain", ns) is None

    async def not_ready() -> dict[str, Any]:
        got = await kube.get(GRAPH, "InferenceGraph", "chain", ns) or {}
        return got if _ready(got).get("reason") == "RouterNotReady" else {}

    waiting = await wait_for(not_ready, "the graph waiting for Knative")
    assert waiting["status"]["deploymentMode"] == "Knative"
    assert "url" not in waiting["status"]

    # what Knative's controller would write once the revision is ready
    url = f"http://chain.{ns}.models.test"
    status = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "url": url,
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t in ("ConfigurationsReady", "Ready", "RoutesReady")
        ],
    }
    await Api(kube.api).request(
        "PATCH",
        KNATIVE_SERVICE.path(ns, "chain") + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )

    async def ready() -> dict[str, Any]:
        got = await kube.get(GRAPH, "InferenceGraph", "chain", ns) or {}
        return got if _ready(got).get("status") == "True" else {}

    done = await wait_for(ready, "the graph Ready")
    assert done["status"]["url"] == url
    assert done["status"]["deploymentMode"] == "Knative"
