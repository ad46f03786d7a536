"""`wharf-controller render`: what the controller would create for the InferenceServices,
InferenceGraphs and LLMInferenceServices of a file, offline (no cluster: no owner references, no
credentials from ServiceAccounts).

ServingRuntimes, ClusterServingRuntimes, ClusterStorageContainers and an
`inferenceservice-config` ConfigMap in the same files are used as the cluster would use them. A
graph's `serviceName` steps resolve to the InferenceServices of the same files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wharf_api import default, parse_object, validate
from wharf_api.config import CONFIGMAP_NAME, InferenceServiceConfig, from_mapping
from wharf_api.defaulting import deployment_mode, normalize_deployment_mode
from wharf_api.graph import Endpoint, model_name, resolve_steps
from wharf_api.multinode import runtime_worker_spec
from wharf_api.names import cluster_url
from wharf_api.plan import plan_inference_service
from wharf_api.resources import (
    ClusterServingRuntime,
    InferenceService,
    LLMInferenceService,
    LLMInferenceServiceConfig,
    ServingRuntime,
)
from wharf_api.resources.cluster_storage_container import ClusterStorageContainer
from wharf_api.resources.inference_graph import InferenceGraph
from wharf_controller.desired import Inputs, expected_children
from wharf_controller.desired.graph_knative import expected_graph_knative_service
from wharf_controller.desired.inference_graph import expected_graph_children
from wharf_controller.llm_render import parse_llm, parse_llm_config, render_llm_service

JSON = dict[str, Any]
STANDARD = "Standard"
KNATIVE = "Knative"
RENDERED_MODES = (STANDARD, KNATIVE)


class RenderError(ValueError):
    """A document cannot be rendered; the message names the object and the field."""


@dataclass
class Catalog:
    """The objects a render can see: what a cluster would hold."""

    runtimes: list[ServingRuntime] = field(default_factory=list)
    cluster_runtimes: list[ClusterServingRuntime] = field(default_factory=list)
    storage_containers: list[ClusterStorageContainer] = field(default_factory=list)
    config: InferenceServiceConfig = field(default_factory=InferenceServiceConfig)
    services: list[InferenceService] = field(default_factory=list)
    graphs: list[InferenceGraph] = field(default_factory=list)
    llm_services: list[LLMInferenceService] = field(default_factory=list)
    llm_configs: list[LLMInferenceServiceConfig] = field(default_factory=list)

    def add(self, doc: Mapping[str, Any]) -> None:
        if doc.get("kind") == "ConfigMap":
            if (doc.get("metadata") or {}).get("name") == CONFIGMAP_NAME:
                self.config = from_mapping(doc)
            return
        if not str(doc.get("apiVersion", "")).startswith("serving.kserve.io/"):
            return  # other kinds (Secrets, Kustomizations) are not the controller's input
        if doc.get("kind") == "LLMInferenceService":
            self.llm_services.append(parse_llm(doc))
            return
        if doc.get("kind") == "LLMInferenceServiceConfig":
            self.llm_configs.append(parse_llm_config(doc))
            return
        obj = default(parse_object(dict(doc)))
        if isinstance(obj, ServingRuntime):
            self.runtimes.append(obj)
        elif isinstance(obj, ClusterServingRuntime):
            self.cluster_runtimes.append(obj)
        elif isinstance(obj, ClusterStorageContainer):
            self.storage_containers.append(obj)
        elif isinstance(obj, InferenceService):
            validate(obj)
            self.services.append(obj)
        elif isinstance(obj, InferenceGraph):
            validate(obj)
            self.graphs.append(obj)


def render_service(
    isvc: InferenceService,
    catalog: Catalog,
    *,
    mode: str | None = None,
    owner: JSON | None = None,
    credentials: Any = None,
    status: Mapping[str, Any] | None = None,
) -> list[JSON]:
    """The children of one InferenceService in Standard or Knative mode (RenderError for
    another). `status` is the stored status (Knative mode: the last rolled-out revisions)."""
    namespace = isvc.metadata.namespace or "default"
    runtimes = [r for r in catalog.runtimes if (r.metadata.namespace or "default") == namespace]
    dumped = isvc.model_dump(by_alias=True, mode="json")
    chosen = (
        normalize_deployment_mode(mode)
        if mode
        else deployment_mode(dumped, catalog.config.deploy.default_deployment_mode)
    )
    if chosen not in RENDERED_MODES:
        raise RenderError(
            f"InferenceService {isvc.name}: deployment mode {chosen}: only Standard and Knative "
            "are rendered (set the annotation serving.kserve.io/deploymentMode)"
        )
    plan = plan_inference_service(isvc, runtimes, catalog.cluster_runtimes, config=catalog.config)
    return expected_children(
        Inputs(
            isvc=isvc,
            plan=plan,
            config=catalog.config,
            storage_containers=catalog.storage_containers,
            credentials=credentials,
            owner=owner,
            mode=chosen,
            status=status,
            runtime_worker=runtime_worker_spec(
                plan.components[0], runtimes, catalog.cluster_runtimes
            ),
        )
    )


def render_documents(docs: Sequence[Mapping[str, Any]], *, mode: str | None = None) -> list[JSON]:
    catalog = Catalog()
    for doc in docs:
        catalog.add(doc)
    out: list[JSON] = []
    for isvc in catalog.services:
        out += render_service(isvc, catalog, mode=mode)
    for graph in catalog.graphs:
        out += render_graph(graph, catalog, mode=mode)
    for llmisvc in catalog.llm_services:
        out += render_llm_service(
            llmisvc,
            catalog.llm_configs,
            catalog.config,
            storage_containers=catalog.storage_containers,
        )[2]
    return out


def render_graph(graph: InferenceGraph, catalog: Catalog, *, mode: str | None = None) -> list[JSON]:
    """The children of one InferenceGraph in Standard or Knative mode, its `serviceName` steps
    resolved to the cluster-local address the controller gives each InferenceService of the
    catalog."""
    namespace = graph.metadata.namespace or "default"
    dumped = graph.model_dump(by_alias=True, mode="json")
    chosen = (
        normalize_deployment_mode(mode)
        if mode
        else deployment_mode(dumped, catalog.config.deploy.default_deployment_mode)
    )
    if chosen not in RENDERED_MODES:
        raise RenderError(
            f"InferenceGraph {graph.name}: deployment mode {chosen}: only Standard and Knative "
            "are rendered (set the annotation serving.kserve.io/deploymentMode)"
        )
    runtimes = [r for r in catalog.runtimes if (r.metadata.namespace or "default") == namespace]
    endpoints: dict[str, Endpoint | None] = {}
    named = {s.service_name for n in graph.spec.nodes.values() for s in n.steps or []}
    for isvc in catalog.services:
        if (isvc.metadata.namespace or "default") != namespace or isvc.name not in named:
            continue
        plan = plan_inference_service(
            isvc, runtimes, catalog.cluster_runtimes, config=catalog.config
        )
        address = cluster_url(plan.entry.service_name, namespace)
        endpoints[isvc.name] = Endpoint(address, plan.entry.protocol, model_name(isvc))
    resolved, unresolved = resolve_steps(graph.spec, endpoints)
    if unresolved:
        raise RenderError(
            f"InferenceGraph {graph.name}: "
            + "; ".join(u.message() for u in unresolved)
            + " (give each InferenceService's manifest with -f)"
        )
    if chosen == KNATIVE:
        return [expected_graph_knative_service(graph, resolved, catalog.config)]
    return expected_graph_children(graph, resolved, catalog.config)
