"""The API server, through kubernetes-asyncio: the node's LocalModelNode (list+watch, status),
node groups' storage limits, caches' declared sizes (LocalModelCache, or LocalModelNamespaceCache
for a model listed with a namespace), and Events."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_model_agent.quantity import parse_bytes

GROUP = "serving.kserve.io"
VERSION = "v1alpha1"
NODES = "localmodelnodes"
NODE_GROUPS = "localmodelnodegroups"
CACHES = "localmodelcaches"
NAMESPACE_CACHES = "localmodelnamespacecaches"
# Events about cluster-scoped objects go to the `default` namespace, as kubectl looks for them.
EVENT_NAMESPACE = "default"
COMPONENT = "wharf-model-agent"

log = logging.getLogger(__name__)


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client: the given kubeconfig, else the pod's service account, else ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


class Backoff:
    """Exponential backoff with jitter for reconnecting: 0.5 s doubling up to 30 s."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)


class LocalModelApi:
    def __init__(self, api: client.ApiClient, *, watch_timeout_s: int = 300) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.watch_timeout_s = watch_timeout_s

    async def watch_node(self, name: str) -> AsyncIterator[dict[str, Any] | None]:
        """The node's LocalModelNode now and after every change (None while there is none).

        List, then watch from the list's resourceVersion; a watch that ends is resumed from the
        last version seen; an expired version (410 Gone) means list again; other errors back
        off and retry, forever.
        """
        selector = f"metadata.name={name}"
        backoff = Backoff()
        while True:
            try:
                listing = await self.custom.list_cluster_custom_object(
                    GROUP, VERSION, NODES, field_selector=selector
                )
                items = listing.get("items") or []
                yield items[0] if items else None
                version = listing["metadata"]["resourceVersion"]
                backoff.reset()
                while True:
                    async with watch.Watch() as stream:
                        async for event in stream.stream(
                            self.custom.list_cluster_custom_object,
                            GROUP,
                            VERSION,
                            NODES,
                            field_selector=selector,
                            resource_version=version,
                            allow_watch_bookmarks=True,
                            timeout_seconds=self.watch_timeout_s,
                        ):
                            version = stream.resource_version or version
                            if event["type"] == "BOOKMARK":
                                continue
                            yield None if event["type"] == "DELETED" else event["raw_object"]
                    backoff.reset()
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch of LocalModelNode %s expired; listing again", name)
                    continue
                delay = backoff.next_delay()
                log.warning(
                    "LocalModelNode %s: API error %s %s; retrying in %.1fs",
                    name,
                    exc.status,
                    exc.reason,
                    delay,
                )
                await asyncio.sleep(delay)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "LocalModelNode %s: %s; retrying in %.1fs", name, type(exc).__name__, delay
                )
                await asyncio.sleep(delay)

    async def patch_status(self, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource (no resourceVersion: the agent owns the status)."""
        # The client would pick JSON Patch for a dict body; its stub lacks `_content_type`.
        await self.custom.patch_cluster_custom_object_status(  # type: ignore[call-arg]
            GROUP, VERSION, NODES, name, patch, _content_type="application/merge-patch+json"
        )

    async def _get(
        self, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            if namespace is None:
                obj: dict[str, Any] = await self.custom.get_cluster_custom_object(
                    GROUP, VERSION, plural, name
                )
            else:
                obj = await self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def storage_limit(self, node_group: str) -> int | None:
        """The group's `spec.storageLimit` in bytes; None when the group or limit is absent."""
        group = await self._get(NODE_GROUPS, node_group)
        value = ((group or {}).get("spec") or {}).get("storageLimit")
        if value is None:
            return None
        try:
            return parse_bytes(value)
        except ValueError as exc:
            log.warning("LocalModelNodeGroup %s: spec.storageLimit %s", node_group, exc)
            return None

    async def declared_size(self, model: str, namespace: str | None = None) -> int | None:
        """The cache's `spec.modelSize` in bytes, when it has one: the LocalModelCache `model`,
        or with a namespace the LocalModelNamespaceCache `namespace/model`."""
        if namespace is None:
            cache = await self._get(CACHES, model)
        else:
            cache = await self._get(NAMESPACE_CACHES, model, namespace)
        value = ((cache or {}).get("spec") or {}).get("modelSize")
        if value is None:
            return None
        try:
            return parse_bytes(value)
        except ValueError:
            return None

    async def record_event(
        self, node: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        """An Event on the LocalModelNode; failures to record one are only logged."""
        meta = node.get("metadata") or {}
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta.get('name', 'node')}."),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="LocalModelNode",
                name=meta.get("name"),
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=COMPONENT),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await self.core.create_namespaced_event(EVENT_NAMESPACE, event)
        except (ApiException, aiohttp.ClientError) as exc:
            log.warning("could not record event %s: %s", reason, exc)
