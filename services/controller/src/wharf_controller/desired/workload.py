"""A component's Deployment, Service and PodDisruptionBudget (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.config import InferenceServiceConfig
from wharf_api.plan import ComponentPlan, ContainerPlan
from wharf_controller.desired.meta import child
from wharf_controller.desired.routing import SERVICE_PORT
from wharf_controller.desired.storage import PodStorage

JSON = dict[str, Any]


class WorkloadError(ValueError):
    """A component cannot be rendered as a workload; the message names the field."""


def render_container(c: ContainerPlan, plan: ComponentPlan, config: InferenceServiceConfig) -> JSON:
    """A planned container as a pod spec writes it (default resources, the component's ports)."""
    if not c.image:
        raise WorkloadError(f"spec.{plan.component}: the container {c.name!r} has no image")
    out: JSON = {"name": c.name, "image": c.image}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    env: list[JSON] = [{"name": k, "value": v} for k, v in c.env]
    env += [{"name": k, "valueFrom": ref} for k, ref in c.env_refs]
    if env:
        out["env"] = env
    defaults = config.inference_service.resource
    out["resources"] = c.resources or {
        "requests": {"cpu": defaults.cpu_request, "memory": defaults.memory_request},
        "limits": {"cpu": defaults.cpu_limit, "memory": defaults.memory_limit},
    }
    ports = [dict(p) for p in c.ports]
    if not ports:
        ports = [{"name": "http1", "containerPort": plan.http_port, "protocol": "TCP"}]
        if plan.grpc_port:
            ports.append({"name": "grpc", "containerPort": plan.grpc_port, "protocol": "TCP"})
    out["ports"] = ports
    return out


def expected_deployment(
    plan: ComponentPlan,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner: JSON | None,
    config: InferenceServiceConfig,
    storage: PodStorage,
    *,
    replicas: int | None,
    strategy: JSON | None = None,
) -> JSON:
    """`replicas` is None when an autoscaler owns the count (the apply then leaves it alone)."""
    pod = plan.pod
    main = render_container(plan.container, plan, config)
    mounts = [*plan.container.volume_mounts, *storage.mounts]
    if mounts:
        main["volumeMounts"] = mounts
    pod_spec: JSON = {**(pod.extra or {})}
    if storage.init_containers:
        pod_spec["initContainers"] = list(storage.init_containers)
    pod_spec["containers"] = [main]
    volumes = [*pod.volumes, *storage.volumes]
    if volumes:
        pod_spec["volumes"] = volumes
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.node_selector:
        pod_spec["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_spec["tolerations"] = list(pod.tolerations)
    if pod.affinity:
        pod_spec["affinity"] = pod.affinity
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]
    if not config.security.auto_mount_service_account_token:
        pod_spec["automountServiceAccountToken"] = False
    template_meta: JSON = {"labels": {**(pod.labels or {}), **labels}}
    if pod.annotations:
        template_meta["annotations"] = dict(pod.annotations)
    obj = child("apps/v1", "Deployment", plan.service_name, namespace, labels, owner)
    spec: JSON = {
        "selector": {"matchLabels": dict(selector)},
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    if strategy:
        spec["strategy"] = strategy
    obj["spec"] = spec
    return obj


def expected_service(
    plan: ComponentPlan,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner: JSON | None,
) -> JSON:
    obj = child("v1", "Service", plan.service_name, namespace, labels, owner)
    ports: list[JSON] = [
        {"name": "http", "port": SERVICE_PORT, "targetPort": plan.http_port, "protocol": "TCP"}
    ]
    if plan.grpc_port:
        ports.append(
            {
                "name": "grpc",
                "port": plan.grpc_port,
                "targetPort": plan.grpc_port,
                "protocol": "TCP",
            }
        )
    obj["spec"] = {"type": "ClusterIP", "selector": dict(selector), "ports": ports}
    return obj


def expected_pdb(
    plan: ComponentPlan,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    owner: JSON | None,
) -> JSON:
    """At most one pod of the component down at a time (only for minReplicas > 1)."""
    obj = child("policy/v1", "PodDisruptionBudget", plan.service_name, namespace, labels, owner)
    obj["spec"] = {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}}
    return obj
