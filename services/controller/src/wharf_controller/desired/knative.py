"""A component's Knative Service in Knative mode (KServe's `Serverless`), pure.

The revision template is the pod the Standard mode's Deployment would run (same containers,
storage initializer and volumes); Knative makes a revision of each template change. Traffic
follows KServe's knative reconciler: with `canaryTrafficPercent` and a revision already rolled
out, the latest revision gets the percent and the last rolled-out one the rest; otherwise the
latest revision gets everything. The tags `latest` and `prev` are set when the
InferenceService has `serving.kserve.io/enable-tag-routing: "true"`, as KServe does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.plan import ComponentPlan
from wharf_controller.desired.meta import child

JSON = dict[str, Any]

KNATIVE_API_VERSION = "serving.knative.dev/v1"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
KNATIVE_CLASS = "autoscaling.knative.dev/class"
KNATIVE_METRIC = "autoscaling.knative.dev/metric"
KNATIVE_TARGET = "autoscaling.knative.dev/target"
KNATIVE_MIN_SCALE = "autoscaling.knative.dev/min-scale"
KNATIVE_MAX_SCALE = "autoscaling.knative.dev/max-scale"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
# Knative runs one serving port per revision; its name picks HTTP/1 or h2c
_ALLOWED_PORT_FIELDS = ("name", "containerPort", "protocol")


def autoscaling_annotations(plan: ComponentPlan, annotations: Mapping[str, str]) -> JSON:
    """The revision's autoscaling annotations, as KServe sets them: the KPA class unless the
    service names another, the metric and target, min-scale (KServe's default 1) and max-scale
    when bounded. cpu and memory need Knative's HPA class, as KServe's validation requires."""
    wanted = annotations.get(AUTOSCALER_CLASS_ANNOTATION, "").lower()
    metric = plan.scaling.metric
    klass = HPA if wanted == "hpa" or metric in ("cpu", "memory") else KPA
    out: JSON = {
        KNATIVE_CLASS: annotations.get(KNATIVE_CLASS, klass),
        KNATIVE_METRIC: metric,
        KNATIVE_TARGET: str(plan.scaling.target),
        KNATIVE_MIN_SCALE: str(plan.scaling.min_replicas),
    }
    if plan.scaling.max_replicas:
        out[KNATIVE_MAX_SCALE] = str(plan.scaling.max_replicas)
    return out


def traffic(canary_percent: int | None, latest_rolledout: str | None, tags: bool) -> list[JSON]:
    """Knative traffic targets of a component (KServe's rule; see the module docstring)."""
    if canary_percent is not None and latest_rolledout:
        pct = max(0, min(100, canary_percent))
        canary: JSON = {"latestRevision": True, "percent": pct}
        stable: JSON = {
            "latestRevision": False,
            "revisionName": latest_rolledout,
            "percent": 100 - pct,
        }
        if tags:
            canary["tag"], stable["tag"] = "latest", "prev"
        return [canary, stable]
    latest: JSON = {"latestRevision": True, "percent": 100}
    if tags:
        latest["tag"] = "latest"
    return [latest]


def _knative_container(container: JSON) -> JSON:
    out = dict(container)
    ports = [
        {k: v for k, v in p.items() if k in _ALLOWED_PORT_FIELDS} for p in out.get("ports", [])
    ]
    if ports:
        # Knative accepts one port; the gRPC one is served only where it is the first
        out["ports"] = ports[:1]
    return out


def expected_knative_service(
    plan: ComponentPlan,
    deployment: JSON,
    annotations: Mapping[str, str],
    *,
    latest_rolledout: str | None,
) -> JSON:
    """The Knative Service of a component, from the Deployment Standard mode would render
    (`deployment`: its metadata and pod template are reused) and the component's last
    rolled-out revision (from the InferenceService's status; None before the first)."""
    meta = deployment["metadata"]
    labels = {**meta["labels"], VISIBILITY_LABEL: "cluster-local"}
    obj = child(
        KNATIVE_API_VERSION,
        "Service",
        meta["name"],
        meta["namespace"],
        labels,
        (meta.get("ownerReferences") or [None])[0],
    )
    template = deployment["spec"]["template"]
    pod = dict(template["spec"])
    pod["containers"] = [_knative_container(c) for c in pod["containers"]]
    if plan.scaling.container_concurrency is not None:
        pod["containerConcurrency"] = plan.scaling.container_concurrency
    if plan.timeout_seconds is not None:
        pod["timeoutSeconds"] = plan.timeout_seconds
    template_meta: JSON = {
        "labels": dict(template["metadata"]["labels"]),
        "annotations": {
            **(template["metadata"].get("annotations") or {}),
            **autoscaling_annotations(plan, annotations),
        },
    }
    tags = annotations.get(TAG_ROUTING_ANNOTATION, "").lower() == "true"
    obj["spec"] = {
        "template": {"metadata": template_meta, "spec": pod},
        "traffic": traffic(plan.canary_traffic_percent, latest_rolledout, tags),
    }
    return obj
