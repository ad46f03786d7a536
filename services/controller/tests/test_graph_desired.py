"""An InferenceGraph's children and status, pure: `serviceName` steps resolved as KServe's
controller resolves them, the router's pod as KServe builds it, the autoscaler and the route,
and Ready only when every step resolves and the router Deployment is available."""

from __future__ import annotations

import json
from typing import Any

from wharf_api import default, parse_object
from wharf_api.config import from_configmap_data
from wharf_api.graph import Endpoint, model_name, resolve_steps
from wharf_api.resources.inference_graph import InferenceGraph
from wharf_controller.desired.inference_graph import expected_graph_children
from wharf_controller.graph_status import graph_status


def deployment(
    name: str, *, replicas: int, available: int, generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    """A router Deployment as the API server reports it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": replicas,
            "availableReplicas": available,
        },
    }


OWNER = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "name": "g",
    "uid": "u-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def graph(annotations: dict[str, str] | None = None, **spec: Any) -> InferenceGraph:
    body = {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"serviceName": "a"},
                    {"nodeName": "more", "data": "$response"},
                ],
            },
            "more": {
                "routerType": "Ensemble",
                "steps": [
                    {"serviceName": "b"},
                    {"serviceUrl": "http://x/predict", "serviceName": "c"},
                ],
            },
        },
        **spec,
    }
    obj = default(
        parse_object(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "InferenceGraph",
                "metadata": {"name": "g", "namespace": "team", "annotations": annotations or {}},
                "spec": body,
            }
        )
    )
    assert isinstance(obj, InferenceGraph)
    return obj


def _steps(resolved: Any) -> dict[str, list[str | None]]:
    return {n: [s.service_url for s in node.steps] for n, node in resolved.nodes.items()}


def test_service_steps_get_the_address_and_predict_path_of_their_protocol() -> None:
    endpoints = {
        "a": Endpoint("http://a-predictor.team.svc.cluster.local", "v1"),
        "b": Endpoint("http://b-transformer.team.svc.cluster.local/", "v2"),
    }
    resolved, unresolved = resolve_steps(graph().spec, endpoints)
    assert unresolved == []
    assert _steps(resolved) == {
        "root": ["http://a-predictor.team.svc.cluster.local/v1/models/a:predict", None],
        # a step that names its URL keeps it, whatever its serviceName (KServe's rule)
        "more": [
            "http://b-transformer.team.svc.cluster.local/v2/models/b/infer",
            "http://x/predict",
        ],
    }


def test_missing_and_unaddressed_services_are_named_with_their_step() -> None:
    _, unresolved = resolve_steps(graph().spec, {"b": Endpoint(None)})
    messages = [u.message() for u in unresolved]
    assert messages == [
        "spec.nodes.root.steps[0].serviceName: InferenceService a not found",
        "spec.nodes.more.steps[0].serviceName: InferenceService b is not ready (no address yet)",
    ]
    status = graph_status(
        generation=3, now="T1", previous={}, url="http://g", deployment=None, unresolved=unresolved
    )
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ServiceNotFound")
    assert (
        "InferenceService a not found" in ready["message"] and "b is not ready" in ready["message"]
    )
    assert "url" not in status and status["observedGeneration"] == 3
    only_unready = graph_status(
        generation=3, now="T1", previous={}, url="u", deployment=None, unresolved=unresolved[1:]
    )
    assert only_unready["conditions"][0]["reason"] == "ServiceNotReady"


def test_ready_with_url_only_when_the_router_deployment_is_available() -> None:
    starting = deployment("g", replicas=1, available=0)
    status = graph_status(
        generation=1, now="T1", previous={}, url="http://g-team.x", deployment=starting
    )
    assert status["conditions"][0]["reason"] == "RouterNotReady" and "url" not in status
    up = deployment("g", replicas=1, available=1)
    ready = graph_status(
        generation=1, now="T2", previous=status, url="http://g-team.x", deployment=up
    )
    assert ready["conditions"] == [{"type": "Ready", "status": "True", "lastTransitionTime": "T2"}]
    assert ready["url"] == "http://g-team.x" and ready["deploymentMode"] == "Standard"
    # no change, no new transition time
    again = graph_status(
        generation=1, now="T3", previous=ready, url="http://g-team.x", deployment=up
    )
    assert again == ready
    # a rollout not yet observed is not ready
    stale = deployment("g", replicas=1, available=1, generation=2, observed=1)
    assert (
        graph_status(generation=2, now="T4", previous=ready, url="u", deployment=stale)[
            "conditions"
        ][0]["status"]
        == "False"
    )


def _children(g: InferenceGraph, config_data: dict[str, str] | None = None) -> dict[str, Any]:
    config = from_configmap_data(config_data or {})
    resolved, _ = resolve_steps(g.spec, {"a": Endpoint("http://a"), "b": Endpoint("http://b")})
    return {c["kind"]: c for c in expected_graph_children(g, resolved, config, OWNER)}


def test_the_router_pod_runs_the_resolved_graph_as_kserve_builds_it() -> None:
    children = _children(
        graph(serviceAccountName="sa", nodeName="n1"),
        {
            "router": json.dumps(
                {
                    "image": "router:9",
                    "cpuRequest": "50m",
                    "cpuLimit": "500m",
                    "memoryRequest": "64Mi",
                    "memoryLimit": "256Mi",
                    "headers": {"propagate": ["X-Team", "Auth.*"]},
                }
            )
        },
    )
    dep = children["Deployment"]
    assert dep["metadata"]["name"] == "g" and dep["metadata"]["ownerReferences"] == [OWNER]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "g" and container["image"] == "router:9"
    flag, graph_json = container["args"]
    assert flag == "--graph-json"
    sent = json.loads(graph_json)
    assert sent["nodes"]["root"]["steps"][0]["serviceUrl"] == "http://a/v1/models/a:predict"
    assert container["env"] == [{"name": "PROPAGATE_HEADERS", "value": "X-Team,Auth.*"}]
    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "50m", "memory": "64Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 8080,
        "scheme": "HTTP",
    }
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert (pod["serviceAccountName"], pod["nodeName"]) == ("sa", "n1")
    svc = children["Service"]
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert dep["metadata"]["labels"]["serving.kserve.io/inferencegraph"] == "g"
    # an HPA owns the count: the Deployment leaves replicas to it
    assert (
        "replicas" not in dep["spec"]
        and children["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 1
    )
    # KServe's default config: an Ingress to the domain template's host
    rule = children["Ingress"]["spec"]["rules"][0]
    assert rule["host"] == "g-team.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "g"


def test_the_graph_resources_win_over_the_router_defaults() -> None:
    children = _children(graph(resources={"limits": {"cpu": "3"}}))
    (container,) = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"cpu": "3"}}


def test_fixed_replicas_mean_no_autoscaler_and_the_gateway_api_means_an_httproute() -> None:
    children = _children(
        graph(minReplicas=2, maxReplicas=2, timeout=15),
        {"ingress": json.dumps({"enableGatewayApi": True, "ingressDomain": "models.test"})},
    )
    assert "HorizontalPodAutoscaler" not in children
    assert children["Deployment"]["spec"]["replicas"] == 2
    route = children["HTTPRoute"]["spec"]
    assert route["hostnames"] == ["g-team.models.test"]
    assert route["rules"][0]["backendRefs"][0]["name"] == "g"
    assert route["rules"][0]["timeouts"] == {"request": "15s"}


def test_the_autoscaler_class_annotation_chooses_keda_or_none() -> None:
    keda = _children(graph({"serving.kserve.io/autoscalerClass": "keda"}, maxReplicas=3))
    assert keda["ScaledObject"]["spec"]["maxReplicaCount"] == 3
    none = _children(graph({"serving.kserve.io/autoscalerClass": "none"}, minReplicas=2))
    assert "HorizontalPodAutoscaler" not in none and none["Deployment"]["spec"]["replicas"] == 2


def test_no_route_when_ingress_creation_is_disabled() -> None:
    children = _children(graph(), {"ingress": json.dumps({"disableIngressCreation": True})})
    assert set(children) == {"Deployment", "Service", "HorizontalPodAutoscaler"}


def _isvc(predictor: dict[str, Any], transformer: dict[str, Any] | None = None) -> Any:
    spec: dict[str, Any] = {"predictor": predictor}
    if transformer is not None:
        spec["transformer"] = transformer
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "team"},
        "spec": spec,
    }
    return default(parse_object(doc))


def test_the_model_name_is_read_where_kserve_reads_it() -> None:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://b/m"}
    assert model_name(_isvc({"model": model})) == "iris"
    assert model_name(_isvc({"model": {**model, "args": ["--model_name=flowers"]}})) == "flowers"
    mlserver = {**model, "env": [{"name": "MLSERVER_MODEL_NAME", "value": "ml"}]}
    assert model_name(_isvc({"model": mlserver})) == "ml"
    custom = {"containers": [{"name": "c", "image": "i", "args": ["--model_name", "custom"]}]}
    assert model_name(_isvc(custom)) == "custom"
    transformer = {"containers": [{"name": "t", "image": "t", "args": ["--model_name=front"]}]}
    assert model_name(_isvc({"model": model}, transformer)) == "front"
    resolved, _ = resolve_steps(graph().spec, {"a": Endpoint("http://a", "v2", "front")})
    assert _steps(resolved)["root"][0] == "http://a/v2/models/front/infer"
