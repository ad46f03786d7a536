"""Which autoscaler a component gets, as KServe decides it (pure).

Standard mode reads `serving.kserve.io/autoscalerClass`: `hpa` (the default) scales on cpu or
memory through a HorizontalPodAutoscaler; `keda`, or any `External`/`PodMetric` entry in
`autoScaling.metrics`, through a KEDA ScaledObject; `external` and `none` make nothing and leave
the replicas to someone else or fixed. A fixed size (maxReplicas == minReplicas) needs no
autoscaler, and a multi-node predictor is never autoscaled (KServe requires `autoscalerClass:
none` for it).

Knative mode sets the revision's `autoscaling.knative.dev/*` annotations: the KPA class unless
the service asks for `hpa`, or scales on cpu or memory (which only Knative's HPA class can, as
KServe's validation requires); an explicit `autoscaling.knative.dev/class` annotation wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from wharf_api.plan import ScalingPlan

AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
Autoscaler = Literal["hpa", "keda", "external", "none"]
RESOURCE_METRICS = ("cpu", "memory")

KNATIVE_CLASS = "autoscaling.knative.dev/class"
KNATIVE_METRIC = "autoscaling.knative.dev/metric"
KNATIVE_TARGET = "autoscaling.knative.dev/target"
KNATIVE_MIN_SCALE = "autoscaling.knative.dev/min-scale"
KNATIVE_MAX_SCALE = "autoscaling.knative.dev/max-scale"
KPA = "kpa.autoscaling.knative.dev"
KNATIVE_HPA = "hpa.autoscaling.knative.dev"

__all__ = [
    "AUTOSCALER_CLASS_ANNOTATION",
    "KNATIVE_CLASS",
    "KNATIVE_HPA",
    "KPA",
    "RESOURCE_METRICS",
    "Autoscaler",
    "knative_autoscaling_annotations",
    "standard_autoscaler",
]


def standard_autoscaler(
    scaling: ScalingPlan, annotations: Mapping[str, str], *, multi_node: bool = False
) -> Autoscaler:
    """The autoscaler of a component in Standard mode (see the module docstring)."""
    wanted = annotations.get(AUTOSCALER_CLASS_ANNOTATION, "hpa").lower()
    if wanted == "external":
        return "external"
    if wanted == "none" or multi_node:
        return "none"
    metrics = (scaling.auto_scaling or {}).get("metrics") or []
    if wanted == "keda" or any(m.get("type") in ("External", "PodMetric") for m in metrics):
        return "keda"
    if scaling.max_replicas and scaling.max_replicas == scaling.min_replicas:
        return "none"
    return "hpa"


def knative_autoscaling_annotations(
    scaling: ScalingPlan, annotations: Mapping[str, str]
) -> dict[str, str]:
    """A revision's autoscaling annotations: class, metric, target, min-scale (KServe's default
    minReplicas is 1) and max-scale when bounded (0 is unbounded and left out)."""
    wanted = annotations.get(AUTOSCALER_CLASS_ANNOTATION, "").lower()
    metric = scaling.metric
    klass = KNATIVE_HPA if wanted == "hpa" or metric in RESOURCE_METRICS else KPA
    out = {
        KNATIVE_CLASS: annotations.get(KNATIVE_CLASS, klass),
        KNATIVE_METRIC: metric,
        KNATIVE_TARGET: str(scaling.target),
        KNATIVE_MIN_SCALE: str(scaling.min_replicas),
    }
    if scaling.max_replicas:
        out[KNATIVE_MAX_SCALE] = str(scaling.max_replicas)
    return out
