"""An InferenceGraph in Knative mode, pure: one Knative Service running the router as KServe's
Knative graph reconciler makes it (the Standard mode's container, Knative's autoscaling
annotations, no route of ours), its revision pod valid for the pinned Kubernetes minor, and the
graph's status from the Knative Service (Ready and the URL only once Knative says so)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from wharf_api import default, load_documents, parse_object
from wharf_api.config import from_configmap_data
from wharf_api.crdgen.k8s_schemas import KUBERNETES_MINOR
from wharf_api.graph import Endpoint, Unresolved, resolve_steps
from wharf_api.resources.inference_graph import InferenceGraph
from wharf_controller.desired.graph_knative import expected_graph_knative_service
from wharf_controller.desired.inference_graph import GraphError
from wharf_controller.graph_status import graph_knative_status
from wharf_controller.render import Catalog, RenderError, render_documents, render_graph

REPO = Path(__file__).resolve().parents[3]
RUNTIMES = REPO / "deploy" / "base" / "runtimes"
CONFIG = from_configmap_data(
    {
        "router": json.dumps({"image": "router:1", "headers": {"propagate": ["X-Trace"]}}),
        "ingress": json.dumps({"ingressDomain": "models.test", "enableGatewayApi": True}),
    }
)
ENDPOINTS = {
    "a": Endpoint("http://a-predictor.team.svc.cluster.local", "v1", "a"),
    "b": Endpoint("http://b-predictor.team.svc.cluster.local", "v2", "b"),
}
NOW = "2026-01-01T00:00:00Z"
OWNER = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "name": "g",
    "uid": "u-1",
    "controller": True,
    "blockOwnerDeletion": True,
}
FIXTURE = Path(__file__).parent / "fixtures" / "graphs" / "graph-knative-sequence.yaml"


def graph(annotations: dict[str, str] | None = None, **spec: Any) -> InferenceGraph:
    steps = [{"serviceName": "a"}, {"serviceName": "b", "data": "$request"}]
    obj = default(
        parse_object(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "InferenceGraph",
                "metadata": {"name": "g", "namespace": "team", "annotations": annotations or {}},
                "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}, **spec},
            }
        )
    )
    assert isinstance(obj, InferenceGraph)
    return obj


def _ksvc(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    g = graph(annotations, **spec)
    resolved, unresolved = resolve_steps(g.spec, ENDPOINTS)
    assert not unresolved
    return expected_graph_knative_service(g, resolved, CONFIG, OWNER)


def test_one_knative_service_runs_the_resolved_graph_in_the_router() -> None:
    ksvc = _ksvc()
    assert (ksvc["apiVersion"], ksvc["kind"]) == ("serving.knative.dev/v1", "Service")
    assert ksvc["metadata"]["name"] == "g"
    assert ksvc["metadata"]["ownerReferences"] == [OWNER]
    # exposed by Knative, as KServe exposes a graph: not cluster-local
    assert "networking.knative.dev/visibility" not in ksvc["metadata"]["labels"]
    assert ksvc["metadata"]["labels"]["serving.kserve.io/inferencegraph"] == "g"
    [container] = ksvc["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "router:1"
    assert container["args"][0] == "--graph-json"
    steps = json.loads(container["args"][1])["nodes"]["root"]["steps"]
    assert steps[0]["serviceUrl"] == "http://a-predictor.team.svc.cluster.local/v1/models/a:predict"
    assert container["env"] == [{"name": "PROPAGATE_HEADERS", "value": "X-Trace"}]
    # one port, without a name (Knative takes only `http1`/`h2c`)
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert ksvc["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]


def test_knative_autoscaling_from_the_graph_fields_kpa_on_concurrency_by_default() -> None:
    annotations = _ksvc(minReplicas=0, maxReplicas=3, scaleTarget=5)["spec"]["template"][
        "metadata"
    ]["annotations"]
    assert annotations == {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": "5",
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "3",
    }
    cpu = _ksvc(scaleMetric="cpu")["spec"]["template"]["metadata"]["annotations"]
    assert cpu["autoscaling.knative.dev/class"] == "hpa.autoscaling.knative.dev"
    assert cpu["autoscaling.knative.dev/min-scale"] == "1"  # KServe's default minReplicas
    assert "autoscaling.knative.dev/max-scale" not in cpu  # unbounded


def test_the_graphs_knative_annotations_reach_the_revision_and_win() -> None:
    annotations = _ksvc(
        {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/window": "30s"},
        minReplicas=1,
    )["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "2"
    assert annotations["autoscaling.knative.dev/window"] == "30s"


def test_the_revision_pod_is_a_valid_pod_spec() -> None:
    ksvc = _ksvc(
        timeout=30,
        nodeSelector={"pool": "routers"},
        tolerations=[{"key": "d", "operator": "Exists", "effect": "NoSchedule"}],
    )
    pod = dict(ksvc["spec"]["template"]["spec"])
    assert pod.pop("timeoutSeconds") == 30  # Knative's field, not the core Pod's
    assert pod["nodeSelector"] == {"pool": "routers"}
    wrapped = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g"}, "spec": pod}
    kubernetes_validate.validate(wrapped, KUBERNETES_MINOR, strict=True)


def test_a_node_name_is_refused_naming_the_field() -> None:
    with pytest.raises(GraphError, match=r"spec\.nodeName"):
        _ksvc(nodeName="node-1")


def _observed(
    *, generation: int = 1, observed: int = 1, ready: str = "True", url: str | None = "http://g"
) -> dict[str, Any]:
    conditions = [
        {"type": "ConfigurationsReady", "status": ready, "lastTransitionTime": NOW},
        {"type": "Ready", "status": ready, "lastTransitionTime": NOW},
        {"type": "RoutesReady", "status": "True", "lastTransitionTime": NOW},
    ]
    if ready == "False":
        conditions[1] |= {"reason": "RevisionFailed", "message": "image pull failed"}
    status: dict[str, Any] = {"observedGeneration": observed, "conditions": conditions}
    if url:
        status["url"] = url
    return {"metadata": {"name": "g", "generation": generation}, "status": status}


def _status(ksvc: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    return graph_knative_status(generation=3, now=NOW, previous={}, ksvc=ksvc, **kw)


def _ready(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["conditions"] if c["type"] == "Ready")


def test_status_is_the_knative_services_ready_and_url() -> None:
    ready = _status(_observed(url="http://g.team.models.test"))
    assert ready["deploymentMode"] == "Knative" and ready["observedGeneration"] == 3
    assert _ready(ready)["status"] == "True"
    assert ready["url"] == "http://g.team.models.test"
    assert {c["type"] for c in ready["conditions"]} == {
        "Ready",
        "ConfigurationsReady",
        "RoutesReady",
    }

    failed = _status(_observed(ready="False"))
    assert "url" not in failed
    assert (_ready(failed)["reason"], _ready(failed)["message"]) == (
        "RevisionFailed",
        "image pull failed",
    )


def test_not_ready_before_knative_has_the_service_or_its_latest_template() -> None:
    assert _ready(_status(None))["reason"] == "RouterNotReady"
    stale = _status(_observed(generation=2, observed=1))
    assert "url" not in stale and _ready(stale)["reason"] == "RouterNotReady"
    assert "latest template" in _ready(stale)["message"]


def test_unresolved_steps_are_named_in_knative_mode_too() -> None:
    doc = _status(None, unresolved=[Unresolved("spec.nodes.root.steps[0]", "a", found=False)])
    assert doc["deploymentMode"] == "Knative"
    assert _ready(doc)["reason"] == "ServiceNotFound"


def _render(mode: str | None) -> list[dict[str, Any]]:
    docs = [
        d
        for p in sorted(RUNTIMES.glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for d in load_documents(p)
    ]
    docs += load_documents(FIXTURE)
    return [
        o
        for o in render_documents(docs, mode=mode)
        if "serving.kserve.io/inferencegraph" in (o["metadata"].get("labels") or {})
    ]


def test_render_renders_a_graph_in_either_mode() -> None:
    assert len(_render(None)) == 1  # the graph's annotation: Serverless
    knative = _render("Serverless")  # KServe's old name reads as Knative
    assert [(o["apiVersion"], o["kind"]) for o in knative] == [
        ("serving.knative.dev/v1", "Service")
    ]
    standard = {o["kind"] for o in _render("Standard")}
    assert {"Deployment", "Service"} <= standard
    catalog = Catalog()
    for doc in load_documents(FIXTURE):
        catalog.add(doc)
    with pytest.raises(RenderError, match=r"InferenceGraph pipeline: .*only Standard and Knative"):
        render_graph(catalog.graphs[0], catalog, mode="ModelMesh")
