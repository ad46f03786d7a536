"""The graph the router runs: KServe's `--graph-json` (an InferenceGraphSpec), or a manifest.

The spec model is wharf-api's, so the router reads exactly what the API accepts. Checks here
are the ones that would otherwise surface as a failed request: a missing `root`, a step that
names an unknown node, a cycle of nodes, a step with no target or with both a node and a service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from wharf_api.resources.inference_graph import InferenceGraphSpec

ROOT = "root"
# a graph is a few nodes; a bigger document is a mistake (or an attack on the parser)
MAX_GRAPH_BYTES = 1 << 20


class GraphError(ValueError):
    """The graph cannot be run; the message names the node, step or field."""


def parse_graph_json(text: str) -> InferenceGraphSpec:
    """`--graph-json`: the spec as JSON (KServe's controller passes `spec` serialized)."""
    if len(text.encode()) > MAX_GRAPH_BYTES:
        raise GraphError(f"--graph-json is over {MAX_GRAPH_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GraphError(f"--graph-json is not JSON: {exc}") from None
    return graph_from_mapping(data, "--graph-json")


def load_graph_file(path: Path) -> InferenceGraphSpec:
    """`--graph-file`: an InferenceGraph manifest (YAML or JSON), or a bare spec."""
    try:
        if path.stat().st_size > MAX_GRAPH_BYTES:
            raise GraphError(f"{path}: over {MAX_GRAPH_BYTES} bytes")
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"{path}: {exc}") from None
    if isinstance(data, dict) and data.get("kind") == "InferenceGraph":
        data = data.get("spec")
    return graph_from_mapping(data, str(path))


def graph_from_mapping(data: Any, source: str) -> InferenceGraphSpec:
    if not isinstance(data, dict):
        raise GraphError(f"{source}: the graph must be an object with `nodes`")
    try:
        spec = InferenceGraphSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GraphError(f"{source}: {where}: {first['msg']}") from None
    check_graph(spec, source)
    return spec


def check_graph(spec: InferenceGraphSpec, source: str = "graph") -> None:
    """Raise GraphError for a graph that cannot route a request."""
    nodes = spec.nodes
    if ROOT not in nodes:
        raise GraphError(f"{source}: nodes: the graph needs a node named {ROOT!r}")
    for name, node in nodes.items():
        if node.router_type is None:
            raise GraphError(f"{source}: nodes.{name}.routerType is required")
        for i, step in enumerate(node.steps or []):
            where = f"{source}: nodes.{name}.steps[{i}]"
            # KServe's controller writes the resolved `serviceUrl` beside a `serviceName`:
            # both may be set, and the URL is called
            service = step.service_name or step.service_url
            if bool(step.node_name) == bool(service):
                raise GraphError(f"{where}: one of nodeName, serviceName or serviceUrl is required")
            if step.node_name and step.node_name not in nodes:
                raise GraphError(f"{where}.nodeName: no node named {step.node_name!r}")
    cycle = find_cycle(spec)
    if cycle:
        raise GraphError(f"{source}: nodes form a cycle: {' -> '.join(cycle)}")


def find_cycle(spec: InferenceGraphSpec) -> list[str]:
    """A cycle of node references reachable from root ([] when none): it would recurse forever."""
    children = {
        name: [s.node_name for s in node.steps or [] if s.node_name]
        for name, node in spec.nodes.items()
    }
    path: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        path.append(name)
        for child in children.get(name, []):
            found = visit(child)
            if found:
                return found
        path.pop()
        done.add(name)
        return []

    return visit(ROOT)
