"""The gateway with tracing on: each call to an engine pod in a client span that names the pod,
its role (prefill, decode or both) and the model, and whose `traceparent` the pod receives.

A subclass, chosen at start only when OTEL_* asks for traces: the untraced gateway's request
path has no check and no frame for it. The request's own server span comes from
`wharf_datapath.tracing.traced_app` around the app (`describe_request` says which requests).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from wharf_datapath import tracing as tr
from wharf_router.gateway.app import GENERATE_APIS, Gateway, Send, _Exchange
from wharf_router.gateway.config import GatewayConfig
from wharf_router.gateway.endpoints import EndpointSource, Role
from wharf_router.gateway.limits import ApiKeys
from wharf_router.gateway.peer_link import PeerSettings
from wharf_router.gateway.pool import Lease, Pod

# the span of a call to a pod of each role: a P/D request makes one prefill and one decode call
PHASE: dict[Role, str] = {"prefill": "prefill", "decode": "decode", "both": "generate"}


class TracedGateway(Gateway):
    def __init__(
        self,
        tracing: tr.Tracing,
        config: GatewayConfig,
        source: EndpointSource,
        keys: ApiKeys | None = None,
        peers: PeerSettings | None = None,
    ) -> None:
        super().__init__(config, source, keys, peers)
        self.tracing = tracing

    async def _try(
        self,
        ex: _Exchange,
        send: Send,
        lease: Lease,
        path: str,
        headers: list[tuple[bytes, bytes]],
        raw: bytes,
        final: Callable[[], bool],
    ) -> str | None:
        pod = lease.pod
        with self.tracing.client_span(PHASE[pod.role], pod_attributes(ex, pod)) as span:
            headers = self.tracing.inject(headers)
            outcome = await super()._try(ex, send, lease, path, headers, raw, final)
            if outcome is not None:
                span.set_attribute("wharf.outcome", outcome)  # not answered: another pod tries
            elif ex.status:
                tr.record_status(span, ex.status)
            return outcome

    async def _prefill(
        self,
        ex: _Exchange,
        pod: Pod,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: dict[str, Any],
    ) -> dict[str, Any] | None:
        with self.tracing.client_span(PHASE[pod.role], pod_attributes(ex, pod)) as span:
            params = await super()._prefill(ex, pod, path, self.tracing.inject(headers), body)
            span.set_attribute("wharf.kv_transfer_params", params is not None)
            return params


def pod_attributes(ex: _Exchange, pod: Pod) -> dict[str, str | int]:
    host, port = pod.endpoint.address
    return {
        tr.POD: pod.name,
        tr.ROLE: pod.role,
        tr.LLM_MODEL: ex.model or "",
        tr.SERVER_ADDRESS: host,
        tr.SERVER_PORT: port,
    }


def describe_request(scope: MutableMapping[str, Any]) -> tr.RequestInfo | None:
    """The gateway's span for a request: generation requests only, not health checks, metrics
    scrapes or model listings."""
    path: str = scope["path"]
    route = path[7:] if path.startswith("/openai/v1/") else path
    if route not in GENERATE_APIS or scope["method"] != "POST":
        return None
    return tr.http_request_info(scope, f"POST {route}", route)
