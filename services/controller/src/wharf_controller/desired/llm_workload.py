"""An LLM workload of the plan as Kubernetes objects: a Deployment (one node per replica) or a
LeaderWorkerSet (groups of `size` pods, the leader serving HTTP), and its Service (pure).

The containers are the plan's as they are (command, args, env, probes): the controller adds only
the model download (the storage initializer and the volumes at `/mnt/models` and
`/mnt/lora/NAME`) and the labels it selects pods by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.llm import LLMContainer, LLMPod, LLMWorkload
from wharf_api.llm.plan_types import MAIN_CONTAINER
from wharf_api.names import MANAGED_BY, MANAGED_BY_LABEL
from wharf_controller.desired.meta import child
from wharf_controller.desired.storage import PodStorage

JSON = dict[str, Any]
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF = "llminferenceservice"


class LLMWorkloadError(ValueError):
    """A workload cannot be rendered; the message names the field."""


def owned_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The plan's labels plus the one every child of the controller carries."""
    return {**labels, MANAGED_BY_LABEL: MANAGED_BY}


def selector_of(labels: Mapping[str, str]) -> dict[str, str]:
    # a selector is immutable: only the labels that never change with the spec (not the
    # user's own workload labels, not the role)
    return {k: labels[k] for k in (COMPONENT_LABEL, NAME_LABEL, PART_OF_LABEL) if k in labels}


def container(c: LLMContainer, where: str, mounts: tuple[JSON, ...] = ()) -> JSON:
    if not c.image:
        raise LLMWorkloadError(f"{where}: the container {c.name!r} has no image")
    out: JSON = {"name": c.name, "image": c.image}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    # the downward-API and Secret entries first: Kubernetes expands `$(VAR)` in a value only for
    # a variable defined before it (OTEL_RESOURCE_ATTRIBUTES names the pod and node ones)
    env: list[JSON] = [{"name": k, "valueFrom": dict(ref)} for k, ref in c.env_refs]
    env += [{"name": k, "value": v} for k, v in c.env]
    if env:
        out["env"] = env
    if c.ports:
        out["ports"] = [dict(p) for p in c.ports]
    if c.resources:
        out["resources"] = dict(c.resources)
    volume_mounts = [*(dict(m) for m in c.volume_mounts), *mounts]
    if volume_mounts:
        out["volumeMounts"] = volume_mounts
    out.update(c.extra or {})
    return out


def pod_spec(pod: LLMPod, where: str, storage: PodStorage, config: InferenceServiceConfig) -> JSON:
    """The pod spec of a plan's pod, the model mounted into its `main` container."""
    spec: JSON = {**(pod.extra or {})}
    init = [container(c, f"{where}.initContainers") for c in pod.init_containers]
    # the download runs before the pod's own init containers (a native sidecar may read it)
    init = [*storage.init_containers, *init]
    if init:
        spec["initContainers"] = init
    spec["containers"] = [
        container(c, f"{where}.containers", storage.mounts if c.name == MAIN_CONTAINER else ())
        for c in pod.containers
    ]
    volumes = [*(dict(v) for v in pod.volumes), *storage.volumes]
    if volumes:
        spec["volumes"] = volumes
    if pod.service_account_name:
        spec["serviceAccountName"] = pod.service_account_name
    if pod.node_selector:
        spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        spec["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.affinity:
        spec["affinity"] = dict(pod.affinity)
    if pod.termination_grace_period_seconds is not None:
        spec["terminationGracePeriodSeconds"] = pod.termination_grace_period_seconds
    if not config.security.auto_mount_service_account_token:
        spec.setdefault("automountServiceAccountToken", False)
    return spec


def _template(labels: Mapping[str, str], annotations: Mapping[str, str], spec: JSON) -> JSON:
    meta: JSON = {"labels": owned_labels(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": spec}


def _where(w: LLMWorkload) -> str:
    return "spec" if w.component == "main" else "spec.prefill"


def _strategy(w: LLMWorkload) -> JSON | None:
    if not w.rollout:
        return None
    rolling = {k: v for k, v in w.rollout.items() if k in ("maxUnavailable", "maxSurge")}
    return {"type": "RollingUpdate", "rollingUpdate": rolling} if rolling else None


def expected_workload(
    w: LLMWorkload,
    namespace: str,
    owner: JSON | None,
    config: InferenceServiceConfig,
    storage: PodStorage,
) -> JSON:
    """The Deployment or LeaderWorkerSet of a workload."""
    where = _where(w)
    labels = owned_labels(w.labels)
    if not w.multi_node:
        assert w.leader is not None  # the plan gives a single-node workload its template
        obj = child("apps/v1", "Deployment", w.name, namespace, labels, owner)
        spec: JSON = {
            "replicas": w.replicas,
            "selector": {"matchLabels": selector_of(w.labels)},
            "template": _template(
                w.labels, w.annotations, pod_spec(w.leader, f"{where}.template", storage, config)
            ),
        }
        strategy = _strategy(w)
        if strategy:
            spec["strategy"] = strategy
        obj["spec"] = spec
        return obj
    assert w.worker is not None  # a multi-node workload always has a worker template
    worker_labels = w.worker_labels or w.labels
    group: JSON = {
        "size": w.size,
        # a group is one engine: a pod that restarts takes the whole group with it
        "restartPolicy": "RecreateGroupOnPodRestart",
        "workerTemplate": _template(
            worker_labels,
            w.annotations,
            pod_spec(w.worker, f"{where}.worker", storage, config),
        ),
    }
    if w.leader is not None:
        group = {
            "leaderTemplate": _template(
                w.labels, w.annotations, pod_spec(w.leader, f"{where}.template", storage, config)
            ),
            **group,
        }
    obj = child(LWS_API_VERSION, "LeaderWorkerSet", w.name, namespace, labels, owner)
    spec = {"replicas": w.replicas, "leaderWorkerTemplate": group}
    if w.rollout:
        spec["rolloutStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {
                k: v for k, v in w.rollout.items() if k in ("maxUnavailable", "maxSurge")
            },
        }
    obj["spec"] = spec
    return obj


def serving_labels(w: LLMWorkload) -> dict[str, str]:
    """The labels of the pods that take requests: every pod, or a group's leader."""
    return (
        dict(w.labels)
        if (not w.multi_node or w.leader is not None)
        else dict(w.worker_labels or w.labels)
    )


def expected_workload_service(
    w: LLMWorkload, namespace: str, owner: JSON | None, name: str | None = None
) -> JSON:
    """A ClusterIP Service in front of the workload's serving pods, on the serving port."""
    obj = child("v1", "Service", name or w.name, namespace, owned_labels(w.labels), owner)
    obj["spec"] = {
        "type": "ClusterIP",
        "selector": selector_of(serving_labels(w)),
        "ports": [
            {
                "name": "http",
                "port": w.serving_port,
                "targetPort": w.serving_port,
                "protocol": "TCP",
            }
        ],
    }
    return obj
