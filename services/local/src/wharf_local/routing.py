"""Which service a request is for: by Host header or by `/serving/{namespace}/{name}/` path. Pure.

Hosts come from `wharf_api.names` (KServe's domain template `{name}-{namespace}.{domain}`); the
component hosts `{name}-predictor-{namespace}.{domain}` (and transformer, explainer) reach one
component, as the controller's HTTPRoutes do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wharf_api.names import DEFAULT_DOMAIN_TEMPLATE, component_host, service_host

PATH_PREFIX = "/serving/"
# the component of a host table entry that names an InferenceGraph (its router)
GRAPH = "graph"
# the component of an entry that names an LLMInferenceService (its router or workers)
LLM = "llm"


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    component: str | None
    path: str


Entry = tuple[str, str, str | None]


def host_table(
    services: list[tuple[str, str, list[str]]],
    domain: str,
    template: str = DEFAULT_DOMAIN_TEMPLATE,
    graphs: Sequence[tuple[str, str]] = (),
    llms: Sequence[tuple[str, str]] = (),
) -> dict[str, Entry]:
    """Host -> (namespace, name, component or None) for (namespace, name, components) triples.

    Path routing uses the same table under the keys `/{namespace}/{name}` and
    `/{namespace}/{name}-{component}` (the component's Service name in KServe). InferenceGraphs
    (namespace, name) get the same host and path, with the component `GRAPH`; an
    InferenceService of the same name keeps its host. LLMInferenceServices likewise, with `LLM`.
    """
    table: dict[str, Entry] = {}
    for namespace, name, components in services:
        table[service_host(name, namespace, domain, template)] = (namespace, name, None)
        table[f"/{namespace}/{name}"] = (namespace, name, None)
        for component in components:
            host = component_host(name, component, namespace, domain, template)
            table[host] = (namespace, name, component)
            table[f"/{namespace}/{name}-{component}"] = (namespace, name, component)
    for namespace, name in graphs:
        table.setdefault(service_host(name, namespace, domain, template), (namespace, name, GRAPH))
        table.setdefault(f"/{namespace}/{name}", (namespace, name, GRAPH))
    for namespace, name in llms:
        table.setdefault(service_host(name, namespace, domain, template), (namespace, name, LLM))
        table.setdefault(f"/{namespace}/{name}", (namespace, name, LLM))
    return table


def route(
    host: str | None, path: str, hosts: Mapping[str, tuple[str, str, str | None]]
) -> Target | None:
    """The target of a request, or None. A known Host wins over the path prefix."""
    if host:
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        found = hosts.get(bare.lower())
        if found is not None:
            return Target(found[0], found[1], found[2], path)
    if path.startswith(PATH_PREFIX):
        parts = path[len(PATH_PREFIX) :].split("/", 2)
        if len(parts) >= 2 and parts[0] and parts[1]:
            rest = "/" + parts[2] if len(parts) == 3 else "/"
            known = hosts.get(f"/{parts[0]}/{parts[1]}")
            if known is not None:
                return Target(known[0], known[1], known[2], rest)
            return Target(parts[0], parts[1], None, rest)
    return None
