"""The autoscaler of a component and its Knative annotations follow KServe's rules."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api.autoscaling import (
    AUTOSCALER_CLASS_ANNOTATION,
    KNATIVE_CLASS,
    KNATIVE_HPA,
    KPA,
    knative_autoscaling_annotations,
    standard_autoscaler,
)
from wharf_api.plan import ScalingPlan


def scaling(**kw: Any) -> ScalingPlan:
    base: dict[str, Any] = {"min_replicas": 1, "max_replicas": 3, "metric": "cpu", "target": 80}
    return ScalingPlan(**{**base, **kw})


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [(None, "hpa"), ("HPA", "hpa"), ("keda", "keda"), ("external", "external"), ("none", "none")],
)
def test_the_class_annotation_picks_the_autoscaler(annotation: str | None, expected: str) -> None:
    annotations = {AUTOSCALER_CLASS_ANNOTATION: annotation} if annotation else {}
    assert standard_autoscaler(scaling(), annotations) == expected


@pytest.mark.parametrize("kind", ["External", "PodMetric"])
def test_external_or_pod_metrics_need_keda(kind: str) -> None:
    auto = {"metrics": [{"type": kind}]}
    assert standard_autoscaler(scaling(auto_scaling=auto), {}) == "keda"


def test_a_fixed_size_gets_no_autoscaler() -> None:
    assert standard_autoscaler(scaling(min_replicas=2, max_replicas=2), {}) == "none"
    # maxReplicas 0 is unbounded, not fixed
    assert standard_autoscaler(scaling(min_replicas=0, max_replicas=0), {}) == "hpa"


@pytest.mark.parametrize(("annotation", "expected"), [(None, "none"), ("keda", "none"),
                                                      ("external", "external")])  # fmt: skip
def test_a_multi_node_predictor_is_not_autoscaled(annotation: str | None, expected: str) -> None:
    annotations = {AUTOSCALER_CLASS_ANNOTATION: annotation} if annotation else {}
    assert standard_autoscaler(scaling(), annotations, multi_node=True) == expected


def test_knative_defaults_to_kpa_with_bounds() -> None:
    assert knative_autoscaling_annotations(scaling(metric="concurrency", target=5), {}) == {
        KNATIVE_CLASS: KPA,
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/target": "5",
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "3",
    }


@pytest.mark.parametrize("metric", ["cpu", "memory"])
def test_resource_metrics_need_knatives_hpa_class(metric: str) -> None:
    out = knative_autoscaling_annotations(scaling(metric=metric), {})
    assert out[KNATIVE_CLASS] == KNATIVE_HPA


def test_the_hpa_class_annotation_and_an_explicit_knative_class() -> None:
    rps = scaling(metric="rps")
    assert (
        knative_autoscaling_annotations(rps, {AUTOSCALER_CLASS_ANNOTATION: "hpa"})[KNATIVE_CLASS]
        == KNATIVE_HPA
    )
    assert (
        knative_autoscaling_annotations(rps, {KNATIVE_CLASS: "custom.example"})[KNATIVE_CLASS]
        == "custom.example"
    )


def test_unbounded_max_is_left_out() -> None:
    out = knative_autoscaling_annotations(scaling(min_replicas=0, max_replicas=0), {})
    assert out["autoscaling.knative.dev/min-scale"] == "0"
    assert "autoscaling.knative.dev/max-scale" not in out
