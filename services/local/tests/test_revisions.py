"""A new spec applied to a service's state: new revision or change in place. No processes."""

from __future__ import annotations

from typing import Any

from wharf_api import default, parse_object
from wharf_api.plan import plan_inference_service
from wharf_api.resources import ClusterServingRuntime, InferenceService
from wharf_local.revisions import apply_plan
from wharf_local.runtimes import builtin_runtimes
from wharf_local.state import Service


def plan(**predictor: Any) -> Any:
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/iris"},
                **predictor,
            }
        },
    }
    obj = default(parse_object(doc))
    assert isinstance(obj, InferenceService)
    runtimes: list[ClusterServingRuntime] = builtin_runtimes()
    return doc, plan_inference_service(obj, cluster_runtimes=runtimes)


def service() -> tuple[Service, Any]:
    doc, p = plan()
    svc = Service("default", "iris", doc, p, 1, "t", 0.0)
    return svc, apply_plan(svc, doc, p, created=True)


def test_a_new_service_gets_its_first_revision() -> None:
    svc, change = service()
    assert change.action == "created"
    assert [r.name for r in change.new_revisions] == ["iris-predictor-00001"]
    assert svc.components["predictor"].rollout.latest_created == "iris-predictor-00001"


def test_the_same_spec_is_unchanged() -> None:
    svc, _ = service()
    doc, p = plan()
    change = apply_plan(svc, doc, p, created=False)
    assert change.action == "unchanged" and svc.generation == 1


def test_scaling_changes_in_place_a_model_change_makes_a_revision() -> None:
    svc, _ = service()
    doc, p = plan(maxReplicas=3)
    change = apply_plan(svc, doc, p, created=False)
    assert (change.action, change.new_revisions, svc.generation) == ("configured", [], 2)
    assert svc.components["predictor"].plan.scaling.max_replicas == 3
    doc, p = plan(maxReplicas=3, canaryTrafficPercent=10, nodeSelector={"disk": "ssd"})
    change = apply_plan(svc, doc, p, created=False)
    assert [r.name for r in change.new_revisions] == ["iris-predictor-00002"]
    assert svc.generation == 3


def test_a_removed_component_is_returned_to_stop() -> None:
    svc, _ = service()
    doc, _ = plan()
    doc["spec"]["transformer"] = {"containers": [{"name": "t", "image": "t", "command": ["t"]}]}
    obj = default(parse_object(doc))
    assert isinstance(obj, InferenceService)
    with_transformer = plan_inference_service(obj, cluster_runtimes=builtin_runtimes())
    apply_plan(svc, doc, with_transformer, created=False)
    assert set(svc.components) == {"predictor", "transformer"}
    doc2, p2 = plan()
    change = apply_plan(svc, doc2, p2, created=False)
    assert [c.plan.component for c in change.removed] == ["transformer"]
    assert set(svc.components) == {"predictor"}
