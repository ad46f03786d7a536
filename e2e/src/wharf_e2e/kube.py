"""A small test client over kubernetes-asyncio: server-side apply, get, delete, wait."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

FIELD_MANAGER = "wharf-e2e"
T = TypeVar("T")


class Kube:
    """The dynamic client: any kind by apiVersion and kind, as `kubectl` reaches it."""

    def __init__(self, api: client.ApiClient, dynamic: DynamicClient) -> None:
        self.api = api
        self.dynamic = dynamic

    @classmethod
    def from_kubeconfig(cls, path: Path) -> _KubeContext:
        return _KubeContext(path)

    async def resource(self, api_version: str, kind: str) -> Any:
        return await self.dynamic.resources.get(api_version=api_version, kind=kind)

    async def apply(self, obj: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Server-side apply `obj` (as `kubectl apply --server-side --force-conflicts`)."""
        resource = await self.resource(obj["apiVersion"], obj["kind"])
        body = dict(obj)
        if resource.namespaced and namespace is not None:
            body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
        result = await self.dynamic.server_side_apply(
            resource,
            body=body,
            name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace") if resource.namespaced else None,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        applied: dict[str, Any] = result.to_dict()
        return applied

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        resource = await self.resource(api_version, kind)
        try:
            found = await self.dynamic.get(resource, name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj: dict[str, Any] = found.to_dict()
        return obj

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> None:
        resource = await self.resource(api_version, kind)
        await self.dynamic.delete(
            resource, name=name, namespace=namespace, body={"propagationPolicy": "Background"}
        )

    async def create_namespace(self, name: str) -> None:
        await client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name}})

    async def delete_namespace(self, name: str) -> None:
        try:
            await client.CoreV1Api(self.api).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


async def wait_for(
    probe: Callable[[], Awaitable[T]], what: str, timeout: float = 60.0, interval: float = 0.25
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class _KubeContext:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._api: client.ApiClient | None = None

    async def __aenter__(self) -> Kube:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(self._path), client_configuration=configuration
        )
        self._api = client.ApiClient(configuration)
        dynamic = await DynamicClient(self._api)
        return Kube(self._api, dynamic)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._api is not None:
            await self._api.close()
