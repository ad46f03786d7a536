"""Conditions and readiness from observations, shared by both control planes. No I/O."""

from __future__ import annotations

from wharf_api.status import (
    ComponentObservation,
    ComponentReadiness,
    Condition,
    RevisionObservation,
    component_readiness,
    conditions,
    latest_ready,
    service_status,
    status_document,
)
from wharf_api.traffic import RolloutState, TrafficTarget

R1 = "iris-predictor-00001"
R2 = "iris-predictor-00002"
ROUTED = (TrafficTarget(R1, 100, "latest", True),)


def obs(**kw: object) -> ComponentObservation:
    base: dict[str, object] = {
        "component": "predictor",
        "rollout": RolloutState(R1, R1, R1),
        "traffic": ROUTED,
        "latest_created": RevisionObservation(R1, 1, ready_once=True),
    }
    base.update(kw)
    return ComponentObservation(**base)  # type: ignore[arg-type]


def test_latest_ready_is_the_newest_that_was_ready() -> None:
    revs = [
        RevisionObservation(R1, 1, ready_once=True),
        RevisionObservation(R2, 2, ready_once=False),
    ]
    assert latest_ready(revs) == R1
    assert latest_ready([*revs[:1], RevisionObservation(R2, 2, ready_once=True)]) == R2
    assert latest_ready([]) is None


def test_ready_component() -> None:
    assert component_readiness(obs()) == ComponentReadiness("predictor", True)


def test_failure_of_the_latest_revision_wins() -> None:
    failed = RevisionObservation(R2, 2, failure=("ModelDownloadFailed", "storageUri: 404"))
    got = component_readiness(obs(rollout=RolloutState(R2, R1, R1), latest_created=failed))
    assert (got.ready, got.reason, got.message) == (
        False,
        "ModelDownloadFailed",
        "storageUri: 404",
    )


def test_crash_before_ready_is_crash_loop_and_stuck_names_its_reason() -> None:
    crashed = RevisionObservation(R1, 1, last_crash="exited with code 1")
    got = component_readiness(obs(traffic=(), rollout=RolloutState(R1), latest_created=crashed))
    assert got.reason == "CrashLoopBackOff"
    stuck = RevisionObservation(R1, 1, stuck=("PortMismatch", "listens on :8080"))
    got = component_readiness(obs(traffic=(), rollout=RolloutState(R1), latest_created=stuck))
    assert (got.reason, got.message) == ("PortMismatch", "listens on :8080")


def test_no_traffic_yet_is_revision_missing_and_new_revision_is_rollout() -> None:
    pending = RevisionObservation(R1, 1)
    got = component_readiness(obs(traffic=(), rollout=RolloutState(R1), latest_created=pending))
    assert got.reason == "RevisionMissing"
    rolling = RevisionObservation(R2, 2)
    got = component_readiness(obs(rollout=RolloutState(R2, R1, R1), latest_created=rolling))
    assert (got.reason, got.message) == ("RolloutInProgress", f"waiting for {R2}")


def test_conditions_keep_transition_time_while_status_holds() -> None:
    first = conditions([ComponentReadiness("predictor", True)], True, "t1")
    again = conditions([ComponentReadiness("predictor", True)], True, "t2", first)
    assert [c.last_transition_time for c in again] == ["t1", "t1", "t1"]
    down = conditions([ComponentReadiness("predictor", False, "X", "y")], True, "t3", again)
    ready = next(c for c in down if c.type == "Ready")
    assert (ready.status, ready.reason, ready.last_transition_time) == ("False", "X", "t3")
    assert [c.type for c in down] == ["IngressReady", "PredictorReady", "Ready"]


def test_service_status_always_observes_its_generation() -> None:
    failed = RevisionObservation(R2, 2, failure=("ModelDownloadFailed", "gone"))
    st = service_status([obs(latest_created=failed, rollout=RolloutState(R2, R1, R1))], 7, "t")
    assert st.observed_generation == 7
    assert not st.ready
    ok = service_status([obs()], 8, "t")
    assert ok.ready and ok.observed_generation == 8


def test_status_document_is_kserves_shape() -> None:
    st = service_status([obs()], 3, "t")
    doc = status_document(st, "http://iris-default.example.com", "http://iris.svc")
    assert doc["observedGeneration"] == 3
    assert doc["url"] == "http://iris-default.example.com"
    assert doc["address"] == {"url": "http://iris.svc"}
    assert doc["components"]["predictor"]["latestReadyRevision"] == R1
    assert doc["components"]["predictor"]["traffic"] == [
        {"revisionName": R1, "percent": 100, "tag": "latest", "latestRevision": True}
    ]
    assert {c["type"] for c in doc["conditions"]} == {"IngressReady", "PredictorReady", "Ready"}


def test_condition_dict_omits_empty_reason() -> None:
    assert Condition("Ready", "True", "t").as_dict() == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "t",
    }
