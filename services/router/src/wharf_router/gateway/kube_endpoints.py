"""Endpoints from Kubernetes: the ready pods matching a label selector, with their role from a
pod label (`prefill`, `decode`, `both`; llm-d's `llm-d.ai/role` values work as they are).

A list, then a watch from its resourceVersion; every change hands the whole current list to
the pool. A watch that ends or fails is resumed (relisted on 410 Gone) after a backoff. The
decision of what a pod means (`endpoint_of`) is a pure function.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_router.gateway.endpoints import Endpoint, EndpointError, OnChange, make_endpoint

log = logging.getLogger("wharf.router.gateway")


@dataclass(frozen=True, slots=True)
class KubeSelection:
    namespace: str
    selector: str
    role_label: str = "llm-d.ai/role"
    port: int = 8000
    kubeconfig: Path | None = None


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
    try:
        return make_endpoint(
            f"http://{host}:{selection.port}", role, meta.name, where=f"pod {meta.name}"
        )
    except EndpointError as exc:
        log.warning("%s: skipped", exc)
        return None


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
            core = client.CoreV1Api(api)
            pods: dict[str, Any] = {}

            def publish() -> None:
                found = (endpoint_of(p, sel) for p in pods.values())
                on_change(sorted((e for e in found if e is not None), key=lambda e: e.name))

            version: str | None = None
            while True:
                try:
                    if version is None:
                        listed = await core.list_namespaced_pod(
                            sel.namespace, label_selector=sel.selector
                        )
                        pods = {p.metadata.name: p for p in listed.items}
                        version = listed.metadata.resource_version
                        publish()
                    w = watch.Watch()
                    async with w.stream(
                        core.list_namespaced_pod,
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
                            "watching pods %r in %s: %s", sel.selector, sel.namespace, exc.reason
                        )
                        await asyncio.sleep(self.backoff)
                except Exception as exc:
                    log.warning("watching pods %r in %s: %s", sel.selector, sel.namespace, exc)
                    await asyncio.sleep(self.backoff)
