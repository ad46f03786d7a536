"""The ingress: one HTTP listener (and one gRPC listener) in front of every local service.

The proxying itself is `wharf_datapath`'s; this module is its `Backends` over the local runtime.
Requests are routed by Host (`{name}-{namespace}.{domain}`) or by path
(`/serving/{namespace}/{name}/...`), split between revisions by the traffic targets, held while
a revision cold-starts (the activator), and proxied to the least-loaded ready replica over pooled
keep-alive connections. The response carries `x-wharf-revision`, naming the revision that
served it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from wharf_datapath.backends import LOOPBACK, GoneCallback, Lease, Route, Unavailable
from wharf_datapath.grpc_proxy import GrpcRouter as _GrpcRouter
from wharf_datapath.http_proxy import HttpProxy
from wharf_datapath.tracing import RequestInfo, http_request_info
from wharf_local.graphs import Graph, GraphUnavailable
from wharf_local.llms import LLMService, LLMUnavailable, Unit
from wharf_local.routing import GRAPH, LLM, route
from wharf_local.runtime import ActivationTimeout, LocalRuntime
from wharf_protocol.limits import max_message_bytes

REVISION_HEADER = b"x-wharf-revision"


class LocalBackends:
    """`wharf_datapath.Backends` over the local runtime's services, revisions and replicas."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime

    def resolve(self, host: str | None, path: str) -> Route | str:
        runtime = self.runtime
        target = route(host, path, runtime.hosts)
        if target is None:
            return (
                f"no InferenceService for host {host!r} or path {path!r}: use Host "
                f"{{name}}-{{namespace}}.{runtime.settings.domain} or the path "
                "/serving/{namespace}/{name}/..."
            )
        if target.component == GRAPH:
            graph = runtime.graphs.get((target.namespace, target.name))
            if graph is None:
                return f"InferenceGraph {target.namespace}/{target.name} not found"
            return Route(graph, target.path, (target.namespace, target.name, GRAPH))
        if target.component == LLM:
            llm = runtime.llms.get((target.namespace, target.name))
            if llm is None:
                return f"LLMInferenceService {target.namespace}/{target.name} not found"
            return Route(llm, target.path, (target.namespace, target.name, LLM))
        svc = runtime.services.get((target.namespace, target.name))
        if svc is None:
            return f"InferenceService {target.namespace}/{target.name} not found"
        name = target.component or svc.plan.entry.component
        comp = svc.components.get(name)
        if comp is None:
            return f"InferenceService {target.namespace}/{target.name} has no {name}"
        return Route((svc, comp), target.path, (target.namespace, target.name, target.component))

    async def acquire(self, route: Route) -> Lease:
        if isinstance(route.target, Graph):
            graph = route.target
            try:
                port = await self.runtime.graph_runner.acquire(
                    graph, self.runtime.settings.activation_timeout_s
                )
            except GraphUnavailable as exc:
                raise Unavailable(str(exc)) from exc
            return Lease(port, None, graph.name, graph)
        if isinstance(route.target, LLMService):
            llm = route.target
            try:
                unit = await self.runtime.llm_runner.acquire(
                    llm, self.runtime.settings.activation_timeout_s
                )
            except LLMUnavailable as exc:
                raise Unavailable(str(exc)) from exc
            return Lease(unit.port, None, unit.label, unit)
        try:
            rev, replica = await self.runtime.acquire(*route.target)
        except ActivationTimeout as exc:
            raise Unavailable(str(exc)) from exc
        return Lease(replica.http_port, replica.grpc_port, rev.name, (rev, replica))

    def release(self, lease: Lease) -> None:
        if isinstance(lease.handle, Graph):
            self.runtime.graph_runner.release(lease.handle)
        elif isinstance(lease.handle, Unit):
            self.runtime.llm_runner.release(lease.handle)
        else:
            self.runtime.release(*lease.handle)

    def mark_unreachable(self, lease: Lease) -> None:
        if isinstance(lease.handle, Graph):
            self.runtime.graph_runner.mark_unreachable(lease.handle)
        elif isinstance(lease.handle, Unit):
            self.runtime.llm_runner.mark_unreachable(lease.handle)
        else:
            self.runtime.mark_unreachable(*lease.handle)

    def watch_gone(self, callback: GoneCallback) -> None:
        self.runtime.on_replica_exit.append(lambda port: callback(LOOPBACK, port))


class HttpIngress(HttpProxy):
    """The HTTP ingress: `wharf_datapath`'s proxy over the local runtime."""

    def __init__(self, runtime: LocalRuntime, max_body_bytes: int | None = None) -> None:
        super().__init__(
            LocalBackends(runtime),
            max_body_bytes=max_message_bytes() if max_body_bytes is None else max_body_bytes,
            label_header=REVISION_HEADER,
        )
        self.runtime = runtime


def describe_request(scope: MutableMapping[str, Any]) -> RequestInfo:
    """The ingress's span for a request (when tracing is on): the method; the path says where."""
    return http_request_info(scope, f"ingress {scope['method']}")


class GrpcRouter(_GrpcRouter):
    """The gRPC ingress's proxies over the local runtime, with one message limit."""

    def __init__(self, runtime: LocalRuntime, max_message: int | None = None) -> None:
        super().__init__(
            LocalBackends(runtime),
            max_message_bytes=max_message_bytes() if max_message is None else max_message,
            label_metadata=REVISION_HEADER.decode(),
            hint=f" to {{name}}-{{namespace}}.{runtime.settings.domain}",
        )
        self.runtime = runtime
