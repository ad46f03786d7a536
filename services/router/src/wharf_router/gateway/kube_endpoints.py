"""Endpoints from Kubernetes, from one of two kinds of object selected by label:

- pods (`discovery="pods"`): the ready pods, role from a pod label (`prefill`, `decode`,
  `both`; llm-d's `llm-d.ai/role` values work as they are);
- EndpointSlices (`discovery="endpointslices"`, discovery.k8s.io/v1): a Service's endpoints as
  the EndpointSlice controller publishes them, role from a label of the slice (the controller
  copies the Service's labels onto its slices).

A list, then a watch from its resourceVersion; every change hands the whole current list to
the pool. A watch that ends or fails is resumed (relisted on 410 Gone) after a backoff. What
an object means (`endpoint_of`, `endpoints_from_slices`) is decided by pure functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_router.gateway.endpoints import (
    MAX_ENDPOINTS,
    Endpoint,
    EndpointError,
    OnChange,
    make_endpoint,
)

log = logging.getLogger("wharf.router.gateway")


@dataclass(frozen=True, slots=True)
class KubeSelection:
    namespace: str
    selector: str
    role_label: str = "llm-d.ai/role"
    port: int | None = None  # None: 8000 for pods, the slice's own port for EndpointSlices
    kubeconfig: Path | None = None
    discovery: Literal["pods", "endpointslices"] = "pods"


DEFAULT_PORT = 8000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoint_of(pod: Any, selection: KubeSelection) -> Endpoint | None:
    """The endpoint a pod stands for, or None while it is not ready to take requests."""
    meta, status = pod.metadata, pod.status
    if meta is None or status is None or meta.deletion_timestamp is not None:
        return None
    if status.phase != "Running" or not status.pod_ip:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    if not ready:
        return None
    role = (meta.labels or {}).get(selection.role_label, "both")
    host = status.pod_ip if ":" not in status.pod_ip else f"[{status.pod_ip}]"
    port = selection.port or DEFAULT_PORT
    try:
        return make_endpoint(f"http://{host}:{port}", role, meta.name, where=f"pod {meta.name}")
    except EndpointError as exc:
        log.warning("%s: skipped", exc)
        return None


@dataclass(frozen=True, slots=True)
class SliceEndpoints:
    """What a Service's EndpointSlices say: the endpoints that take new requests, and the
    names of those that are terminating but still serving (they finish what they have; the
    gateway sends them nothing new, and their in-flight requests are not cut)."""

    serving: list[Endpoint]
    draining: list[str]


def _condition(value: bool | None, unknown: bool) -> bool:
    # discovery.k8s.io/v1: a nil `ready` or `serving` is to be read as true, a nil
    # `terminating` as false
    return unknown if value is None else bool(value)


def _slice_port(sl: Any) -> int | None:
    numbered = [
        p.port for p in sl.ports or [] if p.port is not None and p.protocol in (None, "TCP")
    ]
    return numbered[0] if len(numbered) == 1 else None


def endpoints_from_slices(slices: Iterable[Any], selection: KubeSelection) -> SliceEndpoints:
    """The endpoint set that a Service's EndpointSlices describe.

    An endpoint is taken while `ready` (nil counts as ready) and not `terminating`; one that is
    `terminating` and still `serving` is draining. The port is `selection.port` when given,
    else the slice's port when it has exactly one TCP port; slices with neither, and FQDN
    slices, are skipped with a warning. An endpoint listed in several slices (during a
    controller's move, or one per address family) counts once, by name (its pod's name, else
    its address); a serving listing wins over a draining one.
    """
    serving: dict[str, Endpoint] = {}
    draining: set[str] = set()
    for sl in slices:
        meta = sl.metadata
        where = f"EndpointSlice {meta.name if meta is not None else '?'}"
        if sl.address_type not in ("IPv4", "IPv6"):
            continue
        port = selection.port or _slice_port(sl)
        if port is None:
            log.warning("%s: no single TCP port and no --kube-port: skipped", where)
            continue
        role = ((meta.labels if meta is not None else None) or {}).get(selection.role_label, "both")
        for ep in sl.endpoints or []:
            if not ep.addresses:
                continue
            address = ep.addresses[0]  # the others are for the same endpoint: one is enough
            ref = ep.target_ref
            name = ref.name if ref is not None and ref.kind == "Pod" and ref.name else address
            cond = ep.conditions
            ready = _condition(cond.ready if cond is not None else None, True)
            serves = _condition(cond.serving if cond is not None else None, True)
            terminating = _condition(cond.terminating if cond is not None else None, False)
            if terminating:
                if serves:
                    draining.add(name)
                continue
            if not ready or name in serving:
                continue
            if len(serving) >= MAX_ENDPOINTS:
                log.warning("%s: more than %d endpoints: the rest skipped", where, MAX_ENDPOINTS)
                break
            host = address if ":" not in address else f"[{address}]"
            try:
                serving[name] = make_endpoint(f"http://{host}:{port}", role, name, where=where)
            except EndpointError as exc:
                log.warning("%s: skipped", exc)
    return SliceEndpoints(
        serving=sorted(serving.values(), key=lambda e: e.name),
        draining=sorted(draining - set(serving)),
    )


class KubeEndpoints:
    def __init__(self, selection: KubeSelection, backoff: float = 1.0) -> None:
        self.selection = selection
        self.backoff = backoff

    async def _api(self) -> client.ApiClient:
        if self.selection.kubeconfig is not None:
            conf = client.Configuration()
            await config.load_kube_config(
                config_file=str(self.selection.kubeconfig), client_configuration=conf
            )
            return client.ApiClient(conf)
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()
        return client.ApiClient()

    async def run(self, on_change: OnChange) -> None:
        sel = self.selection
        async with await self._api() as api:
            pods: dict[str, Any] = {}  # the watched objects (pods or slices) by name
            what = "pods" if sel.discovery == "pods" else "EndpointSlices"
            lister: Any
            if sel.discovery == "pods":
                lister = client.CoreV1Api(api).list_namespaced_pod

                def endpoints() -> list[Endpoint]:
                    found = (endpoint_of(p, sel) for p in pods.values())
                    return sorted((e for e in found if e is not None), key=lambda e: e.name)
            else:
                lister = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice
                draining: list[str] = []

                def endpoints() -> list[Endpoint]:
                    nonlocal draining
                    view = endpoints_from_slices(pods.values(), sel)
                    if view.draining != draining:
                        draining = view.draining
                        log.info("draining (no new requests): %s", ", ".join(draining) or "none")
                    return view.serving

            def publish() -> None:
                on_change(endpoints())

            version: str | None = None
            while True:
                try:
                    if version is None:
                        listed = await lister(sel.namespace, label_selector=sel.selector)
                        pods = {p.metadata.name: p for p in listed.items}
                        version = listed.metadata.resource_version
                        publish()
                    w = watch.Watch()
                    async with w.stream(
                        lister,
                        sel.namespace,
                        label_selector=sel.selector,
                        resource_version=version,
                        timeout_seconds=300,
                    ) as events:
                        async for event in events:
                            kind, obj = event["type"], event["object"]
                            if kind == "ERROR":
                                version = None  # too old: list again
                                break
                            name = obj.metadata.name
                            version = obj.metadata.resource_version
                            if kind == "DELETED":
                                pods.pop(name, None)
                            else:
                                pods[name] = obj
                            publish()
                except asyncio.CancelledError:
                    raise
                except ApiException as exc:
                    if exc.status == 410:
                        version = None
                    else:
                        log.warning(
                            "watching %s %r in %s: %s",
                            what,
                            sel.selector,
                            sel.namespace,
                            exc.reason,
                        )
                        await asyncio.sleep(self.backoff)
                except Exception as exc:
                    log.warning("watching %s %r in %s: %s", what, sel.selector, sel.namespace, exc)
                    await asyncio.sleep(self.backoff)
