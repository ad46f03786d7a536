"""The model cache on Kubernetes: what LocalModelCaches, LocalModelNamespaceCaches and
LocalModelNodeGroups ask for, as objects (pure).

As KServe's localmodel controller: a node group's nodes are those its PersistentVolume's
`nodeAffinity` admits; every such node gets a LocalModelNode (named after the node) listing the
models of every cache that names the group (`modelName` is the cache's name); a serving namespace
gets a PVC `{cache}-{group}` bound to its own PV `{cache}-{group}-{namespace}` (PVs are
cluster-scoped, a claim binds one volume). Unlike KServe there is no download Job: the
`wharf-model-agent` DaemonSet `{group}` of the agent namespace runs on the group's nodes and
downloads in-process, into the group's host folder (a `local` or `hostPath` volume) or, for any
other volume source, through the PVC `{group}` of the agent namespace.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_api.resources.local_model_cache import LocalModelCacheSpec
from wharf_controller.desired.meta import owner_reference

JSON = dict[str, Any]

AGENT_IMAGE = "ghcr.io/wharf-serving/model-agent:0.1.0"
CACHE_ROOT = "/mnt/models"
API_VERSION = "serving.kserve.io/v1alpha1"
CACHE_LABEL = "serving.kserve.io/localmodelcache"
GROUP_LABEL = "serving.kserve.io/localmodelnodegroup"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = {"app.kubernetes.io/managed-by": "wharf-controller"}
NODE_GROUP_ANNOTATION = "serving.kserve.io/nodegroup"
DISABLE_ANNOTATION = "serving.kserve.io/disable-localmodel"
# KServe's internal markers on a served object, kept for tools that read them
LOCAL_MODEL_LABEL = "internal.serving.kserve.io/localmodel"
SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/localmodel-sourceuri"
PVC_NAME_ANNOTATION = "internal.serving.kserve.io/localmodel-pvc-name"
MAX_NAME = 253


class ModelCacheError(ValueError):
    """A cache or node group that cannot be rendered; the message names the object and field."""


@dataclass(frozen=True)
class Cache:
    """One LocalModelCache (namespace None) or LocalModelNamespaceCache."""

    name: str
    namespace: str | None
    uid: str | None
    source_model_uri: str
    node_groups: tuple[str, ...]
    service_account_name: str | None
    storage: JSON | None

    @property
    def kind(self) -> str:
        return "LocalModelCache" if self.namespace is None else "LocalModelNamespaceCache"


def read_cache(obj: Mapping[str, Any]) -> Cache:
    """The parts of a stored cache object the builders use (spec normalised by wharf-api:
    the older `nodeGroup` is read into `nodeGroups`)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    where = f"{obj.get('kind', 'LocalModelCache')} {name!r}"
    try:
        spec = LocalModelCacheSpec.model_validate(obj.get("spec") or {})
    except ValueError as exc:
        raise ModelCacheError(f"{where}: spec: {exc}") from exc
    namespace = meta.get("namespace") if obj.get("kind") == "LocalModelNamespaceCache" else None
    return Cache(
        name=name,
        namespace=namespace,
        uid=meta.get("uid"),
        source_model_uri=spec.source_model_uri,
        node_groups=tuple(spec.node_groups),
        service_account_name=spec.service_account_name,
        storage=spec.storage.model_dump(by_alias=True, exclude_none=True) if spec.storage else None,
    )


# --- which nodes a node group holds -------------------------------------------------------


def _labels_match(labels: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(node: Mapping[str, Any], term: Mapping[str, Any]) -> bool:
    # Kubernetes: an empty term matches no node; the expressions of a term are ANDed.
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    node_fields = {"metadata.name": meta.get("name", "")}
    return all(_labels_match(labels, e) for e in exprs) and all(
        _labels_match(node_fields, f) for f in fields
    )


def node_selector_terms(group: Mapping[str, Any]) -> list[JSON]:
    """The required node selector terms of the group's PersistentVolume (empty: every node)."""
    pv = (group.get("spec") or {}).get("persistentVolumeSpec") or {}
    required = (pv.get("nodeAffinity") or {}).get("required") or {}
    return list(required.get("nodeSelectorTerms") or [])


def group_nodes(group: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names of the nodes the group's volume can live on (its terms are ORed), sorted."""
    terms = node_selector_terms(group)
    names = [
        n["metadata"]["name"] for n in nodes if not terms or any(_term_matches(n, t) for t in terms)
    ]
    return sorted(names)


# --- LocalModelNodes ------------------------------------------------------------------------


def local_model_nodes(
    caches: Sequence[Cache],
    groups: Mapping[str, Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
) -> list[JSON]:
    """One LocalModelNode per node that some cache's node group holds, listing those caches'
    models in a stable order. A cache naming a group that does not exist yet is left out (its
    status says so); the object of a node that holds no model any more is pruned."""
    wanted: dict[str, list[JSON]] = {}
    for group_name, group in sorted(groups.items()):
        members = group_nodes(group, nodes)
        for cache in sorted(caches, key=lambda c: (c.namespace or "", c.name)):
            if group_name not in cache.node_groups:
                continue
            entry: JSON = {"sourceModelUri": cache.source_model_uri, "modelName": cache.name}
            if cache.namespace is not None:
                entry["namespace"] = cache.namespace
            entry["nodeGroup"] = group_name
            if cache.service_account_name:
                entry["serviceAccountName"] = cache.service_account_name
            if cache.storage:
                entry["storage"] = cache.storage
            for node in members:
                models = wanted.setdefault(node, [])
                # a cache naming two groups that share a node is one model on that node
                if all(
                    (m["modelName"], m.get("namespace")) != (cache.name, cache.namespace)
                    for m in models
                ):
                    models.append(entry)
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "LocalModelNode",
            "metadata": {"name": node, "labels": dict(MANAGED_BY)},
            "spec": {"localModels": models},
        }
        for node, models in sorted(wanted.items())
    ]


# --- volumes --------------------------------------------------------------------------------


def _group_spec(group: Mapping[str, Any]) -> tuple[str, JSON, JSON]:
    name = (group.get("metadata") or {}).get("name") or ""
    spec = group.get("spec") or {}
    pv, pvc = spec.get("persistentVolumeSpec"), spec.get("persistentVolumeClaimSpec")
    if not isinstance(pv, dict) or not isinstance(pvc, dict):
        raise ModelCacheError(
            f"LocalModelNodeGroup {name!r}: spec.persistentVolumeSpec and "
            "spec.persistentVolumeClaimSpec are required"
        )
    return name, pv, pvc


def _checked(name: str, what: str) -> str:
    if len(name) > MAX_NAME:
        raise ModelCacheError(f"{what} name {name[:40]!r}... is longer than {MAX_NAME} characters")
    return name


def volume_pair(
    group: Mapping[str, Any],
    *,
    claim_name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: JSON | None,
) -> tuple[JSON, JSON]:
    """A PV from the group's `persistentVolumeSpec` (named `{claim}-{namespace}`) and the PVC
    `claim_name` in `namespace` bound to it by name, both read-write for the agent and mounted
    read-only by serving pods."""
    _, pv_spec, pvc_spec = _group_spec(group)
    pv_name = _checked(f"{claim_name}-{namespace}", "PersistentVolume")
    meta_extra: JSON = {"ownerReferences": [owner]} if owner else {}
    pv: JSON = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": dict(labels), **meta_extra},
        "spec": {**pv_spec, "claimRef": {"namespace": namespace, "name": claim_name}},
    }
    pvc: JSON = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": _checked(claim_name, "PersistentVolumeClaim"),
            "namespace": namespace,
            "labels": dict(labels),
            **meta_extra,
        },
        "spec": {**pvc_spec, "volumeName": pv_name},
    }
    if "storageClassName" in pv_spec and "storageClassName" not in pvc_spec:
        # an unset class on the claim means the default class, which would not bind this PV
        pvc["spec"]["storageClassName"] = pv_spec["storageClassName"]
    return pv, pvc


def serving_claim_name(cache: Cache, group: str) -> str:
    return f"{cache.name}-{group}"


def serving_volumes(
    cache: Cache,
    cache_obj: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, Any]],
    namespaces: Iterable[str],
) -> list[JSON]:
    """The PV and PVC of each of the cache's node groups in each namespace whose serving pods
    use the cache (a namespace cache: only its own namespace)."""
    owner = owner_reference(cache_obj) if cache_obj.get("metadata", {}).get("uid") else None
    out: list[JSON] = []
    for namespace in sorted(set(namespaces)):
        if cache.namespace is not None and namespace != cache.namespace:
            continue
        for group_name in cache.node_groups:
            group = groups.get(group_name)
            if group is None:
                continue
            labels = {**MANAGED_BY, CACHE_LABEL: cache.name, GROUP_LABEL: group_name}
            # a namespaced owner cannot own the cluster-scoped PV; the reconciler prunes it
            pv_owner = owner if cache.namespace is None else None
            pv, pvc = volume_pair(
                group,
                claim_name=serving_claim_name(cache, group_name),
                namespace=namespace,
                labels=labels,
                owner=pv_owner,
            )
            if cache.namespace is not None and owner is not None:
                pvc["metadata"]["ownerReferences"] = [owner]
            out.extend([pv, pvc])
    return out


# --- the agent ------------------------------------------------------------------------------


def _host_path(pv_spec: Mapping[str, Any]) -> str | None:
    for source in ("local", "hostPath"):
        path = (pv_spec.get(source) or {}).get("path")
        if isinstance(path, str) and path:
            return path
    return None


def agent_objects(
    group: Mapping[str, Any],
    *,
    namespace: str,
    image: str = AGENT_IMAGE,
    service_account: str = "wharf-model-agent",
    fs_group: int | None = None,
) -> list[JSON]:
    """The `wharf-model-agent` DaemonSet of one node group (its pods run on the group's nodes
    only), with the PV + PVC `{group}` of the agent namespace when the volume is not a host
    folder the agent can mount directly. Owned by nobody: the reconciler prunes it when no
    cache names the group any more."""
    name, pv_spec, _ = _group_spec(group)
    labels = {**MANAGED_BY, GROUP_LABEL: name, COMPONENT_LABEL: "model-agent"}
    host = _host_path(pv_spec)
    out: list[JSON] = []
    if host is not None:
        volume: JSON = {"name": "cache", "hostPath": {"path": host, "type": "DirectoryOrCreate"}}
    else:
        out.extend(
            volume_pair(group, claim_name=name, namespace=namespace, labels=labels, owner=None)
        )
        volume = {"name": "cache", "persistentVolumeClaim": {"claimName": name}}
    terms = node_selector_terms(group)
    pod_spec: JSON = {
        "serviceAccountName": service_account,
        "containers": [
            {
                "name": "model-agent",
                "image": image,
                "args": ["--cache-root", CACHE_ROOT, "--metrics-port", "9100"],
                "env": [
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ],
                "ports": [{"name": "metrics", "containerPort": 9100}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "200Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "volumeMounts": [{"name": "cache", "mountPath": CACHE_ROOT}],
            }
        ],
        "volumes": [volume],
    }
    if fs_group is not None:
        pod_spec["securityContext"] = {"fsGroup": fs_group}
    if terms:
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    selector = {GROUP_LABEL: name, COMPONENT_LABEL: "model-agent"}
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {
                "name": _checked(f"wharf-model-agent-{name}"[:63].rstrip("-"), "DaemonSet"),
                "namespace": namespace,
                "labels": dict(labels),
            },
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            },
        }
    )
    return out


# --- serving pods -------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedModel:
    """How a serving pod reads a cached model instead of downloading it."""

    cache: Cache
    group: str
    claim_name: str
    sub_path: str  # inside the claim
    node_selector_terms: tuple[JSON, ...]


# (storage URI, namespace, annotations) -> the cache a serving pod reads the URI from
CacheLookup = Callable[[str, str, Mapping[str, str] | None], "CachedModel | None"]


def covering_cache(
    storage_uri: str,
    namespace: str,
    annotations: Mapping[str, str] | None,
    caches: Sequence[Cache],
    groups: Mapping[str, Mapping[str, Any]],
) -> CachedModel | None:
    """The cache a serving pod in `namespace` reads `storage_uri` from, as KServe's webhook
    picks it: the URI starts with the cache's `sourceModelUri`; a namespace cache of the pod's
    namespace comes before a cluster one; the group is the `serving.kserve.io/nodegroup`
    annotation when the cache names it, else the cache's first group. None when the object
    opts out (`serving.kserve.io/disable-localmodel: "true"`) or the group does not exist."""
    notes = annotations or {}
    if notes.get(DISABLE_ANNOTATION, "").lower() == "true":
        return None

    def rank(c: Cache) -> tuple[int, int]:
        return (0 if c.namespace is not None else 1, -len(c.source_model_uri))

    candidates = [
        c
        for c in caches
        if c.namespace in (None, namespace) and _prefixed(storage_uri, c.source_model_uri)
    ]
    for cache in sorted(candidates, key=rank):
        wanted = notes.get(NODE_GROUP_ANNOTATION)
        group = wanted if wanted in cache.node_groups else cache.node_groups[0]
        group_obj = groups.get(group)
        if group_obj is None:
            continue
        rest = storage_uri[len(cache.source_model_uri) :].strip("/")
        sub = f"models/{cache.name}" + (f"/{rest}" if rest else "")
        return CachedModel(
            cache=cache,
            group=group,
            claim_name=serving_claim_name(cache, group),
            sub_path=sub,
            node_selector_terms=tuple(node_selector_terms(group_obj)),
        )
    return None


def _prefixed(uri: str, source: str) -> bool:
    # `s3://b/m` covers `s3://b/m` and `s3://b/m/sub`, not `s3://b/m2`
    base = source.rstrip("/")
    return uri.rstrip("/") == base or uri.startswith(base + "/")


def cached_pod_parts(model: CachedModel, mount_path: str, volume: str) -> tuple[JSON, JSON, JSON]:
    """The volume, the read-only mount and the node affinity of a pod reading a cached model."""
    vol = {
        "name": volume,
        "persistentVolumeClaim": {"claimName": model.claim_name, "readOnly": True},
    }
    mount = {"name": volume, "mountPath": mount_path, "readOnly": True, "subPath": model.sub_path}
    affinity: JSON = {}
    if model.node_selector_terms:
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": list(model.node_selector_terms)
                }
            }
        }
    return vol, mount, affinity


def serving_markers(model: CachedModel) -> tuple[dict[str, str], dict[str, str]]:
    """KServe's label and annotations on an InferenceService served from the cache."""
    return (
        {LOCAL_MODEL_LABEL: model.cache.name},
        {
            SOURCE_URI_ANNOTATION: model.cache.source_model_uri,
            PVC_NAME_ANNOTATION: model.claim_name,
        },
    )


# --- everything -----------------------------------------------------------------------------


def desired_objects(
    cache_objs: Sequence[Mapping[str, Any]],
    group_objs: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    serving_namespaces: Mapping[str, Iterable[str]],
    *,
    agent_namespace: str,
    agent_image: str = AGENT_IMAGE,
    fs_group: int | None = None,
) -> list[JSON]:
    """Every object the model cache wants: LocalModelNodes, the agent of each node group that a
    cache names, and the serving PV/PVCs. `serving_namespaces` maps a cache name to the
    namespaces whose InferenceServices it covers."""
    caches = [read_cache(o) for o in cache_objs]
    groups = {(g.get("metadata") or {}).get("name", ""): g for g in group_objs}
    out: list[JSON] = local_model_nodes(caches, groups, nodes)
    used = sorted({g for c in caches for g in c.node_groups if g in groups})
    for group in used:
        out.extend(
            agent_objects(
                groups[group], namespace=agent_namespace, image=agent_image, fs_group=fs_group
            )
        )
    for cache, obj in zip(caches, cache_objs, strict=True):
        out.extend(serving_volumes(cache, obj, groups, serving_namespaces.get(cache.name, ())))
    return out


def served_from_cache(children: Sequence[Mapping[str, Any]], model: CachedModel) -> list[JSON]:
    """The InferenceService's children with the predictor reading `model` from the cache, as
    KServe's pod mutator does for a covered URI: no storage-initializer, the cache's PVC mounted
    read-only at the model's folder instead of the download volume, node affinity to the node
    group's nodes, and KServe's local-model label and annotations on the pod."""
    out: list[JSON] = []
    for child in children:
        obj: JSON = copy_json(child)
        template = (obj.get("spec") or {}).get("template") or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        if obj.get("kind") != "Deployment" or pod_labels.get("component") != "predictor":
            out.append(obj)
            continue
        pod = template["spec"]
        init = pod.get("initContainers") or []
        kept = [c for c in init if c.get("name") != "storage-initializer"]
        downloads = next((c for c in init if c.get("name") == "storage-initializer"), None)
        # the first download volume is the predictor's model (`kserve-provision-location`)
        volume_name = "kserve-provision-location"
        if downloads is None or all(v.get("name") != volume_name for v in pod.get("volumes") or []):
            out.append(obj)
            continue
        if kept:
            pod["initContainers"] = kept
        else:
            pod.pop("initContainers", None)
        # secrets mounted only for the download go with it
        secret_volumes = {m["name"] for m in downloads.get("volumeMounts") or []} - {volume_name}
        still_used = {
            m["name"]
            for c in [*pod.get("containers", []), *kept]
            for m in c.get("volumeMounts") or []
        }
        volume, _, affinity = cached_pod_parts(model, CACHE_ROOT, volume_name)
        pod["volumes"] = [
            volume if v.get("name") == volume_name else v
            for v in pod.get("volumes") or []
            if v.get("name") not in secret_volumes - still_used
        ]
        for container in pod.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") == volume_name:
                    mount["readOnly"] = True
                    mount["subPath"] = model.sub_path
        if affinity:
            existing = pod.setdefault("affinity", {})
            node = existing.setdefault("nodeAffinity", {})
            required = node.setdefault(
                "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
            )
            terms = required.get("nodeSelectorTerms") or []
            wanted = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            # terms are ORed: the pod's own terms narrow each of the group's
            required["nodeSelectorTerms"] = (
                [_and(t, g) for t in terms for g in wanted["nodeSelectorTerms"]]
                if terms
                else wanted["nodeSelectorTerms"]
            )
        labels, annotations = serving_markers(model)
        meta = template.setdefault("metadata", {})
        meta["labels"] = {**meta.get("labels", {}), **labels}
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        out.append(obj)
    return out


def _and(a: Mapping[str, Any], b: Mapping[str, Any]) -> JSON:
    out: JSON = {}
    for key in ("matchExpressions", "matchFields"):
        both = [*(a.get(key) or []), *(b.get(key) or [])]
        if both:
            out[key] = both
    return out


def copy_json(obj: Mapping[str, Any]) -> JSON:
    return copy.deepcopy(dict(obj))
