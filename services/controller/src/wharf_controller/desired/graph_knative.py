"""An InferenceGraph's one child in Knative mode (KServe's `Serverless`), pure: a Knative Service
`NAME` running the `wharf-router`, as KServe's Knative graph reconciler makes it.

The revision runs the pod the Standard mode's Deployment would run (the same container, its
`--graph-json` with each step resolved, resources, probe and security context), with the
autoscaling annotations of `wharf_api.autoscaling.knative_autoscaling_annotations` from the
graph's `minReplicas`/`maxReplicas`/`scaleMetric`/`scaleTarget` (Knative's KPA on concurrency
when no metric is named, as KServe). Knative routes the graph itself: no Service, autoscaler or
Ingress/HTTPRoute is made, and unlike an InferenceService's component the Knative Service is not
`cluster-local` (KServe exposes a graph at Knative's external domain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.autoscaling import knative_autoscaling_annotations
from wharf_api.config import InferenceServiceConfig
from wharf_api.resources.inference_graph import InferenceGraph, InferenceGraphSpec
from wharf_controller.desired.inference_graph import (
    KNATIVE,
    ROUTER_PORT,
    GraphError,
    router_component,
    router_labels,
    router_pod_spec,
)
from wharf_controller.desired.knative import KNATIVE_API_VERSION
from wharf_controller.desired.meta import child

JSON = dict[str, Any]

# a graph's own annotations under this prefix reach the revision (initial-scale, window, ...)
# and win over the computed ones, as KServe copies the graph's annotations to it
KNATIVE_AUTOSCALING_PREFIX = "autoscaling.knative.dev/"


def _revision_annotations(graph: InferenceGraph, config: InferenceServiceConfig) -> dict[str, str]:
    own: Mapping[str, str] = graph.metadata.annotations or {}
    scaling = router_component(graph, config, KNATIVE).scaling
    return {
        **knative_autoscaling_annotations(scaling, own),
        **{k: v for k, v in own.items() if k.startswith(KNATIVE_AUTOSCALING_PREFIX)},
    }


def _revision_pod(
    graph: InferenceGraph, spec: InferenceGraphSpec, config: InferenceServiceConfig
) -> JSON:
    if graph.spec.node_name:
        raise GraphError("spec.nodeName: a Knative revision cannot be pinned to a node")
    pod = router_pod_spec(graph, spec, config)
    [container] = pod["containers"]
    # Knative serves one port, named only `http1` or `h2c`; the router speaks HTTP/1
    container["ports"] = [{"containerPort": ROUTER_PORT, "protocol": "TCP"}]
    if graph.spec.timeout is not None:
        pod["timeoutSeconds"] = graph.spec.timeout
    return pod


def expected_graph_knative_service(
    graph: InferenceGraph,
    resolved: InferenceGraphSpec,
    config: InferenceServiceConfig,
    owner: JSON | None = None,
) -> JSON:
    """`resolved` is the graph's spec with each `serviceName` step resolved (as for the
    Standard mode's Deployment)."""
    labels = router_labels(graph)
    namespace = graph.metadata.namespace or "default"
    obj = child(KNATIVE_API_VERSION, "Service", graph.name, namespace, labels, owner)
    obj["spec"] = {
        "template": {
            "metadata": {
                "labels": dict(labels),
                "annotations": _revision_annotations(graph, config),
            },
            "spec": _revision_pod(graph, resolved, config),
        },
        # every request to the latest ready revision: a graph has no canary
        "traffic": [{"latestRevision": True, "percent": 100}],
    }
    return obj
