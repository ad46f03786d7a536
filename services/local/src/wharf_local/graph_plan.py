"""What the local runtime runs for an InferenceGraph, pure: the graph the router is given
(each `serviceName` step resolved to its InferenceService's predict URL through the local
ingress, as KServe's controller writes `serviceUrl`), the router's command line, and the
graph's Ready condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wharf_api.names import local_url
from wharf_api.resources.inference_graph import InferenceGraphSpec

ROUTER = "wharf-router"

# reasons of the graph's Ready condition
SERVICE_NOT_FOUND = "ServiceNotFound"
ROUTER_STARTING = "RouterStarting"
ROUTER_CRASHED = "RouterCrashed"


@dataclass(frozen=True)
class ResolvedGraph:
    graph_json: str
    # serviceName steps whose InferenceService is not applied (the graph waits for them)
    missing: tuple[str, ...]


def predict_path(model: str, protocol: str) -> str:
    """KServe's predict path for a protocol (`GetPredictorEndpoint`)."""
    return f"/v2/models/{model}/infer" if protocol.endswith("v2") else f"/v1/models/{model}:predict"


def resolve_graph(
    spec: InferenceGraphSpec,
    namespace: str,
    protocols: Mapping[str, str],
    ingress: str,
) -> ResolvedGraph:
    """The spec the router runs. `protocols` maps the namespace's InferenceServices to the
    protocol of their entry component (transformer, else predictor)."""
    resolved = spec.model_copy(deep=True)
    missing: list[str] = []
    for node in resolved.nodes.values():
        for step in node.steps or []:
            name = step.service_name
            if not name or step.service_url:
                continue
            if name not in protocols:
                missing.append(name)
                continue
            step.service_url = local_url(ingress, namespace, name) + predict_path(
                name, protocols[name]
            )
    graph_json = resolved.model_dump_json(by_alias=True, exclude_none=True)
    return ResolvedGraph(graph_json, tuple(sorted(set(missing))))


def router_args(graph_json: str, port: int, namespace: str, ingress: str) -> list[str]:
    """The router's arguments: KServe's flags, and Wharf's for the local ingress. No drain
    period: the ingress stops sending to a router before it is stopped."""
    return [
        "--graph-json",
        graph_json,
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--service-resolution",
        "local",
        "--ingress",
        ingress,
        "--drain-seconds",
        "0",
    ]


@dataclass(frozen=True)
class GraphReadiness:
    status: str  # "True" | "False"
    reason: str | None = None
    message: str | None = None


def graph_ready(
    missing: tuple[str, ...], router_ready: bool, last_crash: str | None
) -> GraphReadiness:
    """Ready when every named InferenceService is applied and the router answers `/readyz`."""
    if missing:
        names = ", ".join(missing)
        return GraphReadiness(
            "False", SERVICE_NOT_FOUND, f"InferenceService not found: {names} (apply it)"
        )
    if router_ready:
        return GraphReadiness("True")
    if last_crash:
        return GraphReadiness("False", ROUTER_CRASHED, f"the router {last_crash}")
    return GraphReadiness("False", ROUTER_STARTING, "the router is starting")
