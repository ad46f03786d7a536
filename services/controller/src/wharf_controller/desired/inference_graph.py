"""Every child of an InferenceGraph in Standard mode, as KServe's raw graph reconciler makes them:
a `wharf-router` Deployment `NAME` running the graph (`--graph-json`, each `serviceName` step
resolved to its InferenceService's predict URL), a Service `NAME`, an HPA or a KEDA ScaledObject
(or none) as for an InferenceService component, and the route to the host of the domain
template (KServe sets the URL but makes no route for a graph; here the graph is reachable at it).

Pure: the steps come in resolved (`wharf_api.graph.resolve_steps`, the rule `wharf up` uses too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wharf_api.autoscaling import standard_autoscaler
from wharf_api.config import InferenceServiceConfig
from wharf_api.names import (
    APP_LABEL,
    DEFAULT_DOMAIN_TEMPLATE,
    GRAPH_LABEL,
    graph_labels,
    service_host,
)
from wharf_api.plan import ComponentPlan, ContainerPlan, ScalingPlan, ServicePlan
from wharf_api.resources.inference_graph import InferenceGraph, InferenceGraphSpec
from wharf_controller.desired.meta import child
from wharf_controller.desired.routing import (
    SERVICE_PORT,
    expected_http_route,
    expected_ingress,
)
from wharf_controller.desired.scaling import expected_hpa, expected_scaled_object

JSON = dict[str, Any]

ROUTER_PORT = 8080  # KServe's RouterPort
READINESS_PATH = "/readyz"  # KServe's RouterReadinessEndpoint
PROPAGATE_HEADERS_ENV = "PROPAGATE_HEADERS"
DEFAULT_SCALE_METRIC = "cpu"  # an HPA scales a graph's router on cpu unless told otherwise
# Knative's own autoscaler (KPA) on concurrency, as KServe's Knative graph reconciler defaults
DEFAULT_KNATIVE_SCALE_METRIC = "concurrency"
STANDARD = "Standard"
KNATIVE = "Knative"


class GraphError(ValueError):
    """The graph cannot be rendered; the message names the field."""


def graph_json(spec: InferenceGraphSpec) -> str:
    """KServe marshals the whole spec (resources and affinity too) for `--graph-json`."""
    return json.dumps(
        spec.model_dump(by_alias=True, exclude_none=True, mode="json"), separators=(",", ":")
    )


def router_labels(graph: InferenceGraph) -> dict[str, str]:
    """The graph's own labels, then KServe's (`serving.kserve.io/inferencegraph`) and ours."""
    return {
        **(graph.metadata.labels or {}),
        **graph_labels(graph.name),
        APP_LABEL: f"isvc.{graph.name}",
    }


def selector(graph: InferenceGraph) -> dict[str, str]:
    # KServe selects `app: isvc.NAME`; with the graph label no InferenceService's pods match
    return {APP_LABEL: f"isvc.{graph.name}", GRAPH_LABEL: graph.name}


def _resources(spec: InferenceGraphSpec, config: InferenceServiceConfig) -> JSON:
    if spec.resources is not None and (spec.resources.limits or spec.resources.requests):
        return spec.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
    router = config.router
    return {
        "limits": {"cpu": router.cpu_limit, "memory": router.memory_limit},
        "requests": {"cpu": router.cpu_request, "memory": router.memory_request},
    }


def _scaling(
    spec: InferenceGraphSpec, config: InferenceServiceConfig, mode: str = STANDARD
) -> ScalingPlan:
    lo = spec.min_replicas if spec.min_replicas is not None else 1
    hi = max(spec.max_replicas, lo) if spec.max_replicas else 0
    default_metric = DEFAULT_KNATIVE_SCALE_METRIC if mode == KNATIVE else DEFAULT_SCALE_METRIC
    metric = spec.scale_metric or default_metric
    return ScalingPlan(
        min_replicas=lo,
        max_replicas=hi,
        metric=metric,
        target=spec.scale_target or config.scale_target(metric),
    )


def router_component(
    graph: InferenceGraph, config: InferenceServiceConfig, mode: str = STANDARD
) -> ComponentPlan:
    """The router as a component plan, so the scaling and routing builders of InferenceServices
    serve graphs too (the container itself is built here)."""
    return ComponentPlan(
        component="predictor",  # unused by those builders: a graph has no components
        service_name=graph.name,
        container=ContainerPlan(name=graph.name, image=config.router.image, command=(), args=()),
        protocol="v1",
        scaling=_scaling(graph.spec, config, mode),
        http_port=ROUTER_PORT,
        grpc_port=None,
        timeout_seconds=graph.spec.timeout,
    )


def router_plan(graph: InferenceGraph, config: InferenceServiceConfig) -> ServicePlan:
    namespace = graph.metadata.namespace or "default"
    ingress = config.ingress
    host = service_host(
        graph.name,
        namespace,
        ingress.ingress_domain,
        ingress.domain_template or DEFAULT_DOMAIN_TEMPLATE,
    )
    return ServicePlan(
        kind="InferenceGraph",
        name=graph.name,
        namespace=namespace,
        host=host,
        scheme=ingress.url_scheme or "http",
        components=(router_component(graph, config),),
    )


def router_container(
    graph: InferenceGraph, spec: InferenceGraphSpec, config: InferenceServiceConfig
) -> JSON:
    router = config.router
    if not router.image:
        raise GraphError("inferenceservice-config: router.image is empty")
    container: JSON = {
        "name": graph.name,
        "image": router.image,
        "imagePullPolicy": router.image_pull_policy,
        "args": ["--graph-json", graph_json(spec)],
    }
    if router.headers.propagate:
        container["env"] = [
            {"name": PROPAGATE_HEADERS_ENV, "value": ",".join(router.headers.propagate)}
        ]
    container["ports"] = [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}]
    container["resources"] = _resources(graph.spec, config)
    container["readinessProbe"] = {
        "httpGet": {"path": READINESS_PATH, "port": ROUTER_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "timeoutSeconds": 2,
        "periodSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    # KServe's router runs unprivileged, read-only, with no capabilities
    container["securityContext"] = {
        "privileged": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return container


def router_pod_spec(
    graph: InferenceGraph, spec: InferenceGraphSpec, config: InferenceServiceConfig
) -> JSON:
    pod: JSON = {
        "containers": [router_container(graph, spec, config)],
        # the router never talks to the API server
        "automountServiceAccountToken": False,
    }
    own = graph.spec
    if own.affinity is not None:
        pod["affinity"] = own.affinity.model_dump(by_alias=True, exclude_none=True, mode="json")
    if own.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in own.tolerations
        ]
    if own.node_selector:
        pod["nodeSelector"] = dict(own.node_selector)
    if own.node_name:
        pod["nodeName"] = own.node_name
    if own.service_account_name:
        pod["serviceAccountName"] = own.service_account_name
    return pod


def expected_router_deployment(
    graph: InferenceGraph,
    spec: InferenceGraphSpec,
    config: InferenceServiceConfig,
    owner: JSON | None,
    *,
    replicas: int | None,
) -> JSON:
    """`spec` is the resolved graph; `replicas` None leaves the count to the autoscaler."""
    labels = router_labels(graph)
    namespace = graph.metadata.namespace or "default"
    obj = child("apps/v1", "Deployment", graph.name, namespace, labels, owner)
    body: JSON = {
        "selector": {"matchLabels": selector(graph)},
        "template": {"metadata": {"labels": labels}, "spec": router_pod_spec(graph, spec, config)},
    }
    if replicas is not None:
        body = {"replicas": replicas, **body}
    obj["spec"] = body
    return obj


def expected_router_service(graph: InferenceGraph, owner: JSON | None) -> JSON:
    namespace = graph.metadata.namespace or "default"
    obj = child("v1", "Service", graph.name, namespace, router_labels(graph), owner)
    obj["spec"] = {
        "type": "ClusterIP",
        "selector": selector(graph),
        "ports": [
            {"name": "http", "port": SERVICE_PORT, "targetPort": ROUTER_PORT, "protocol": "TCP"}
        ],
    }
    return obj


def expected_graph_children(
    graph: InferenceGraph,
    resolved: InferenceGraphSpec,
    config: InferenceServiceConfig,
    owner: JSON | None = None,
) -> list[JSON]:
    """The objects, in the order they are applied (the router before its route)."""
    plan = router_plan(graph, config)
    comp = plan.components[0]
    annotations: Mapping[str, str] = graph.metadata.annotations or {}
    autoscaler = standard_autoscaler(comp.scaling, annotations)
    namespace, labels = plan.namespace, router_labels(graph)
    children = [
        expected_router_deployment(
            graph,
            resolved,
            config,
            owner,
            replicas=comp.scaling.min_replicas if autoscaler == "none" else None,
        ),
        expected_router_service(graph, owner),
    ]
    if autoscaler == "hpa":
        children.append(expected_hpa(comp, namespace, labels, owner, config))
    elif autoscaler == "keda":
        children.append(expected_scaled_object(comp, namespace, labels, owner, config))
    ingress = config.ingress
    if not ingress.disable_ingress_creation:
        route_labels = graph_labels(graph.name)
        if ingress.enable_gateway_api:
            children.append(expected_http_route(plan, route_labels, owner, config))
        else:
            children.append(expected_ingress(plan, route_labels, owner, config))
    return children
