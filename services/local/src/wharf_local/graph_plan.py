"""What the local runtime runs for an InferenceGraph, pure: the graph the router is given
(each `serviceName` step resolved to its InferenceService's predict URL through the local
ingress by `wharf_api.graph`, the rule the controller applies with in-cluster addresses), the
router's command line, and the graph's Ready condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wharf_api.graph import Endpoint, resolve_steps
from wharf_api.names import local_url
from wharf_api.plan import ServicePlan
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


def resolve_graph(
    spec: InferenceGraphSpec,
    namespace: str,
    services: Mapping[str, ServicePlan],
    ingress: str,
) -> ResolvedGraph:
    """The spec the router runs. `services` maps the namespace's InferenceServices to their
    plans (the entry component's protocol and the model's name come from them)."""
    endpoints = {
        name: Endpoint(local_url(ingress, namespace, name), plan.entry.protocol, plan.model_name)
        for name, plan in services.items()
    }
    resolved, unresolved = resolve_steps(spec, endpoints)
    graph_json = resolved.model_dump_json(by_alias=True, exclude_none=True)
    return ResolvedGraph(graph_json, tuple(sorted({u.service for u in unresolved})))


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
