"""A thin client for any kind by its path, over kubernetes-asyncio's ApiClient (auth, TLS)."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from wharf_controller.desired.meta import FIELD_MANAGER

JSON = dict[str, Any]
MAX_WATCH_LINE = 16 * 1024 * 1024
# a namespaced object's path: /api/v1/namespaces/NS/... or /apis/GROUP/VERSION/namespaces/NS/...
_NAMESPACED = re.compile(r"/namespaces/([^/]+)/")


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


INFERENCE_SERVICE = Kind("serving.kserve.io/v1beta1", "InferenceService", "inferenceservices")
INFERENCE_GRAPH = Kind("serving.kserve.io/v1alpha1", "InferenceGraph", "inferencegraphs")
SERVING_RUNTIME = Kind("serving.kserve.io/v1alpha1", "ServingRuntime", "servingruntimes")
CLUSTER_SERVING_RUNTIME = Kind(
    "serving.kserve.io/v1alpha1", "ClusterServingRuntime", "clusterservingruntimes", False
)
CLUSTER_STORAGE_CONTAINER = Kind(
    "serving.kserve.io/v1alpha1", "ClusterStorageContainer", "clusterstoragecontainers", False
)
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
SECRET = Kind("v1", "Secret", "secrets")
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
SERVICE = Kind("v1", "Service", "services")
HPA = Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
PDB = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
INGRESS = Kind("networking.k8s.io/v1", "Ingress", "ingresses")
HTTP_ROUTE = Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")
SCALED_OBJECT = Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
LEADER_WORKER_SET = Kind("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets")
KNATIVE_SERVICE = Kind("serving.knative.dev/v1", "Service", "services")
# Knative mode and multi-node predictors: the kinds are optional (a missing CRD is reported)
CHILD_KINDS = (
    DEPLOYMENT, SERVICE, HPA, PDB, INGRESS, HTTP_ROUTE, SCALED_OBJECT, KNATIVE_SERVICE,
    LEADER_WORKER_SET,
)  # fmt: skip
KNATIVE_SERVICE_KEY = "Service.serving.knative.dev"


def kind_key(api_version: str, kind: str) -> str:
    """The key of a kind in the controllers' tables: its name, or for Knative's Service (which
    shares the name with the core Service) the name with its group."""
    if kind == KNATIVE_SERVICE.kind and api_version == KNATIVE_SERVICE.api_version:
        return KNATIVE_SERVICE_KEY
    return kind


BY_KIND = {kind_key(k.api_version, k.kind): k for k in (*CHILD_KINDS, INFERENCE_SERVICE)}

# LLMInferenceService, its configs and the kinds of its children
LLM_INFERENCE_SERVICE = Kind(
    "serving.kserve.io/v1alpha2", "LLMInferenceService", "llminferenceservices"
)
LLM_INFERENCE_SERVICE_CONFIG = Kind(
    "serving.kserve.io/v1alpha2", "LLMInferenceServiceConfig", "llminferenceserviceconfigs"
)
ROLE = Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
INFERENCE_POOL = Kind("inference.networking.k8s.io/v1", "InferencePool", "inferencepools")
# applied like the others; the router's peer token Secret is not among them: it is created once
# (llm_controller) and never listed or watched
LLM_CHILD_KINDS = (
    DEPLOYMENT,
    SERVICE,
    LEADER_WORKER_SET,
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    INFERENCE_POOL,
    HTTP_ROUTE,
)
BY_KIND.update({k.kind: k for k in (*LLM_CHILD_KINDS, LLM_INFERENCE_SERVICE)})


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class Api:
    """Requests by path; `writes` counts every write the controller sends, and `writes_in` those
    to one namespace's objects (for no-op checks)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.client = api
        self.writes = 0
        self._writes_by_namespace: collections.Counter[str] = collections.Counter()

    def writes_in(self, namespace: str) -> int:
        """Writes sent to objects of `namespace` (not counting cluster-scoped ones)."""
        return self._writes_by_namespace[namespace]

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        if method != "GET":
            self.writes += 1
            namespace = _NAMESPACED.search(path)
            if namespace is not None:
                self._writes_by_namespace[namespace.group(1)] += 1
        try:
            response = await self.client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
            )
            raw = await response.read()
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), _reason(exc.body) or str(exc.reason)) from None
        if response.status >= 400:
            raise ApiError(response.status, _reason(raw) or raw[:200].decode(errors="replace"))
        data: JSON = json.loads(raw) if raw else {}
        return data

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> JSON | None:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def apply(self, obj: Mapping[str, Any]) -> JSON:
        """Server-side apply as `wharf-controller`, taking fields others changed by hand."""
        kind = BY_KIND[kind_key(str(obj.get("apiVersion", "")), obj["kind"])]
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )

    async def create(self, kind: Kind, obj: Mapping[str, Any]) -> JSON:
        """POST a new object (409 when it exists)."""
        return await self.request(
            "POST", kind.path(obj["metadata"].get("namespace")), body=dict(obj)
        )

    async def delete(self, kind: Kind, name: str, namespace: str | None, uid: str | None) -> None:
        body: JSON = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", kind.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    async def watch(self, path: str, query: Mapping[str, str]) -> AsyncIterator[JSON]:
        """The events of one watch request, until the server ends it."""
        try:
            response = await self.client.call_api(
                path,
                "GET",
                query_params=[*query.items(), ("watch", "true")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=int(query.get("timeoutSeconds", "300")) + 30,
            )
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), _reason(exc.body) or str(exc.reason)) from None
        if response.status >= 400:
            raw = await response.read()
            response.release()
            raise ApiError(response.status, _reason(raw) or raw[:200].decode(errors="replace"))
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                if len(buffer) > MAX_WATCH_LINE:
                    raise ApiError(0, "a watch event is larger than the limit")
        finally:
            response.release()


def _reason(body: Any) -> str | None:
    try:
        message = json.loads(body).get("message")
    except (TypeError, ValueError, AttributeError):
        return None
    return str(message) if message else None


async def connect(kubeconfig: str | None) -> client.ApiClient:
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


# The model cache: its resources, what it reads (nodes) and the kinds of its children
LOCAL_MODEL_CACHE = Kind("serving.kserve.io/v1alpha1", "LocalModelCache", "localmodelcaches", False)
LOCAL_MODEL_NAMESPACE_CACHE = Kind(
    "serving.kserve.io/v1alpha1", "LocalModelNamespaceCache", "localmodelnamespacecaches"
)
LOCAL_MODEL_NODE_GROUP = Kind(
    "serving.kserve.io/v1alpha1", "LocalModelNodeGroup", "localmodelnodegroups", False
)
LOCAL_MODEL_NODE = Kind("serving.kserve.io/v1alpha1", "LocalModelNode", "localmodelnodes", False)
NODE = Kind("v1", "Node", "nodes", False)
DAEMON_SET = Kind("apps/v1", "DaemonSet", "daemonsets")
PERSISTENT_VOLUME = Kind("v1", "PersistentVolume", "persistentvolumes", False)
PERSISTENT_VOLUME_CLAIM = Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims")
MODEL_CACHE_CHILD_KINDS = (LOCAL_MODEL_NODE, DAEMON_SET, PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM)
BY_KIND.update(
    {k.kind: k for k in (*MODEL_CACHE_CHILD_KINDS, LOCAL_MODEL_CACHE, LOCAL_MODEL_NAMESPACE_CACHE)}
)
