"""A small test client over kubernetes-asyncio: server-side apply, get, delete, wait."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

FIELD_MANAGER = "wharf-e2e"
T = TypeVar("T")


class KubeError(Exception):
    """The API server refused a request; `code` is the HTTP status, `message` its reason."""

    def __init__(self, code: int, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.body = dict(body)


def _checked(result: Any) -> dict[str, Any]:
    """The object the server returned, or KubeError when it returned a failure `Status`.

    kubernetes-asyncio's dynamic client hands back a failure `Status` instead of raising.
    """
    data: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    if data.get("kind") == "Status" and data.get("status") == "Failure":
        raise KubeError(int(data.get("code") or 0), str(data.get("message")), data)
    return data


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
        return _checked(result)

    async def install_crd(self, crd: Mapping[str, Any], within: float = 60.0) -> None:
        """Apply a CustomResourceDefinition and wait until the API server serves it."""
        await self.apply(crd)
        name = crd["metadata"]["name"]

        async def established() -> bool:
            found = await self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            conditions = (found or {}).get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        await wait_for(established, f"CRD {name} established", within)

    async def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create `obj` (as `kubectl create`): schema errors come back as 422 Invalid."""
        resource = await self.resource(obj["apiVersion"], obj["kind"])
        return _checked(
            await self.dynamic.create(
                resource, body=dict(obj), namespace=namespace if resource.namespaced else None
            )
        )

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        resource = await self.resource(api_version, kind)
        try:
            return _checked(await self.dynamic.get(resource, name=name, namespace=namespace))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> None:
        resource = await self.resource(api_version, kind)
        _checked(
            await self.dynamic.delete(
                resource, name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        )

    async def create_namespace(self, name: str) -> None:
        namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        await client.CoreV1Api(self.api).create_namespace(namespace)

    async def delete_namespace(self, name: str) -> None:
        try:
            await client.CoreV1Api(self.api).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


async def wait_for(
    probe: Callable[[], Awaitable[T]], what: str, within: float = 60.0, interval: float = 0.25
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `within` s."""
    last: T | None = None
    try:
        async with asyncio.timeout(within):
            # Polling on purpose: the state lives in the API server, not in this process.
            while not (last := await probe()):  # noqa: ASYNC110
                await asyncio.sleep(interval)
    except TimeoutError:
        raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}: {last!r}") from None
    return last


class _KubeContext:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._api: client.ApiClient | None = None
        self._port = 0
        self._others: set[str] = set()

    async def __aenter__(self) -> Kube:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(self._path), client_configuration=configuration
        )
        self._port = _port_of(configuration.host or "")
        self._others = _sockets_to(self._port)  # other clients' connections: not waited for
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
            await sockets_closed(self._port, self._others)


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (80 if parts.scheme == "http" else 443)


def _sockets_to(port: int) -> set[str]:
    """The inodes of this process's TCP sockets connected to `port` (any host)."""
    mine: set[str] = set()
    with os.scandir("/proc/self/fd") as fds:
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    found: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[9] in mine:
                found.add(cols[9])
    return found


async def sockets_closed(port: int, others: set[str], within_s: float = 10.0) -> None:
    """Wait until the connections to the API server are closed, not only asked to close.

    A TLS connection closes after its close_notify exchange and one more turn of the event loop.
    A cancelled watch's connection is released before the session closes, so the session's
    close does not wait for it. pytest-asyncio closes each test's loop right after its fixtures,
    which could leave the socket open; Python then warned "unclosed socket" later, inside
    whichever test the garbage collector happened to run in, and failed that test.
    """
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _sockets_to(port) - others:
            return
        await asyncio.sleep(0.01)
