"""An InferenceService's status in Knative mode, from its Knative Services (pure): revisions,
traffic, URLs, the rolled-out bookkeeping across a canary and its promotion, and the reason of a
failed revision."""

from __future__ import annotations

from typing import Any

from wharf_api import default, parse_object
from wharf_api.plan import plan_inference_service
from wharf_api.resources import InferenceService
from wharf_controller.status import knative_status

NOW = "2026-01-01T00:00:00Z"


def _plan() -> Any:
    isvc = default(
        parse_object(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "iris", "namespace": "ns"},
                "spec": {
                    "predictor": {
                        "model": {
                            "modelFormat": {"name": "sklearn"},
                            "runtime": "rt",
                            "storageUri": "gs://b/iris",
                        }
                    }
                },
            }
        )
    )
    assert isinstance(isvc, InferenceService)
    runtime = parse_object(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": "rt", "namespace": "ns"},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
                "containers": [{"name": "kserve-container", "image": "img"}],
            },
        }
    )
    return plan_inference_service(isvc, [runtime], [])  # type: ignore[list-item]


def _ksvc(
    created: str, ready: str | None, traffic: list[dict[str, Any]], ok: bool = True
) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": "Ready", "status": "True" if ok else "False"}
    if not ok:
        cond |= {"reason": "RevisionFailed", "message": "the revision failed: image pull"}
    return {
        "metadata": {"name": "iris-predictor", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "latestCreatedRevisionName": created,
            "latestReadyRevisionName": ready,
            "url": "http://iris-predictor.ns.example.com",
            "traffic": traffic,
            "conditions": [cond],
        },
    }


def _conds(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in doc["conditions"]}


def test_first_revision_ready_rolls_out_and_sets_the_url() -> None:
    ksvc = _ksvc("r1", "r1", [{"revisionName": "r1", "percent": 100, "latestRevision": True}])
    doc = knative_status(_plan(), {"predictor": ksvc}, 1, NOW, {})
    assert _conds(doc)["Ready"]["status"] == "True"
    assert doc["url"] == "http://iris-predictor.ns.example.com"
    assert doc["deploymentMode"] == "Knative"
    predictor = doc["components"]["predictor"]
    assert predictor["latestReadyRevision"] == predictor["latestRolledoutRevision"] == "r1"
    assert predictor["url"] == "http://iris-predictor.ns.example.com"


def test_canary_keeps_the_rolled_out_revision_then_promotion_moves_it() -> None:
    before = {"components": {"predictor": {"latestRolledoutRevision": "r1"}}}
    split = [
        {"revisionName": "r2", "percent": 10, "latestRevision": True, "tag": "latest"},
        {"revisionName": "r1", "percent": 90, "latestRevision": False, "tag": "prev"},
    ]
    doc = knative_status(_plan(), {"predictor": _ksvc("r2", "r2", split)}, 2, NOW, before)
    predictor = doc["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "r1"
    assert [(t["revisionName"], t["percent"], t["tag"]) for t in predictor["traffic"]] == [
        ("r2", 10, "latest"),
        ("r1", 90, "prev"),
    ]
    all_new = [{"revisionName": "r2", "percent": 100, "latestRevision": True}]
    doc = knative_status(_plan(), {"predictor": _ksvc("r2", "r2", all_new)}, 3, NOW, doc)
    predictor = doc["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "r2"
    assert predictor["previousRolledoutRevision"] == "r1"


def test_a_failed_revision_gives_knatives_reason() -> None:
    before = {"components": {"predictor": {"latestRolledoutRevision": "r1"}}}
    traffic = [{"revisionName": "r1", "percent": 100, "latestRevision": True}]
    ksvc = _ksvc("r2", "r1", traffic, ok=False)
    doc = knative_status(_plan(), {"predictor": ksvc}, 2, NOW, before)
    ready = _conds(doc)["PredictorReady"]
    assert ready["status"] == "False" and ready["reason"] == "RevisionFailed"
    assert "image pull" in ready["message"]


def test_a_knative_service_not_yet_observed_is_not_ready() -> None:
    ksvc = _ksvc("r1", "r1", [{"revisionName": "r1", "percent": 100, "latestRevision": True}])
    ksvc["metadata"]["generation"] = 2  # Knative has not seen the new template yet
    doc = knative_status(_plan(), {"predictor": ksvc}, 2, NOW, {})
    assert _conds(doc)["Ready"]["status"] == "False"
    missing = knative_status(_plan(), {"predictor": None}, 1, NOW, {})
    assert _conds(missing)["Ready"]["status"] == "False"
