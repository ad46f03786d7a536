"""The daemon's objects as kubectl shows them: every kind `wharf up` accepts, defaulted.

An InferenceService or InferenceGraph is its defaulted manifest with `status` and the
runtime's `local` section;
a ServingRuntime or ClusterServingRuntime (built-ins included) is its defaulted manifest; any
other applied kind is its manifest.
"""

from __future__ import annotations

from typing import Any

from wharf_api import WharfValidationError, default, parse_object
from wharf_local.graphs import Graph, describe_graph
from wharf_local.llms import LLMService, describe_llm
from wharf_local.runtime import LocalRuntime, Service


def defaulted(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the API server would store it: defaulted (the original when invalid)."""
    try:
        return default(parse_object(manifest)).to_dict()
    except WharfValidationError:
        return manifest


def service_view(runtime: LocalRuntime, svc: Service) -> dict[str, Any]:
    item = runtime.describe(svc)
    shown = defaulted(svc.manifest)
    local = dict(item.get("local") or {})
    # which runtime each component was given, and what it runs (issue: name the runtime)
    local["runtimes"] = {
        c.component: {
            "runtime": c.runtime,
            "kind": c.runtime_kind,
            "modelFormat": c.model_format,
            "protocol": c.protocol,
            "command": [*c.container.command, *c.container.args],
        }
        for c in svc.plan.components
    }
    return {**item, "spec": shown.get("spec", item.get("spec", {})), "local": local}


def graph_view(graph: Graph) -> dict[str, Any]:
    item = describe_graph(graph)
    return {**item, "spec": defaulted(graph.manifest).get("spec", item.get("spec", {}))}


def llm_view(llm: LLMService) -> dict[str, Any]:
    item = describe_llm(llm)
    return {**item, "spec": defaulted(llm.manifest).get("spec", item.get("spec", {}))}


def _with_meta(manifest: dict[str, Any], namespace: str | None, **local: Any) -> dict[str, Any]:
    item = defaulted(manifest)
    metadata = dict(item.get("metadata") or {})
    if namespace is not None:
        metadata["namespace"] = namespace
    item["metadata"] = metadata
    if local:
        item["local"] = local
    return item


def list_objects(runtime: LocalRuntime, kind: str, namespace: str | None) -> list[dict[str, Any]]:
    """Objects of `kind`, in `namespace` (every namespace when None), sorted by namespace/name."""
    items: list[tuple[tuple[str, str], dict[str, Any]]] = []
    if kind == "InferenceService":
        for (ns, name), svc in runtime.services.items():
            if namespace is None or ns == namespace:
                items.append(((ns, name), service_view(runtime, svc)))
    elif kind == "InferenceGraph":
        for (ns, name), graph in runtime.graphs.items():
            if namespace is None or ns == namespace:
                items.append(((ns, name), graph_view(graph)))
    elif kind == "LLMInferenceService":
        for (ns, name), llm in runtime.llms.items():
            if namespace is None or ns == namespace:
                items.append(((ns, name), llm_view(llm)))
    elif kind == "ClusterServingRuntime":
        for name, rt in runtime.cluster_runtimes.items():
            applied = runtime.applied.get(f"ClusterServingRuntime//{name}")
            manifest = applied if applied is not None else rt.to_dict()
            items.append((("", name), _with_meta(manifest, None, builtin=applied is None)))
    else:
        prefix = f"{kind}/"
        for key, manifest in runtime.applied.items():
            if not key.startswith(prefix):
                continue
            _, ns, name = key.split("/", 2)
            if namespace is None or ns == namespace or not ns:
                items.append(((ns, name), _with_meta(manifest, ns or None)))
    return [item for _, item in sorted(items, key=lambda kv: kv[0])]


def get_object(
    runtime: LocalRuntime, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    for item in list_objects(runtime, kind, None):
        meta = item.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
            return item
    return None
