"""A component's HorizontalPodAutoscaler or KEDA ScaledObject in Standard mode (pure).

Which of them (or none) is `wharf_api.autoscaling.standard_autoscaler`, KServe's
`serving.kserve.io/autoscalerClass` rule; this module writes the chosen object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.autoscaling import RESOURCE_METRICS
from wharf_api.config import InferenceServiceConfig
from wharf_api.plan import ComponentPlan
from wharf_controller.desired.meta import child

JSON = dict[str, Any]


def _resource_metrics(plan: ComponentPlan, config: InferenceServiceConfig) -> list[JSON]:
    listed = [
        m for m in (plan.scaling.auto_scaling or {}).get("metrics") or [] if m["type"] == "Resource"
    ]
    if listed:
        return [
            {
                "type": "Resource",
                "resource": {
                    "name": m["resource"]["name"],
                    "target": m["resource"].get("target")
                    or {"type": "Utilization", "averageUtilization": config.autoscaler.cpu_target},
                },
            }
            for m in listed
        ]
    # Knative's metrics (concurrency, rps) do not exist for an HPA: KServe scales on cpu then
    metric = plan.scaling.metric if plan.scaling.metric in RESOURCE_METRICS else "cpu"
    target = plan.scaling.target if metric == plan.scaling.metric else config.scale_target(metric)
    kind = plan.scaling.metric_type or "Utilization"
    spec: JSON = {"type": kind}
    if kind == "Utilization":
        spec["averageUtilization"] = int(target)
    elif kind == "AverageValue":
        spec["averageValue"] = str(target)
    else:
        spec["value"] = str(target)
    return [{"type": "Resource", "resource": {"name": metric, "target": spec}}]


def _max(plan: ComponentPlan) -> int:
    # maxReplicas 0 means unbounded; an HPA needs a number (KServe: max(min, 1))
    return plan.scaling.max_replicas or max(plan.scaling.min_replicas, 1)


def expected_hpa(
    plan: ComponentPlan,
    namespace: str,
    labels: Mapping[str, str],
    owner: JSON | None,
    config: InferenceServiceConfig,
) -> JSON:
    obj = child(
        "autoscaling/v2", "HorizontalPodAutoscaler", plan.service_name, namespace, labels, owner
    )
    spec: JSON = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": plan.service_name,
        },
        "minReplicas": max(plan.scaling.min_replicas, 1),
        "maxReplicas": max(_max(plan), max(plan.scaling.min_replicas, 1)),
        "metrics": _resource_metrics(plan, config),
    }
    behavior = (plan.scaling.auto_scaling or {}).get("behavior")
    if behavior:
        spec["behavior"] = behavior
    obj["spec"] = spec
    return obj


def _trigger(metric: JSON) -> JSON:
    if metric["type"] == "Resource":
        target = metric["resource"].get("target") or {}
        return {
            "type": metric["resource"]["name"],
            "metricType": target.get("type", "Utilization"),
            "metadata": {
                "value": str(
                    target.get("averageUtilization")
                    or target.get("averageValue")
                    or target.get("value")
                    or 80
                )
            },
        }
    source = metric.get("external") or metric.get("podmetric") or {}
    inner = source.get("metric") or {}
    target = source.get("target") or {}
    threshold = target.get("value") or target.get("averageValue") or 1
    return {
        "type": inner.get("backend") or "prometheus",
        "metadata": {
            "serverAddress": inner.get("serverAddress") or "",
            "query": inner.get("query") or "",
            "threshold": str(threshold),
        },
    }


def expected_scaled_object(
    plan: ComponentPlan,
    namespace: str,
    labels: Mapping[str, str],
    owner: JSON | None,
    config: InferenceServiceConfig,
) -> JSON:
    obj = child("keda.sh/v1alpha1", "ScaledObject", plan.service_name, namespace, labels, owner)
    metrics = (plan.scaling.auto_scaling or {}).get("metrics") or _resource_metrics(plan, config)
    obj["spec"] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": plan.service_name,
        },
        "minReplicaCount": plan.scaling.min_replicas,
        "maxReplicaCount": _max(plan),
        "triggers": [_trigger(m) for m in metrics],
    }
    return obj
